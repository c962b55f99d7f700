"""Digests loaded from a site's content folder: front matter, dates, categories, URLs.

A digest file is untrusted input: whatever it holds, loading it either yields a `Digest` or
one `Problem` line naming the file and the reason. Only digests inside the requested window
have their body parsed (into items, by `newsletter.items`), so selecting one week out of
thousands of posts reads little more than the head of each file.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from newsletter.config import Settings
from newsletter.errors import ContentError
from newsletter.front_matter import HEADER_KEYS, split_front_matter
from newsletter.items import (
    MD,
    Item,
    Rules,
    compile_rules,
    extract,
    first_heading,
    first_paragraph,
)
from newsletter.window import Window

MAX_FILE_BYTES = 2 * 1024 * 1024
HEAD_BYTES = 8192  # enough for any sane front matter; longer ones are read whole
SUFFIXES = (".md", ".markdown")
_COMPACT_STAMP = re.compile(
    r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(Z|[+-]\d{2}:?\d{2})?")
_DASHED_STAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[-T_](\d{2})(?![\d]{2}))?")


@dataclass(frozen=True)
class Digest:
    path: Path
    title: str
    date: datetime
    categories: tuple[str, ...]
    url: str
    items: tuple[Item, ...] = ()
    excerpt: str = ""
    shapes: tuple[tuple[str, int], ...] = ()  # how its items were written, most common first
    excluded_sections: tuple[str, ...] = ()  # headings left out by [content] exclude_sections

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "title": self.title, "date": self.date.isoformat(),
            "categories": list(self.categories), "url": self.url, "excerpt": self.excerpt,
            "shapes": dict(self.shapes), "excluded_sections": list(self.excluded_sections),
            "items": [{**item.__dict__, "tags": list(item.tags), "links": list(item.links)}
                      for item in self.items],
        }


@dataclass(frozen=True)
class Problem:
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class LoadResult:
    digests: list[Digest] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    scanned: int = 0
    drafts: int = 0
    pages: int = 0  # files left out by [content] exclude (a site's pages, not digests)


@dataclass
class Selection:
    """The digests of a window, found from each file's head; bodies are read one at a time
    by `digests()`, so a long listing holds one post at a time, not the archive."""

    settings: Settings
    headers: list[Header] = field(default_factory=list)
    result: LoadResult = field(default_factory=LoadResult)

    def digests(self) -> Iterator[Digest]:
        aliases = category_aliases(self.settings)
        rules = content_rules(self.settings)
        for header in self.headers:
            try:
                yield build_digest(header, self.settings, aliases, rules)
            except ContentError as exc:
                self.result.problems.append(Problem(header.path, str(exc)))


def select_digests(settings: Settings, window: Window | None = None,
                   folder: Path | None = None) -> Selection:
    """The files of the content folder that are digests dated inside `window`, oldest
    first; problems and skipped files are counted in `selection.result`."""
    folder = folder or settings.content_dir
    selection = Selection(settings)
    result = selection.result
    if not folder.is_dir():
        raise ContentError(f"{folder}: content folder not found (set [content] dir in the config)")
    rules = settings.content_rules
    for path in iter_digest_files(folder):
        if _excluded_file(path, folder, rules.include, rules.exclude):
            result.pages += 1
            continue
        result.scanned += 1
        try:
            header = read_header(path, settings.timezone, rules.undated)
            if header.draft:
                result.drafts += 1
                continue
            if window is not None and header.date not in window:
                continue
            selection.headers.append(header)
        except ContentError as exc:
            result.problems.append(Problem(path, str(exc)))
    selection.headers.sort(key=lambda h: (h.date, str(h.path)))
    return selection


def load_digests(settings: Settings, window: Window | None = None,
                 folder: Path | None = None) -> LoadResult:
    """Every digest under the content folder (inside `window` if given), oldest first."""
    selection = select_digests(settings, window, folder)
    selection.result.digests = list(selection.digests())
    return selection.result


def content_rules(settings: Settings) -> Rules:
    rules = settings.content_rules
    return compile_rules(rules.exclude_sections, rules.exclude_links)


def _excluded_file(path: Path, folder: Path, include: tuple[str, ...],
                   exclude: tuple[str, ...]) -> bool:
    relative = path.relative_to(folder).as_posix()

    def matches(patterns: tuple[str, ...]) -> bool:
        return any(fnmatch.fnmatch(path.name, p) or fnmatch.fnmatch(relative, p)
                   for p in patterns)

    return not matches(include) or matches(exclude)


def iter_digest_files(folder: Path) -> Iterator[Path]:
    """Markdown files under `folder`, in name order, skipping hidden files and folders and
    never following a symbolic link to a folder twice (a link loop ends the walk there)."""
    yield from _walk(folder, set())


def _walk(folder: Path, seen: set[tuple[int, int]]) -> Iterator[Path]:
    try:
        stat = folder.stat()
        if (stat.st_dev, stat.st_ino) in seen:
            return
        seen.add((stat.st_dev, stat.st_ino))
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_dir():
                yield from _walk(Path(entry.path), seen)
            elif entry.is_file() and entry.name.lower().endswith(SUFFIXES):
                yield Path(entry.path)
        except OSError:
            continue


# ---------------------------------------------------------------- reading and front matter

@dataclass(frozen=True)
class Header:
    path: Path
    date: datetime
    draft: bool


def read_text(path: Path, head: int | None = None) -> str:
    """The file as text (BOM and CRLF handled); with `head`, at most about that many bytes."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ContentError(f"file is {size:,} bytes, over the {MAX_FILE_BYTES:,} byte limit")
        with path.open("rb") as handle:
            raw = handle.read(head if head is not None else -1)
    except OSError as exc:
        raise ContentError(f"cannot read file: {exc.strerror or exc}") from exc
    if head is not None and len(raw) == head:
        raw = _whole_characters(raw)
    if not raw.strip():
        raise ContentError("empty file")
    if b"\x00" in raw:
        raise ContentError("binary file (contains NUL bytes), not Markdown")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ContentError(f"not UTF-8 (byte {exc.start}); save the file as UTF-8") from exc
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _whole_characters(raw: bytes) -> bytes:
    """Drop a UTF-8 character cut in two at the end of a partial read."""
    for cut in range(1, 4):
        if len(raw) > cut and raw[-cut] & 0xC0 == 0xC0:  # a lead byte
            return raw[:-cut]
        if len(raw) > cut and raw[-cut] & 0xC0 != 0x80:  # ASCII: nothing cut
            break
    return raw


def read_header(path: Path, tz: tzinfo, undated: str = "skip") -> Header:
    """What selecting by window needs, the date and the draft flag, from the file's head
    (the whole file when its front matter is longer)."""
    text = read_text(path, HEAD_BYTES)
    try:
        meta, _ = split_front_matter(text, HEADER_KEYS)
    except ContentError:
        if len(text.encode("utf-8")) < HEAD_BYTES - 4:
            raise
        meta, _ = split_front_matter(read_text(path), HEADER_KEYS)
    draft = meta.get("draft") is True or str(meta.get("draft")).lower() == "true"
    return Header(path, digest_date(meta, path, tz, undated), draft)


def digest_date(meta: dict[str, Any], path: Path, tz: tzinfo, undated: str = "skip"
                ) -> datetime:
    """`publishDate` over `date`; naive means the site's timezone; else the file name;
    else, with `undated = "mtime"`, the file's modification time."""
    for key in ("publishDate", "date", "Date", "Published"):
        value = meta.get(key)
        if value is None or value == "":
            continue
        moment = to_datetime(value, tz)
        if moment is None:
            raise ContentError(f"{key}: cannot read {value!r} as a date "
                               "(use ISO 8601, e.g. 2025-12-20T16:00:00+08:00)")
        return moment
    moment = date_from_name(path.name, tz)
    if moment is None and undated == "mtime":
        return datetime.fromtimestamp(path.stat().st_mtime, tz)
    if moment is None:
        raise ContentError("no date: add 'date:' to the front matter, start the file name "
                           "with YYYY-MM-DD, or set [content] undated = \"mtime\"")
    return moment


def to_datetime(value: Any, tz: tzinfo) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=tz)
    if isinstance(value, date):
        return datetime.combine(value, time(), tz)
    if isinstance(value, str):
        text = value.strip()
        try:
            return to_datetime(datetime.fromisoformat(text), tz)
        except ValueError:
            try:
                return to_datetime(date.fromisoformat(text), tz)
            except ValueError:
                return None
    return None


def date_from_name(name: str, tz: tzinfo) -> datetime | None:
    match = _COMPACT_STAMP.search(name)
    try:
        if match:
            y, mo, d, h, mi, s = (int(g) for g in match.groups()[:6])
            return datetime(y, mo, d, h, mi, s, tzinfo=_zone(match[7], tz))
        match = _DASHED_STAMP.search(name)
        if match:
            hour = int(match[4]) if match[4] and int(match[4]) < 24 else 0
            return datetime(int(match[1]), int(match[2]), int(match[3]), hour, tzinfo=tz)
    except ValueError:
        return None
    return None


def _zone(stamp: str | None, tz: tzinfo) -> tzinfo:
    """`Z`, `+0800` or `+08:00` as a timezone; no stamp means the site's timezone."""
    if not stamp:
        return tz
    if stamp == "Z":
        return UTC
    digits = stamp[1:].replace(":", "")
    minutes = int(digits[:2]) * 60 + int(digits[2:])
    return timezone(timedelta(minutes=minutes if stamp[0] == "+" else -minutes))


# ---------------------------------------------------------------- building a digest

def category_aliases(settings: Settings) -> dict[str, str]:
    """Lookup from a normalized spelling (name, label or alias) to the category name."""
    table: dict[str, str] = {}
    for cat in settings.categories:
        for spelling in (cat.name, cat.label, *cat.aliases):
            table[_norm_key(spelling)] = cat.name
    return table


def _norm_key(text: str) -> str:
    return "".join(text.split()).casefold()


def map_categories(raw: Any, aliases: dict[str, str]) -> tuple[str, ...]:
    if raw is None:
        return ()
    values = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else [raw]
    result: list[str] = []
    for value in values:
        text = str(value).strip()
        if not text:
            continue
        name = aliases.get(_norm_key(text), text)
        if name not in result:
            result.append(name)
    return tuple(result)


def build_digest(header: Header, settings: Settings, aliases: dict[str, str],
                 rules: Rules | None = None) -> Digest:
    meta, body = split_front_matter(read_text(header.path))
    tokens = MD.parse(body)
    title = _meta_text(meta, "title") or first_heading(tokens) or header.path.stem
    found = extract(body, tokens, rules if rules is not None else content_rules(settings))
    excerpt = _meta_text(meta, "description") or _meta_text(meta, "summary")
    if not excerpt:
        excerpt = _shorten(first_paragraph(tokens), 300)
    return Digest(
        path=header.path, title=_one_line(title), date=header.date,
        categories=map_categories(meta.get("categories") or meta.get("category"), aliases),
        url=post_url(meta, header.path, header.date, settings), items=tuple(found.items),
        excerpt=_one_line(excerpt), shapes=tuple(found.shapes.most_common()),
        excluded_sections=tuple(found.excluded),
    )


def post_url(meta: dict[str, Any], path: Path, moment: datetime, settings: Settings) -> str:
    explicit = _meta_text(meta, "url")
    if explicit and not explicit.startswith("//"):  # `//other.host/x` leaves the site
        joined = urljoin(settings.base_url + "/", explicit.lstrip("/"))
        # an http(s) URL, or a path on the site: never `javascript:`, nor `//other.host`
        if re.match(r"https?://[^\s/\\]", explicit, re.IGNORECASE) or (
                re.match(r"https?://", joined, re.IGNORECASE)
                and urlsplit(joined).netloc == urlsplit(settings.base_url).netloc):
            return joined
    slug = _meta_text(meta, "slug") or path.stem
    local = moment.astimezone(settings.timezone)
    relative = settings.post_url.format(
        slug=quote(slug), year=f"{local.year:04d}", month=f"{local.month:02d}",
        day=f"{local.day:02d}")
    # relative to the site, base_url's path included (https://example.com/blog/posts/…)
    return urljoin(settings.base_url + "/", relative.lstrip("/"))


def _meta_text(meta: dict[str, Any], key: str) -> str:
    value = meta.get(key)
    return str(value).strip() if value is not None and not isinstance(value, dict | list) else ""


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


def _shorten(text: str, limit: int) -> str:
    text = _one_line(text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
