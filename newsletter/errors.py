"""The errors a user can cause. Each message names the thing, the place and the fix."""


class NewsletterError(Exception):
    """Base of every error the CLI reports as one line (exit 2 unless said otherwise)."""

    exit_code = 2


class ConfigError(NewsletterError):
    """A configuration file or environment value is missing or wrong."""


class ContentError(NewsletterError):
    """A digest file cannot be read; the loader reports it and skips the file."""


class WindowError(NewsletterError):
    """Time window options conflict or cannot be parsed."""


class SubscriberError(NewsletterError):
    """A subscriber operation names an unknown address or carries bad values."""


class DeliveryError(NewsletterError):
    """Nothing could be sent at all (the transport refused every attempt)."""

    exit_code = 1
