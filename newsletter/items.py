"""Items of a digest body: list items or headings that lead with a link.

The body is read as markdown-it-py tokens, never with regexes over Markdown. An item's
summary runs from its headline to the next item (or a plain heading, or a rule); it is kept
as Markdown (the source lines, so nothing is lost) and as plain text.
"""

from __future__ import annotations

import html
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token

_SOURCE_LABEL = re.compile(r"^\s*(来源|來源|出处|Sources?|Via)\s*[:：]\s*", re.IGNORECASE)
_HTML_HREF = re.compile(r"""href\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
_DECORATION = ("strong_open", "strong_close", "em_open", "em_close", "softbreak")
MD = MarkdownIt("commonmark").enable("table")


@dataclass(frozen=True)
class Item:
    headline: str
    url: str | None
    source: str | None
    summary_md: str
    summary_text: str


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
    tokens = list(tokens if tokens is not None else MD.parse(body))
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
    for tok in MD.parse(markdown):
        if tok.type == "list_item_open":
            in_item = True
        elif tok.type in ("inline", "fence", "code_block"):
            text = tok.content.rstrip() if tok.type != "inline" else \
                " ".join(_inline_text(tok.children or []).split())
            if text:
                sep = "\n" if in_item and was_item else "\n\n"
                out += (sep if out else "") + ("- " if in_item else "") + text
                was_item = in_item
            in_item = False
    return out


def first_heading(tokens: Sequence[Token]) -> str:
    for n, tok in enumerate(tokens):
        if tok.type == "heading_open" and n + 1 < len(tokens):
            return _inline_text(tokens[n + 1].children or []).strip()
    return ""


def first_paragraph(tokens: Sequence[Token]) -> str:
    for n, tok in enumerate(tokens):
        if tok.type == "paragraph_open" and n + 1 < len(tokens):
            text = _inline_text(tokens[n + 1].children or []).strip()
            if text:
                return text
    return ""
