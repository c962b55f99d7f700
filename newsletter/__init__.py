"""newsletter: turn a site's digest posts into a weekly email newsletter and deliver it."""

__version__ = "0.1.0"
