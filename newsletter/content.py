"""Digests and their items, loaded from a site's content folder.

A digest file is untrusted input: whatever it holds, loading it either yields a `Digest` or
one `Problem` line naming the file and the reason. The body is read with markdown-it-py
tokens (never regexes over Markdown); only digests inside the requested window have their
body parsed, so selecting one week out of thousands of posts reads little more than front
matter.
"""

from __future__ import annotations

import html
import json
import os
import re
import textwrap
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin

import frontmatter
import yaml
from frontmatter.default_handlers import BaseHandler, JSONHandler, YAMLHandler
from markdown_it import MarkdownIt
from markdown_it.token import Token

from newsletter.config import Settings
from newsletter.errors import ContentError
from newsletter.window import Window

MAX_FILE_BYTES = 2 * 1024 * 1024
HEAD_BYTES = 8192  # enough for any sane front matter; longer ones are read whole
SUFFIXES = (".md", ".markdown")
_SOURCE_LABEL = re.compile(r"^\s*(来源|來源|出处|Sources?|Via)\s*[:：]\s*", re.IGNORECASE)
_COMPACT_STAMP = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(Z?)")
_DASHED_STAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[-T_](\d{2})(?![\d]{2}))?")
_KEY_LINE = re.compile(r"^[A-Za-z_][\w-]*\s*:(\s|$)")
_HTML_HREF = re.compile(r"""href\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
_DECORATION = ("strong_open", "strong_close", "em_open", "em_close", "softbreak")
_MD = MarkdownIt("commonmark").enable("table")


@dataclass(frozen=True)
class Item:
    headline: str
    url: str | None
    source: str | None
    summary_md: str
    summary_text: str


@dataclass(frozen=True)
class Digest:
    path: Path
    title: str
    date: datetime
    categories: tuple[str, ...]
    url: str
    items: tuple[Item, ...] = ()
    excerpt: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "title": self.title, "date": self.date.isoformat(),
            "categories": list(self.categories), "url": self.url, "excerpt": self.excerpt,
            "items": [item.__dict__ for item in self.items],
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


def load_digests(settings: Settings, window: Window | None = None,
                 folder: Path | None = None) -> LoadResult:
    """Every digest under the content folder (inside `window` if given), oldest first."""
    folder = folder or settings.content_dir
    result = LoadResult()
    if not folder.is_dir():
        raise ContentError(f"{folder}: content folder not found (set [content] dir in the config)")
    aliases = category_aliases(settings)
    for path in iter_digest_files(folder):
        result.scanned += 1
        try:
            header = read_header(path, settings.timezone)
            if header.draft:
                result.drafts += 1
                continue
            if window is not None and header.date not in window:
                continue
            result.digests.append(build_digest(header, settings, aliases))
        except ContentError as exc:
            result.problems.append(Problem(path, str(exc)))
    result.digests.sort(key=lambda d: (d.date, str(d.path)))
    return result


def iter_digest_files(folder: Path) -> Iterator[Path]:
    """Markdown files under `folder`, in name order, skipping hidden files and folders."""
    with os.scandir(folder) as scan:
        entries = sorted(scan, key=lambda e: e.name)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            yield from iter_digest_files(Path(entry.path))
        elif entry.is_file() and entry.name.lower().endswith(SUFFIXES):
            yield Path(entry.path)


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


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
HEADER_KEYS = ("date", "publishDate", "draft")


def _whole_characters(raw: bytes) -> bytes:
    """Drop a UTF-8 character cut in two at the end of a partial read."""
    for cut in range(1, 4):
        if len(raw) > cut and raw[-cut] & 0xC0 == 0xC0:  # a lead byte
            return raw[:-cut]
        if len(raw) > cut and raw[-cut] & 0xC0 != 0x80:  # ASCII: nothing cut
            break
    return raw


class _FastYAMLHandler(YAMLHandler):
    """YAML front matter with the C loader when PyYAML has one (10x faster)."""

    def load(self, fm: str, **kwargs: Any) -> Any:
        return yaml.load(fm, Loader=_YAML_LOADER)

    def load_keys(self, fm: str, keys: tuple[str, ...]) -> Any:
        """Parse the whole document (so errors show) but build only `keys`' values: for a
        post outside the window nothing else is needed, and building is the slow part."""
        loader = _YAML_LOADER(fm)
        try:
            node = loader.get_single_node()
            if node is None:
                return {}
            if not isinstance(node, yaml.MappingNode):
                return node.value
            return {k.value: loader.construct_object(v, deep=True) for k, v in node.value
                    if isinstance(k, yaml.ScalarNode) and k.value in keys}
        finally:
            loader.dispose()


class _TOMLHandler(BaseHandler):
    """`+++` TOML front matter with the standard library parser."""

    FM_BOUNDARY = re.compile(r"^\+{3,}\s*$", re.MULTILINE)
    START_DELIMITER = END_DELIMITER = "+++"

    def load(self, fm: str, **kwargs: Any) -> Any:
        return tomllib.loads(fm)


_HANDLERS = [_FastYAMLHandler(), _TOMLHandler(), JSONHandler()]


def split_front_matter(text: str, keys: tuple[str, ...] | None = None
                       ) -> tuple[dict[str, Any], str]:
    """Front matter and body; with `keys`, YAML front matter builds only those values."""
    handler = frontmatter.detect_format(text, _HANDLERS)
    if handler is None:
        lines = text.lstrip("\n").split("\n", 40)
        if lines and _KEY_LINE.match(lines[0]) and "---" in (ln.strip() for ln in lines[1:]):
            raise ContentError("front matter lacks its opening '---' line; add '---' as line 1")
        return {}, text
    try:
        fm, body = handler.split(text)
        if keys is not None and isinstance(handler, _FastYAMLHandler):
            meta = handler.load_keys(fm, keys)
        else:
            meta = handler.load(fm)
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark is not None else ""
        raise ContentError(f"bad front matter{where}: {_one_line(exc)}") from exc
    except ValueError as exc:
        raise ContentError(f"bad front matter: {_one_line(exc)}") from exc
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise ContentError("front matter is not a mapping of keys to values")
    return meta, body


def read_header(path: Path, tz: tzinfo) -> Header:
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
    return Header(path, digest_date(meta, path, tz), draft)


def digest_date(meta: dict[str, Any], path: Path, tz: tzinfo) -> datetime:
    """`publishDate` over `date`; naive means the site's timezone; else the file name."""
    for key in ("publishDate", "date"):
        value = meta.get(key)
        if value is None or value == "":
            continue
        moment = to_datetime(value, tz)
        if moment is None:
            raise ContentError(f"{key}: cannot read {value!r} as a date "
                               "(use ISO 8601, e.g. 2025-12-20T16:00:00+08:00)")
        return moment
    moment = date_from_name(path.name, tz)
    if moment is None:
        raise ContentError("no date: add 'date:' to the front matter "
                           "or start the file name with YYYY-MM-DD")
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
            zone = UTC if match[7] else tz
            return datetime(y, mo, d, h, mi, s, tzinfo=zone)
        match = _DASHED_STAMP.search(name)
        if match:
            hour = int(match[4]) if match[4] and int(match[4]) < 24 else 0
            return datetime(int(match[1]), int(match[2]), int(match[3]), hour, tzinfo=tz)
    except ValueError:
        return None
    return None


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


def build_digest(header: Header, settings: Settings, aliases: dict[str, str]) -> Digest:
    meta, body = split_front_matter(read_text(header.path))
    tokens = _MD.parse(body)
    title = _meta_text(meta, "title") or _first_heading(tokens) or header.path.stem
    items = extract_items(body, tokens)
    excerpt = _meta_text(meta, "description") or _meta_text(meta, "summary")
    if not excerpt:
        excerpt = _shorten(_first_paragraph(tokens), 300)
    return Digest(
        path=header.path, title=_one_line(title), date=header.date,
        categories=map_categories(meta.get("categories"), aliases),
        url=post_url(meta, header.path, header.date, settings), items=tuple(items),
        excerpt=_one_line(excerpt),
    )


def post_url(meta: dict[str, Any], path: Path, moment: datetime, settings: Settings) -> str:
    explicit = _meta_text(meta, "url")
    if explicit:
        return urljoin(settings.base_url + "/", explicit)
    slug = _meta_text(meta, "slug") or path.stem
    local = moment.astimezone(settings.timezone)
    relative = settings.post_url.format(
        slug=quote(slug), year=f"{local.year:04d}", month=f"{local.month:02d}",
        day=f"{local.day:02d}")
    return urljoin(settings.base_url + "/", relative)


def _meta_text(meta: dict[str, Any], key: str) -> str:
    value = meta.get(key)
    return str(value).strip() if value is not None and not isinstance(value, dict | list) else ""


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


def _shorten(text: str, limit: int) -> str:
    text = _one_line(text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# ---------------------------------------------------------------- items

@dataclass
class _Lead:
    """The leading link of a list item or heading: what makes it an item."""

    headline: str
    url: str | None
    source: str | None
    rest: str  # Markdown that follows the link on the same line


@dataclass
class _OpenItem:
    lead: _Lead
    start: int  # first body line of the summary
    drop: list[tuple[int, int]] = field(default_factory=list)  # line ranges to leave out
    source: str | None = None


def extract_items(body: str, tokens: Sequence[Token] | None = None) -> list[Item]:
    """Items: list items or headings that lead with a link; summary runs to the next one."""
    tokens = list(tokens if tokens is not None else _MD.parse(body))
    lines = body.split("\n")
    items: list[Item] = []
    current: _OpenItem | None = None

    def close(end: int) -> None:
        nonlocal current
        if current is not None:
            items.append(_finish(current, lines, end))
            current = None

    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.type == "heading_open" and tok.map:
            lead = _leading_link(tokens[i + 1])
            close(tok.map[0])
            if lead:
                current = _OpenItem(lead, tok.map[1])
            i += 3
            continue
        if tok.type == "list_item_open" and tok.map and i + 2 < len(tokens):
            first = tokens[i + 2] if tokens[i + 1].type == "paragraph_open" else None
            lead = _leading_link(first) if first is not None else None
            if lead is None and current is None and first is not None:
                lead = _bold_lead(first)
            if lead:
                close(tok.map[0])
                end = _matching_close(tokens, i)
                para_end = (tokens[i + 1].map or tok.map)[1]
                current = _OpenItem(lead, para_end)
                _scan_sources(current, tokens[i + 4:end])
                close(tok.map[1])
                i = end + 1
                continue
        if tok.type == "hr" and tok.map:
            close(tok.map[0])
        elif current is not None and tok.type == "paragraph_open" and tok.map:
            _scan_sources(current, tokens[i:i + 3])
        i += 1
    close(len(lines))
    return items


def _matching_close(tokens: Sequence[Token], start: int) -> int:
    level = tokens[start].level
    for j in range(start + 1, len(tokens)):
        if tokens[j].type == "list_item_close" and tokens[j].level == level:
            return j
    return len(tokens) - 1


def _scan_sources(item: _OpenItem, tokens: Sequence[Token]) -> None:
    """An explicit 'Source: [name](url)' paragraph names the source; it leaves the summary."""
    for j, tok in enumerate(tokens):
        if tok.type != "paragraph_open" or not tok.map or j + 1 >= len(tokens):
            continue
        inline = tokens[j + 1]
        text = _inline_text(inline.children or [])
        match = _SOURCE_LABEL.match(text)
        if match and len(text) < 200:
            names = [_inline_text(c) for c in _link_texts(inline.children or [])]
            source = ", ".join(n for n in names if n) or text[match.end():].strip()
            if source and item.source is None:
                item.source = source
                item.drop.append((tok.map[0], tok.map[1]))


def _finish(item: _OpenItem, lines: list[str], end: int) -> Item:
    kept = [ln for n, ln in enumerate(lines[item.start:end], item.start)
            if not any(a <= n < b for a, b in item.drop)]
    block = textwrap.dedent("\n".join(kept)).strip()
    summary = "\n\n".join(part for part in (item.lead.rest, block) if part)
    return Item(headline=item.lead.headline, url=item.lead.url,
                source=item.lead.source or item.source,
                summary_md=summary, summary_text=markdown_to_text(summary))


def _leading_link(inline: Token | None) -> _Lead | None:
    if inline is None or inline.type != "inline":
        return None
    children = inline.children or []
    j = 0
    while j < len(children):  # skip numbering, emphasis and emoji before the link
        child = children[j]
        decoration = child.type in _DECORATION
        if decoration or (child.type == "text" and not any(c.isalpha() for c in child.content)):
            j += 1
        else:
            break
    if j >= len(children):
        return None
    if children[j].type == "link_open":
        k = j + 1
        while k < len(children) and children[k].type != "link_close":
            k += 1
        text = html.unescape(_inline_text(children[j + 1:k])).strip()
        if not text:
            return None
        rest = children[k + 1:]
        while rest and rest[0].type in ("strong_close", "em_close"):
            rest = rest[1:]
        headline, source = _split_source(text)
        return _Lead(headline, web_url(children[j].attrGet("href")), source,
                     _strip_separator(inline_markdown(rest)))
    return _bracketed_lead(children[j:])


def _bracketed_lead(children: Sequence[Token]) -> _Lead | None:
    """`[headline] summary … [Source](url)`: a bracketed headline and a trailing link."""
    first = children[0]
    match = re.match(r"\s*\[([^\]]{2,200})\]\s*", first.content) if first.type == "text" else None
    if not match:
        return None
    opens = [n for n, c in enumerate(children) if c.type == "link_open"]
    url = source = None
    body = list(children)
    if opens:
        last = opens[-1]
        close = next((n for n in range(last, len(children)) if children[n].type == "link_close"),
                     len(children) - 1)
        url = web_url(children[last].attrGet("href"))
        source = _inline_text(children[last + 1:close]).strip() or None
        body = [*children[:last], *children[close + 1:]]
    rest = inline_markdown(body)[match.end():]
    return _Lead(html.unescape(match[1]).strip(), url, source, _strip_separator(rest))


def _bold_lead(inline: Token) -> _Lead | None:
    """`- **headline**: summary … <a href=url>` (only outside another item's summary)."""
    children = list(inline.children or [])
    while children and children[0].type == "text" and not children[0].content.strip():
        children.pop(0)
    if len(children) < 4 or children[0].type != "strong_open" or children[2].type != "strong_close":
        return None
    if not children[3].content.lstrip().startswith((":", "：")):
        return None
    url = None
    for child in children[3:]:
        if child.type == "link_open":
            url = web_url(child.attrGet("href"))
        elif child.type == "html_inline":
            match = _HTML_HREF.search(child.content)
            url = web_url(html.unescape(match[1])) if match else None
        if url:
            break
    if url is None:
        return None
    headline = html.unescape(children[1].content).strip()
    return _Lead(headline, url, None, _strip_separator(inline_markdown(children[3:])))


def _split_source(text: str) -> tuple[str, str | None]:
    head, sep, tail = text.rpartition(" - ")
    if sep and head.strip() and tail.strip() and len(tail) <= 80:
        return head.strip(), tail.strip()
    return text, None


def web_url(href: Any) -> str | None:
    """An absolute http(s) URL, or None (placeholders, javascript:, relative links)."""
    href = str(href or "").strip()
    return href if re.match(r"https?://[^\s/]", href, re.IGNORECASE) else None


def _strip_separator(text: str) -> str:
    return re.sub(r"^[\s\-–—:：|]+", "", text).strip()


def _link_texts(children: Sequence[Token]) -> list[list[Token]]:
    result: list[list[Token]] = []
    inside: list[Token] | None = None
    for child in children:
        if child.type == "link_open":
            inside = []
        elif child.type == "link_close" and inside is not None:
            result.append(inside)
            inside = None
        elif inside is not None:
            inside.append(child)
    return result


def _inline_text(children: Sequence[Token]) -> str:
    parts: list[str] = []
    for child in children:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "image":
            parts.append(child.content)
    return "".join(parts)


def inline_markdown(children: Sequence[Token]) -> str:
    """Inline tokens back to Markdown (for the text that follows a headline link)."""
    parts: list[str] = []
    hrefs: list[str] = []
    for child in children:
        kind = child.type
        if kind == "text":
            parts.append(child.content)
        elif kind in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif kind == "code_inline":
            parts.append(f"{child.markup}{child.content}{child.markup}")
        elif kind in ("strong_open", "strong_close", "em_open", "em_close"):
            parts.append(child.markup)
        elif kind == "link_open":
            hrefs.append(str(child.attrGet("href") or ""))
            parts.append("[")
        elif kind == "link_close":
            parts.append(f"]({hrefs.pop() if hrefs else ''})")
        elif kind == "image":
            parts.append(f"![{child.content}]({child.attrGet('src') or ''})")
        elif kind == "html_inline":
            parts.append(child.content)
    return "".join(parts)


def markdown_to_text(markdown: str) -> str:
    """Plain text of a Markdown fragment: paragraphs apart, list items bulleted together."""
    out = ""
    in_item = was_item = False
    for tok in _MD.parse(markdown):
        if tok.type == "list_item_open":
            in_item = True
        elif tok.type in ("inline", "fence", "code_block"):
            text = tok.content.rstrip() if tok.type != "inline" else \
                _one_line(_inline_text(tok.children or []))
            if text:
                sep = "\n" if in_item and was_item else "\n\n"
                out += (sep if out else "") + ("- " if in_item else "") + text
                was_item = in_item
            in_item = False
    return out


def _first_heading(tokens: Sequence[Token]) -> str:
    for n, tok in enumerate(tokens):
        if tok.type == "heading_open" and n + 1 < len(tokens):
            return _inline_text(tokens[n + 1].children or []).strip()
    return ""


def _first_paragraph(tokens: Sequence[Token]) -> str:
    for n, tok in enumerate(tokens):
        if tok.type == "paragraph_open" and n + 1 < len(tokens):
            text = _inline_text(tokens[n + 1].children or []).strip()
            if text:
                return text
    return ""
