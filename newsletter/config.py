"""Settings from `newsletter.toml` and the environment.

Every value is checked here, once, so the rest of the package can trust it; each error
names the file and the key. Secrets (SMTP password, signing key) come only from the
environment.
"""

from __future__ import annotations

import math
import os
import re
import string
import tomllib
from dataclasses import dataclass, field
from email.utils import getaddresses
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from newsletter.errors import ConfigError
from newsletter.store_backend import url_problem

CONFIG_NAME = "newsletter.toml"
PASSWORD_ENV = "NEWSLETTER_SMTP_PASSWORD"
SECRET_KEY_ENV = "NEWSLETTER_SECRET_KEY"
DKIM_KEY_ENV = "NEWSLETTER_DKIM_KEY"
IMAP_PASSWORD_ENV = "NEWSLETTER_IMAP_PASSWORD"


@dataclass(frozen=True)
class Category:
    name: str
    label: str
    aliases: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    description: str = ""  # shown on the preference page


@dataclass(frozen=True)
class StoriesSettings:
    """How mentions become stories and where stories without a category go."""

    uncategorized: str = "more"  # "all", "more" or a category name
    max_per_section: int = 0  # 0: no cap
    similarity: float = 78.0  # headline similarity (0-100) that makes one story
    host_aliases: dict[str, str] = field(default_factory=dict)  # added to the defaults
    tracking: tuple[str, ...] = ()  # query parameters dropped; empty: the defaults


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 587
    tls: str = "starttls"  # "starttls" | "implicit" | "none"
    username: str = ""
    password: str = field(default="", repr=False)
    timeout: float = 30.0
    verify: bool = True
    helo: str = ""  # EHLO name; "" = the host's FQDN, or the From domain (transport.py)


@dataclass(frozen=True)
class SendSettings:
    concurrency: int = 4
    rate: float = 0.0  # messages per second over all connections; 0 = no limit
    per_hour: int = 0  # 0 = no hourly cap
    max_attempts: int = 5
    max_per_connection: int = 1000
    retry_delay: float = 1.0  # first backoff in seconds, doubled per attempt
    circuit_breaker: int = 5  # consecutive server-level failures that stop a run
    smtputf8: bool = False  # allow non-ASCII local parts, sent with SMTPUTF8
    claim_timeout: float = 60.0  # seconds before a silent sender's claims are taken over


# Sections a reader of a news digest did not sign up for (regular expressions, searched
# case-insensitively in the heading or group label).
DEFAULT_EXCLUDE_SECTIONS = (
    r"sponsor", r"\bads?\b", r"advertis", r"广告", r"推广", r"赞助",
    r"\bjobs?\b", r"hiring", r"招聘", r"\bevents?\b", r"活动", r"meetups?",
    r"call for (papers|participation|proposals|speakers)", r"\bcfp\b",
    r"subscribe", r"订阅", r"关注(我们|我|公众号)", r"扫码", r"follow us", r"contribut",
    r"投稿", r"交流群",
    r"\bfaq\b", r"常见问题",
    # the author's closing commentary on the stories above, not stories of its own
    r"^(summary|conclusions?|key takeaways|takeaways|总结|结语|小结|趋势洞察|洞察)$",
)
# Links that are never a story's own link (regular expressions searched in the URL).
DEFAULT_EXCLUDE_LINKS = (
    r"/intent/(tweet|post|follow)", r"sharer", r"/share(article)?\b", r"[?&]share=",
    r"[/.?&=]subscribe([/?#&.]|$)", r"/feed/?$", r"^mailto:",  # not ".../paid-subscribers"
    r"[-_/]tickets?([-_/.?#]|$)",  # event ticket sales: a promotion, not news
    r"^https?://(www\.|mobile\.)?(x|twitter)\.com/(?!search|hashtag|i/|explore)[^/?#]+/?$",
    r"^https?://(www\.)?(facebook|instagram|threads)\.(com|net)/[^/?#]+/?$",
    r"^https?://(www\.)?linkedin\.com/(in|company)/",
    r"^https?://(www\.)?youtube\.com/(@|c/|channel/|user/)[^/]+/?$",
    r"^https?://(www\.)?github\.com/[^/?#]+/?$",
    r"discord(app)?\.com/channels/", r"discord\.gg/", r"^https?://t\.me/",
    r"slack\.com/archives/", r"chat\.whatsapp\.com",
    r"\.(png|jpe?g|gif|webp|svg|avif)([?#].*)?$",
    r"[?&]utm_[a-z]+=[^&#]*(?<![a-z])(ads?|banner|sponsor(ed)?|promo(tion)?)(?![a-z])",
)
DEFAULT_EXCLUDE_FILES = ("_index.*", "index.*", "about.*", "README.*", "search.*",
                         "archives.*", "404.*")


@dataclass(frozen=True)
class ContentRules:
    """Which files are digests and which parts of them are not news."""

    include: tuple[str, ...] = ("*.md", "*.markdown")
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE_FILES
    exclude_sections: tuple[str, ...] = DEFAULT_EXCLUDE_SECTIONS
    exclude_links: tuple[str, ...] = DEFAULT_EXCLUDE_LINKS
    undated: str = "skip"  # or "mtime"


@dataclass(frozen=True)
class WebSettings:
    """`[web]`: how `newsletter serve` faces the world (see the README's Deployment)."""

    allow_http: bool = False  # a plain-http `url`, for local testing only
    trusted_proxies: tuple[str, ...] = ()  # peers whose X-Forwarded-For is believed
    pending_days: int = 7  # unconfirmed signups expire (and are pruned) after this
    signups_per_network: int = 20  # signup posts per hour from one /24 (IPv4) or /64
    confirmations_per_day: int = 3  # confirmation emails per address per day


@dataclass(frozen=True)
class BounceSettings:
    soft_limit: int = 3  # soft bounces within soft_days that mark a subscriber bounced
    soft_days: int = 30


@dataclass(frozen=True)
class DkimSettings:
    domain: str
    selector: str
    key_file: Path | None = None  # else the PEM in NEWSLETTER_DKIM_KEY


@dataclass(frozen=True)
class Settings:
    root: Path  # the folder relative paths are resolved against
    config_file: Path | None = None
    name: str = "Newsletter"
    from_address: str = "newsletter@example.com"
    from_name: str = ""
    reply_to: str = ""
    base_url: str = "https://example.com"
    web_url: str = ""  # where `newsletter serve` is reachable; defaults to base_url
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    language: str = "en"
    postal_address: str = ""
    unsubscribe_mailto: str = ""
    content_dir: Path = Path("content")
    post_url: str = "/posts/{slug}/"
    content_rules: ContentRules = field(default_factory=ContentRules)
    stories: StoriesSettings = field(default_factory=StoriesSettings)
    categories: tuple[Category, ...] = ()
    store_path: Path = Path("subscribers/newsletter.db")
    store_url: str = ""  # PostgreSQL instead of the SQLite file at store_path
    outbox_dir: Path = Path("outbox")
    templates_dir: Path = Path("templates")
    max_html_bytes: int = 100_000
    special_use_domains: bool = False  # accept subscribers at .test, .local, .invalid …
    smtp: SmtpSettings | None = None
    send: SendSettings = field(default_factory=SendSettings)
    web: WebSettings = field(default_factory=WebSettings)
    bounce_address: str = ""  # envelope sender; "" = the From address
    verp: bool = False
    feedback_id: str = ""
    bounces: BounceSettings = field(default_factory=BounceSettings)
    dkim: DkimSettings | None = None

    @property
    def category_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.categories)

    @property
    def store_location(self) -> Path | str:
        """What `Store` opens: the PostgreSQL URL when set, else the SQLite file."""
        return self.store_url or self.store_path

    @property
    def public_url(self) -> str:
        return (self.web_url or self.base_url).rstrip("/")


def find_config(explicit: str | Path | None = None) -> Path | None:
    """`--config`, then `NEWSLETTER_CONFIG`, then `newsletter.toml` in the current folder."""
    chosen = explicit or os.environ.get("NEWSLETTER_CONFIG")
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found "
                              "(check --config or NEWSLETTER_CONFIG)")
        return path
    here = Path.cwd() / CONFIG_NAME
    return here if here.is_file() else None


def load_settings(explicit: str | Path | None = None) -> Settings:
    """Load the config file if there is one; otherwise the embedded defaults in the cwd."""
    path = find_config(explicit)
    if path is None:
        return _build({}, Path.cwd(), None)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    return _build(data, path.resolve().parent, path)


class _Table:
    """One TOML table; typed getters that name the file and key on error."""

    def __init__(self, data: Any, where: str, prefix: str) -> None:
        self.where, self.prefix = where, prefix
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: [{prefix}] must be a table")
        self.data: dict[str, Any] = data

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, why: str) -> ConfigError:
        return ConfigError(f"{self.where}: {self.key(name)}: {why}")

    def check_keys(self, allowed: set[str]) -> None:
        for name in self.data:
            if name not in allowed:
                valid = ", ".join(sorted(allowed))
                raise self.fail(name, f"unknown key (valid keys: {valid})")

    def get(self, name: str, kind: type, default: Any) -> Any:
        if name not in self.data:
            return default
        value = self.data[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(name, f"must be a {kind.__name__}, not {type(value).__name__}")
        return value

    def str_list(self, name: str) -> tuple[str, ...]:
        value = self.data.get(name, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(name, "must be a list of strings")
        return tuple(value)

    def positive(self, name: str, kind: type, default: Any, *, allow_zero: bool = False,
                 most: float = math.inf) -> Any:
        value = self.get(name, kind, default)
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            raise self.fail(name, "must be a finite positive number")
        if value > most:
            raise self.fail(name, f"must be at most {most:g}")
        return value


_SECTIONS = {"newsletter", "content", "categories", "store", "smtp", "send", "outbox", "web",
             "templates", "stories", "bounces", "dkim"}


def _build(data: dict[str, Any], root: Path, path: Path | None) -> Settings:
    where = str(path) if path else "defaults"
    top = _Table(data, where, "")
    top.check_keys(_SECTIONS)

    news = _Table(data.get("newsletter", {}), where, "newsletter")
    news.check_keys({"name", "from", "from_name", "reply_to", "base_url", "timezone", "language",
                     "postal_address", "unsubscribe_mailto", "max_html_bytes", "uncategorized",
                     "max_per_section", "special_use_domains", "bounce_address", "verp",
                     "feedback_id"})
    tz_name = news.get("timezone", str, "UTC")
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise news.fail("timezone", f"unknown IANA timezone {tz_name!r} (e.g. 'Asia/Shanghai')"
                        ) from exc
    base_url = news.get("base_url", str, "https://example.com").rstrip("/")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or " " in base_url:
        raise news.fail("base_url", "must start with https:// (or http://) and a host")
    if parts.query or parts.fragment:
        raise news.fail("base_url", "must not have a ?query or #fragment (a path like "
                        "https://example.com/blog is fine)")
    from_address = news.get("from", str, "newsletter@example.com")
    if "@" not in from_address or any(c in from_address for c in "\r\n<> "):
        raise news.fail("from", "must be a plain address like news@example.com")
    bounce_address = news.get("bounce_address", str, "")
    if bounce_address and ("@" not in bounce_address or "+" in bounce_address
                           or any(c in bounce_address for c in "\r\n<> ")):
        raise news.fail("bounce_address", "must be a plain address without '+' like "
                        "bounces@example.com")

    _check_header_values(news)

    content = _Table(data.get("content", {}), where, "content")
    content.check_keys({"dir", "post_url", "include", "exclude", "exclude_sections",
                        "exclude_links", "undated"})
    store = _Table(data.get("store", {}), where, "store")
    store.check_keys({"path", "url"})
    store_url = _store_url(store)
    outbox = _Table(data.get("outbox", {}), where, "outbox")
    outbox.check_keys({"dir"})
    web = _Table(data.get("web", {}), where, "web")
    web.check_keys({"url", "allow_http", "trusted_proxies", "pending_days",
                    "signups_per_network", "confirmations_per_day"})
    templates = _Table(data.get("templates", {}), where, "templates")
    templates.check_keys({"dir"})

    web_settings = _web(web)
    web_url = web.get("url", str, "").rstrip("/")
    public = web_url or base_url
    if not public.startswith("https://") and not web_settings.allow_http:
        raise (web.fail("url", "must start with https:// (one-click unsubscribe needs "
                        "https); for local testing set [web] allow_http = true")
               if web_url else news.fail("base_url", "must start with https:// when "
                                         "[web] url is not set (or set [web] allow_http = "
                                         "true for local testing)"))
    if not public.startswith(("http://", "https://")):
        raise web.fail("url", "must start with https:// (or http:// with allow_http)")

    def resolve(table: _Table, name: str, default: str) -> Path:
        return (root / str(table.get(name, str, default))).resolve()

    return Settings(
        root=root,
        config_file=path,
        name=news.get("name", str, "Newsletter"),
        from_address=from_address,
        from_name=news.get("from_name", str, ""),
        reply_to=news.get("reply_to", str, ""),
        base_url=base_url,
        web_url=web_url,
        timezone=tz,
        language=news.get("language", str, "en"),
        postal_address=news.get("postal_address", str, ""),
        unsubscribe_mailto=news.get("unsubscribe_mailto", str, ""),
        max_html_bytes=news.positive("max_html_bytes", int, 100_000),
        special_use_domains=news.get("special_use_domains", bool, False),
        content_dir=resolve(content, "dir", "content"),
        post_url=_post_url(content),
        content_rules=_content_rules(content),
        stories=_stories(news, _Table(data.get("stories", {}), where, "stories"),
                         data.get("categories", [])),
        categories=_categories(data.get("categories", []), where),
        store_path=resolve(store, "path", "subscribers/newsletter.db"),
        store_url=store_url,
        outbox_dir=resolve(outbox, "dir", "outbox"),
        templates_dir=resolve(templates, "dir", "templates"),
        smtp=_smtp(data["smtp"], where) if "smtp" in data else None,
        send=_send(data.get("send", {}), where),
        web=web_settings,
        bounce_address=bounce_address,
        verp=news.get("verp", bool, bool(bounce_address)),
        feedback_id=news.get("feedback_id", str, ""),
        bounces=_bounces(data.get("bounces", {}), where),
        dkim=_dkim(data["dkim"], where, root) if "dkim" in data else None,
    )


def _store_url(store: _Table) -> str:
    url = str(store.get("url", str, ""))
    if url and "path" in store.data:
        raise store.fail("url", "and [store] path are both set; keep url for PostgreSQL or "
                         "path for an SQLite file, not both")
    problem = url_problem(url) if url else None
    if problem:
        raise store.fail("url", problem)
    return url


def _stories(news: _Table, table: _Table, categories: Any) -> StoriesSettings:
    table.check_keys({"host_aliases", "tracking_params", "similarity"})
    names = [c.get("name") for c in categories if isinstance(c, dict)] \
        if isinstance(categories, list) else []
    uncategorized = news.get("uncategorized", str, "more")
    if uncategorized not in ("all", "more", *names):
        raise news.fail("uncategorized", f"must be \"all\", \"more\" or a category name, "
                        f"not {uncategorized!r}")
    similarity = table.get("similarity", float, 78.0)
    if not 50 <= similarity <= 100:
        raise table.fail("similarity", "must be between 50 and 100 (higher merges less)")
    aliases = table.get("host_aliases", dict, {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()):
        raise table.fail("host_aliases", 'must map host names to host names, e.g. '
                         '{ "m.example.com" = "example.com" }')
    return StoriesSettings(
        uncategorized=uncategorized,
        max_per_section=news.positive("max_per_section", int, 0, allow_zero=True),
        similarity=similarity, host_aliases={k.lower(): v.lower() for k, v in aliases.items()},
        tracking=table.str_list("tracking_params"))


def _content_rules(table: _Table) -> ContentRules:
    defaults = ContentRules()

    def patterns(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        if name not in table.data:
            return default
        values = table.str_list(name)
        for value in values:
            try:
                re.compile(value)
            except re.error as exc:
                raise table.fail(name, f"{value!r} is not a valid regular expression: {exc}"
                                 ) from exc
        return values

    undated = table.get("undated", str, "skip")
    if undated not in ("skip", "mtime"):
        raise table.fail("undated", f"must be \"skip\" or \"mtime\", not {undated!r}")
    return ContentRules(
        include=table.str_list("include") if "include" in table.data else defaults.include,
        exclude=table.str_list("exclude") if "exclude" in table.data else defaults.exclude,
        exclude_sections=patterns("exclude_sections", defaults.exclude_sections),
        exclude_links=patterns("exclude_links", defaults.exclude_links),
        undated=undated,
    )


def _web(table: _Table) -> WebSettings:
    import ipaddress

    proxies = table.str_list("trusted_proxies")
    for proxy in proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError as exc:
            raise table.fail("trusted_proxies", f"{proxy!r} is not an IP address or "
                             "network (e.g. '127.0.0.1' or '10.0.0.0/8')") from exc
    return WebSettings(
        allow_http=table.get("allow_http", bool, False), trusted_proxies=proxies,
        pending_days=table.positive("pending_days", int, 7),
        signups_per_network=table.positive("signups_per_network", int, 20),
        confirmations_per_day=table.positive("confirmations_per_day", int, 3))


POST_URL_FIELDS = ("slug", "year", "month", "day")


def _post_url(table: _Table) -> str:
    """The post URL pattern, with only the placeholders it can be given."""
    pattern: str = table.get("post_url", str, "/posts/{slug}/")
    hint = "use {slug}, {year}, {month} and {day} (write {{ and }} for literal braces)"
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None]
    except ValueError as exc:
        raise table.fail("post_url", f"{pattern!r}: {exc}; {hint}") from exc
    for name in fields:
        if name not in POST_URL_FIELDS:
            raise table.fail("post_url", f"{pattern!r}: unknown placeholder {{{name}}}; {hint}")
    try:
        pattern.format(**{name: "x" for name in POST_URL_FIELDS})
    except (ValueError, IndexError, KeyError, AttributeError) as exc:  # e.g. {slug.x}
        raise table.fail("post_url", f"{pattern!r}: {exc}; {hint}") from exc
    return pattern


_PLAIN_ADDRESS = re.compile(r"[!-~]+@[A-Za-z0-9.-]+")
_LANGUAGE = re.compile(r"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*")


def _check_header_values(news: _Table) -> None:
    """Every value that becomes a header can be encoded, or is refused here."""
    for name in ("name", "from_name", "postal_address"):
        value = news.get(name, str, "")
        if any(c in value for c in "\r\n\x00"):
            raise news.fail(name, "must be one line")
    reply_to = news.get("reply_to", str, "")
    if reply_to:
        found = getaddresses([reply_to])
        if (len(found) != 1 or not _PLAIN_ADDRESS.fullmatch(found[0][1])
                or any(c in reply_to for c in "\r\n")):
            raise news.fail("reply_to", f"{reply_to!r} is not one address like "
                            "'editor@example.com' or 'Editor <editor@example.com>' "
                            "(a non-ASCII name is fine; the address must be ASCII)")
    mailto = news.get("unsubscribe_mailto", str, "")
    if mailto and not _PLAIN_ADDRESS.fullmatch(mailto):
        raise news.fail("unsubscribe_mailto", "must be a plain ASCII address like "
                        "unsubscribe@example.com")
    language = news.get("language", str, "en")
    if not _LANGUAGE.fullmatch(language):
        raise news.fail("language", f"{language!r} is not a language tag like 'en' or "
                        "'zh-CN'")


def _categories(raw: Any, where: str) -> tuple[Category, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: categories: must be an array of tables ([[categories]])")
    result: list[Category] = []
    for i, item in enumerate(raw):
        table = _Table(item, where, f"categories[{i}]")
        table.check_keys({"name", "label", "aliases", "keywords", "description"})
        name = table.get("name", str, "")
        if not name or any(c in name for c in ",;|") or name != name.strip():
            raise table.fail("name", "required, without spaces at the ends or , ; |")
        if any(c.name == name for c in result):
            raise table.fail("name", f"duplicate category {name!r}")
        result.append(Category(name=name, label=table.get("label", str, name),
                               aliases=table.str_list("aliases"),
                               keywords=table.str_list("keywords"),
                               description=table.get("description", str, "")))
    return tuple(result)


def _smtp(raw: Any, where: str) -> SmtpSettings:
    table = _Table(raw, where, "smtp")
    if "password" in table.data:
        raise table.fail("password", f"secrets never go in the file; set {PASSWORD_ENV}")
    table.check_keys({"host", "port", "tls", "username", "timeout", "verify", "helo"})
    host = table.get("host", str, "")
    if not host:
        raise table.fail("host", "required when [smtp] is present")
    tls = table.get("tls", str, "starttls")
    if tls not in ("starttls", "implicit", "none"):
        raise table.fail("tls", "must be 'starttls', 'implicit' or 'none'")
    default_port = {"starttls": 587, "implicit": 465, "none": 25}[tls]
    return SmtpSettings(
        host=host, port=table.positive("port", int, default_port, most=65535), tls=tls,
        username=table.get("username", str, ""),
        password=os.environ.get(PASSWORD_ENV, ""),
        timeout=table.positive("timeout", float, 30.0),
        verify=table.get("verify", bool, True),
        helo=_helo(table),
    )


def _helo(table: _Table) -> str:
    helo = table.get("helo", str, "")
    if helo and not all(c.isalnum() or c in ".-[]:" for c in helo):
        raise table.fail("helo", "must be a host name like mail.example.com")
    return str(helo)


def _bounces(raw: Any, where: str) -> BounceSettings:
    table = _Table(raw, where, "bounces")
    table.check_keys({"soft_limit", "soft_days"})
    return BounceSettings(soft_limit=table.positive("soft_limit", int, 3),
                          soft_days=table.positive("soft_days", int, 30))


def _dkim(raw: Any, where: str, root: Path) -> DkimSettings:
    table = _Table(raw, where, "dkim")
    if "key" in table.data:
        raise table.fail("key", f"secrets never go in the file; use key_file or {DKIM_KEY_ENV}")
    table.check_keys({"domain", "selector", "key_file"})
    domain = table.get("domain", str, "").strip().lower()
    selector = table.get("selector", str, "").strip()
    for name, value in (("domain", domain), ("selector", selector)):
        if not value or not all(c.isalnum() or c in ".-_" for c in value):
            raise table.fail(name, "required: a DNS label like example.com / news2026")
    key_file = table.get("key_file", str, "")
    return DkimSettings(domain=domain, selector=selector,
                        key_file=(root / key_file).resolve() if key_file else None)


def _send(raw: Any, where: str) -> SendSettings:
    table = _Table(raw, where, "send")
    table.check_keys({"concurrency", "rate", "per_hour", "max_attempts", "max_per_connection",
                      "retry_delay", "circuit_breaker", "smtputf8", "claim_timeout"})
    return SendSettings(
        concurrency=table.positive("concurrency", int, 4),
        rate=table.positive("rate", float, 0.0, allow_zero=True),
        per_hour=table.positive("per_hour", int, 0, allow_zero=True),
        max_attempts=table.positive("max_attempts", int, 5),
        max_per_connection=table.positive("max_per_connection", int, 1000),
        retry_delay=table.positive("retry_delay", float, 1.0, allow_zero=True),
        circuit_breaker=table.positive("circuit_breaker", int, 5),
        smtputf8=table.get("smtputf8", bool, False),
        claim_timeout=table.positive("claim_timeout", float, 60.0),
    )


def secret_key(*, development: bool = False) -> str:
    """The signing key for links; refuses to guess one outside development."""
    key = os.environ.get(SECRET_KEY_ENV, "")
    if key:
        return key
    if development:
        return "development-only-key"
    raise ConfigError(f"{SECRET_KEY_ENV} is not set: export a long random value "
                      "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
