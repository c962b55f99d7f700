"""One spelling per web page, so that two links to one page are one story.

w3lib canonicalizes the URL (percent-encoding, query order, default ports); our rules add
what a news digest needs: host aliases (twitter.com and mobile.x.com are x.com, youtu.be
is a YouTube watch page), tracking parameters dropped, `www.` and trailing slashes
ignored. Meaningful query parameters (`?id=`, `?ref=v2`), ports and hash routes (`#/a`,
`#!/a`) are kept: they name different pages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from w3lib.url import canonicalize_url

DEFAULT_HOST_ALIASES = {
    "twitter.com": "x.com", "mobile.twitter.com": "x.com", "mobile.x.com": "x.com",
    "m.x.com": "x.com", "m.twitter.com": "x.com", "m.youtube.com": "youtube.com",
    "music.youtube.com": "youtube.com", "old.reddit.com": "reddit.com",
    "m.reddit.com": "reddit.com",
}
DEFAULT_TRACKING = (
    "utm_*", "ref_src", "ref_url", "fbclid", "gclid", "dclid", "mc_cid", "mc_eid", "spm",
    "igshid", "_hsenc", "_hsmi", "mkt_tok", "cmpid", "yclid", "share_source",
)
# Parameters that only say how a page was shared, on hosts where they mean nothing else.
_SHARE_PARAMS = {"x.com": {"s", "t"}, "youtube.com": {"t", "si", "feature"}}


@dataclass(frozen=True)
class UrlRules:
    host_aliases: dict[str, str]
    tracking: re.Pattern[str]

    @classmethod
    def build(cls, host_aliases: dict[str, str] | None = None,
              tracking: Iterable[str] = DEFAULT_TRACKING) -> UrlRules:
        names = "|".join(re.escape(t).replace(r"\*", r"\w*") for t in tracking)
        return cls({**DEFAULT_HOST_ALIASES, **(host_aliases or {})},
                   re.compile(f"^(?:{names})$", re.IGNORECASE))


DEFAULT_RULES = UrlRules.build()


def normalize_url(url: str, rules: UrlRules = DEFAULT_RULES) -> str:
    """The page a URL names, without scheme: `host[:port]/path?query[#route]`."""
    text = url.strip()
    try:
        canonical = canonicalize_url(text, keep_fragments=True)
        parts = urlsplit(canonical)
        host = (parts.hostname or "").removeprefix("www.")
        port = parts.port
    except ValueError:
        return text
    host = rules.host_aliases.get(host, host)
    path, query = parts.path, parts.query
    if host == "youtu.be" and path.strip("/"):
        host, query, path = "youtube.com", f"v={path.strip('/')}&{query}", "/watch"
    shared = _SHARE_PARAMS.get(host, set())
    pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True)
             if not rules.tracking.match(k) and k not in shared]
    if host == "x.com":
        path = path.lower()  # x.com user names are case-insensitive
    route = parts.fragment if parts.fragment.startswith(("/", "!")) else ""
    netloc = f"{host}:{port}" if port else host
    return urlunsplit(("", netloc, path.rstrip("/"), urlencode(sorted(pairs)), route)
                      ).removeprefix("//")


def is_site_root(url: str) -> bool:
    """A link to a whole site (`https://techcrunch.com/`) names no story."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.path.strip("/") == "" and not parts.query and not parts.fragment
