"""What one line of a digest says: its headline, story link, source, tags and the rest.

A list item's first paragraph, a heading or a paragraph is read as a flat run of pieces
(text, links, bold markers); images never enter it. The lead decides the item's shape:
a leading link (link-led), a bold lead, a bracketed headline, or plain text whose first
sentence is the headline and whose labelled or first link is the story link.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from markdown_it.token import Token

# Link texts that never name a story: "read more", a citation number, a bare URL, ...
PLACEHOLDER = re.compile(
    r"^(查看详情|详情|查看原文|阅读原文|阅读全文|原文链接|原文|全文|来源|來源|出处|链接|点击查看|点此|点击这里"
    r"|这里|更多|了解更多|传送门|read more|more|link|links|source|here|original|details|"
    r"full story|continue reading|via|\[?\d{1,3}\]?|[→»>›↗️🔗\s]*)$", re.IGNORECASE)
# A label saying "what follows is where this came from".
SOURCE_LABEL = re.compile(
    r"(来源|來源|出处|出處|原文链接|原文|source|sources|via|from)\s*[:：]?\s*$", re.IGNORECASE)
_LEADING_SOURCE = re.compile(r"^\s*(来源|來源|出处|出處|sources?|via)\s*[:：]\s*", re.IGNORECASE)
_NUMBER = re.compile(r"^\s*(?:[(（]\d{1,3}[)）]|\d{1,3}\s*[.、:：)）]|\d{1,3}(?=\s)|#\d{1,3}\b"
                     r"|[\u2460-\u2473\u2776-\u277f])\s*")
# a numbering mark opening a bold lead (`**1. Headline**`), never "1.5B" or "3 ways"
_BOLD_NUMBER = re.compile(r"^\s*(?:[(（]\d{1,3}[)）]|\d{1,3}\s*[.、:：)）](?!\d))\s*")
_BRACKET = re.compile(r"^\s*(?:\[([^\[\]]{1,200})\]|【([^【】]{1,200})】)\s*")
_SENTENCE_END = re.compile(r"[。！？!?]|\.(?=\s|$)|\n")
_CLAUSE = re.compile(r"[，,；;：:—]")
_A_OPEN = re.compile(r"""^<a\b[^>]*?\bhref\s*=\s*["']([^"']*)["']""", re.IGNORECASE)
_A_CLOSE = re.compile(r"^</a\s*>", re.IGNORECASE)
_BREAK = re.compile(r"^<br\s*/?>", re.IGNORECASE)
_WEB = re.compile(r"https?://[^\s/]", re.IGNORECASE)
HEADLINE_MAX = 100


def web_url(href: object) -> str | None:
    """An absolute http(s) URL, or None (placeholders, javascript:, relative links)."""
    text = str(href or "").strip()
    return text if _WEB.match(text) else None


@dataclass
class Piece:
    kind: str  # text, link, strong (a marker), em (a marker)
    text: str = ""  # plain text
    md: str = ""  # Markdown
    href: str = ""  # links


@dataclass
class Lead:
    """A line read as the start of an item."""

    headline: str
    url: str | None
    source: str | None
    shape: str  # link-led, bold-lead, bracketed, text
    rest_md: str  # Markdown after the headline
    rest_text: str
    text: str  # the whole line as plain text
    numbered: bool = False
    tags: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # every story-worthy link on the line
    link_only: bool = False  # nothing but links and a short label
    bold_only: bool = False  # the whole line is bold


def pieces_of(children: Sequence[Token]) -> list[Piece]:
    """Inline tokens as pieces; a link (Markdown or <a href>) is one piece, images vanish."""
    out: list[Piece] = []
    link: Piece | None = None
    for child in children:
        kind = child.type
        if kind == "link_open" or (kind == "html_inline" and _A_OPEN.match(child.content)):
            href = child.attrGet("href") if kind == "link_open" else _A_OPEN.match(
                child.content)[1]  # type: ignore[index]
            link = Piece("link", href=html.unescape(str(href or "")))
            continue
        if kind == "link_close" or (kind == "html_inline" and _A_CLOSE.match(child.content)):
            if link is not None:
                out.append(link)
                link = None
            continue
        if kind == "image":
            continue
        if kind in ("text", "code_inline"):
            text = child.content
            md = f"{child.markup}{text}{child.markup}" if kind == "code_inline" else text
        elif kind in ("softbreak", "hardbreak") or (kind == "html_inline"
                                                    and _BREAK.match(child.content)):
            text, md = " ", "\n"
        elif kind in ("strong_open", "strong_close", "em_open", "em_close"):
            if link is not None:
                link.md += child.markup
            else:
                out.append(Piece(kind[:-5] if kind.endswith("_open") else kind[:-6],
                                 md=child.markup))
            continue
        else:
            continue
        if not text:
            continue
        if link is not None:
            link.text += text
            link.md += md
        elif out and out[-1].kind == "text":
            out[-1].text += text
            out[-1].md += md
        else:
            out.append(Piece("text", text, md))
    if link is not None:  # an <a> never closed: keep its text
        out.append(Piece("text", link.text, link.md))
    return out


def plain(pieces: Sequence[Piece]) -> str:
    return " ".join("".join(p.text for p in pieces).split())


def markdown(pieces: Sequence[Piece]) -> str:
    parts: list[str] = []
    for p in pieces:
        parts.append(f"[{p.md}]({p.href})" if p.kind == "link" else p.md)
    return "".join(parts).strip()


def is_placeholder(text: str) -> bool:
    text = text.strip()
    return bool(PLACEHOLDER.match(text)) or bool(_WEB.match(text))


def story_url(href: str, exclude_links: re.Pattern[str] | None) -> str | None:
    """The link as a story's link: absolute http(s) and not left out by `exclude_links`."""
    url = web_url(href)
    return None if url is None or (exclude_links and _left_out(exclude_links, url)) else url


@lru_cache(maxsize=8192)
def _left_out(exclude_links: re.Pattern[str], url: str) -> bool:
    return exclude_links.search(url) is not None  # a long alternation: once per link


def read_lead(pieces: list[Piece], exclude_links: re.Pattern[str] | None = None) -> Lead:
    """Headline, story link, source and tags of a line, by the shape it is written in.
    Numbering is trimmed off `pieces` in place."""
    text = plain(pieces)

    def story(href: str) -> str | None:
        return story_url(href, exclude_links)

    links = [u for p in pieces if p.kind == "link" and (u := story(p.href))]
    outside = plain([p for p in pieces if p.kind != "link"])
    link_only = bool(pieces) and any(p.kind == "link" for p in pieces) and \
        len(re.sub(r"[\W_]", "", SOURCE_LABEL.sub("", outside))) <= 4
    start, numbered, tags, bracketed = _skip_decoration(pieces)
    body = pieces[start:]
    lead = Lead("", None, None, "text", "", "", text, numbered, tags, links, link_only)
    if bracketed is not None:
        lead.headline, lead.shape = bracketed, "bracketed"
        _trailing_story_link(lead, body, story)
        _set_rest(lead, body)
        return lead
    first = body[0] if body else None
    if first is not None and first.kind == "link" and first.text.strip() \
            and not is_placeholder(first.text):
        headline, source = _split_source(html.unescape(plain([first])))
        lead.headline, lead.source, lead.shape = headline, source, "link-led"
        lead.url = story(first.href)
        _set_rest(lead, _drop_closers(body[1:]))
        return lead
    if first is not None and first.kind == "strong":
        end = next((k for k in range(1, len(body)) if body[k].kind == "strong"), len(body))
        inner, rest = body[1:end], _drop_closers(body[end + 1:])
        inner_links = [p for p in inner if p.kind == "link"]
        if len(inner_links) == 1 and not _NUMBER.sub("", plain(
                [p for p in inner if p.kind != "link"])).strip(" :：-–—|·"):
            # `**[Title](url)**`: a link-led line set in bold
            headline, source = _split_source(html.unescape(plain(inner_links)))
            lead.headline, lead.source, lead.shape = headline, source, "link-led"
            lead.url = story(inner_links[0].href)
        else:
            lead.headline = plain(inner).strip(" :：-–—|·")
            lead.shape = "bold-lead"
            lead.url = next((u for p in inner_links if (u := story(p.href))), None)
            if lead.url is None:
                _trailing_story_link(lead, rest, story)
        lead.bold_only = not plain(rest).strip(" :：-–—|·")
        _set_rest(lead, rest)
        if lead.headline:
            return lead
    # plain text: the first sentence is the headline, the labelled or first link the story
    lead.shape = "text"
    _trailing_story_link(lead, body, story)
    words = [p for p in body if not (p.kind == "link" and is_placeholder(p.text))]
    sentence = first_sentence(plain(words))
    lead.headline = sentence
    _set_rest(lead, _cut(body, sentence))
    return lead


def _skip_decoration(pieces: list[Piece]) -> tuple[int, bool, list[str], str | None]:
    """Skip numbering, emoji and tags before the headline: (start, numbered, tags, a
    bracketed headline if the line starts with one)."""
    numbered, tags = False, []
    i = 0
    while i < len(pieces):
        p = pieces[i]
        if p.kind == "text":
            s = p.text
            while True:
                s = _strip_symbols(s)
                match = _NUMBER.match(s)
                if match and match.end() > 0:
                    numbered, s = True, s[match.end():]
                    continue
                match = _BRACKET.match(s)
                if match:
                    inside = (match[1] or match[2]).strip()
                    after = s[match.end():]
                    next_is_link = not after.strip() and i + 1 < len(pieces) and \
                        pieces[i + 1].kind in ("link", "strong")
                    if next_is_link or _short_tag(inside):
                        tags.append(inside)
                        s = after
                        continue
                    pieces[i] = Piece("text", after, after)
                    return i, numbered, tags, inside
                break
            if s.strip():
                pieces[i] = Piece("text", s, s)
                return i, numbered, tags, None
            i += 1
            continue
        if p.kind == "strong":  # `**04**` or `**[开源]**`: a bold number or tag
            end = next((k for k in range(i + 1, len(pieces)) if pieces[k].kind == "strong"), -1)
            inner = pieces[i + 1:end] if end > 0 else []
            if inner and all(q.kind == "text" for q in inner):
                word = plain(inner)
                number = _NUMBER.match(word + " ")
                bracket = _BRACKET.match(word)
                if number and not word[number.end() - 1:].strip():
                    numbered, i = True, end + 1
                    continue
                if bracket and not word[bracket.end():].strip():
                    tags.append((bracket[1] or bracket[2]).strip())
                    i = end + 1
                    continue
                mark = _BOLD_NUMBER.match(inner[0].text)
                if mark and inner[0].text[mark.end():].strip():
                    rest = inner[0].text[mark.end():]
                    pieces[i + 1] = Piece("text", rest, rest)
                    numbered = True
        return i, numbered, tags, None
    return i, numbered, tags, None


def _strip_symbols(s: str) -> str:
    """Leading emoji, bullets and dashes ("🔥 ", "• ", "— ") are decoration."""
    k = 0
    while k < len(s) and (s[k].isspace() or unicodedata.category(s[k])[0] in "SZ"
                          or s[k] in "-–—•·|*\ufe0f\u200d"):
        k += 1
    return s[k:]


def _short_tag(inside: str) -> bool:
    """`[开源]`, `[video]`: a tag; `[AI计算资源短缺影响整个经济]`: a bracketed headline."""
    cjk = sum(1 for c in inside if _is_cjk(c))
    return (cjk <= 4 and len(inside) <= 6) if cjk else len(inside.split()) == 1 and len(
        inside) <= 14


def _is_cjk(c: str) -> bool:
    return "\u3040" <= c <= "\u30ff" or "\u3400" <= c <= "\u9fff" or "\uac00" <= c <= "\ud7af"


def _drop_closers(pieces: list[Piece]) -> list[Piece]:
    while pieces and pieces[0].kind in ("strong", "em") and not pieces[0].text:
        # a closing marker left after the lead (`**[x](u)**`): not part of the rest
        if len([p for p in pieces if p.kind == pieces[0].kind]) % 2 == 0:
            break
        pieces = pieces[1:]
    return pieces


def _trailing_story_link(lead: Lead, pieces: list[Piece], story: object) -> None:
    """The story link of a line that doesn't lead with one: the link labelled as its source
    (or a placeholder such as "原文"), else the first link; a trailing short link text that
    is a name ("TechCrunch") is the source."""
    assert callable(story)
    candidates: list[tuple[int, Piece]] = []
    for k, p in enumerate(pieces):
        if p.kind == "link" and story(p.href):
            candidates.append((k, p))
    if not candidates:
        return
    labelled = [(k, p) for k, p in candidates if is_placeholder(p.text) or (
        k > 0 and pieces[k - 1].kind == "text" and SOURCE_LABEL.search(pieces[k - 1].text))]
    k, chosen = (labelled or candidates)[0]
    lead.url = story(chosen.href)
    trailing = not plain(pieces[k + 1:]).strip(" .。)）]】|")
    name = plain([chosen])
    if not is_placeholder(name) and len(name) <= 40 and (trailing or labelled):
        lead.source = name


def _set_rest(lead: Lead, rest: list[Piece]) -> None:
    # a trailing source link or placeholder is shown as the source, not in the summary
    kept = list(rest)
    while kept and (kept[-1].kind != "link" and not kept[-1].text.strip(" .。|")):
        kept.pop()
    if kept and kept[-1].kind == "link" and web_url(kept[-1].href) == lead.url and (
            is_placeholder(kept[-1].text) or plain([kept[-1]]) == lead.source):
        kept.pop()
        if kept and kept[-1].kind == "text":
            label = SOURCE_LABEL.sub("", kept[-1].text.rstrip(" (（[【|-—–"))
            kept[-1] = Piece("text", label.rstrip(" (（[【|-—–"), label.rstrip(" (（[【|-—–"))
    md = markdown(kept)
    lead.rest_md = re.sub(r"^[\s\-–—:：|·]+", "", md).strip()
    words = [p for p in kept if p.kind != "link" or not is_placeholder(p.text)]
    lead.rest_text = plain(words).strip(" -–—:：|·()（）[]")


def _cut(pieces: list[Piece], sentence: str) -> list[Piece]:
    """The pieces after the first `len(sentence)` characters of plain text."""
    want = len(sentence.rstrip("…"))
    if sentence.endswith("…"):
        return pieces  # a cut sentence: keep the whole line as the summary
    seen = 0
    for k, p in enumerate(pieces):
        text = " ".join(p.text.split()) if p.kind != "link" or not is_placeholder(p.text) else ""
        if seen + len(text) >= want and text:
            if p.kind == "link":
                return pieces[k + 1:]
            cut = max(0, want - seen)
            while cut < len(p.text) and p.text[cut] in "。！？!?. ":
                cut += 1
            tail = p.text[cut:]
            return [Piece("text", tail, tail), *pieces[k + 1:]]
        seen += len(text)
    return []


def first_sentence(text: str, limit: int = HEADLINE_MAX) -> str:
    """The first sentence, cut at a clause when it is too long to be a headline."""
    text = " ".join(text.split()).strip(" -–—:：|·")
    match = _SENTENCE_END.search(text)
    sentence = text[:match.start() + (1 if match[0] in "。！？!?" else 0)] if match else text
    sentence = sentence.rstrip("。.")
    if len(sentence) <= limit:
        return sentence
    clauses = [m.start() for m in _CLAUSE.finditer(sentence, 0, limit)]
    if clauses and clauses[-1] >= 12:
        return sentence[:clauses[-1]]
    return sentence[:limit - 1].rstrip() + "…"


def _split_source(text: str) -> tuple[str, str | None]:
    """`Headline - Source`: the tail after the last " - " names the source."""
    for separator in (" - ", " · ", " | ", " — "):
        head, sep, tail = text.rpartition(separator)
        if sep and head.strip() and tail.strip() and len(tail) <= 40:
            return head.strip(), tail.strip()
    return text.strip(), None


def leading_source(text: str) -> str | None:
    """The name in a `来源：TechCrunch` / `Source: X` line, or None."""
    match = _LEADING_SOURCE.match(text)
    return text[match.end():].strip() or None if match else None


def label_like(text: str, limit: int = 12) -> bool:
    """A short label ("产品与功能更新", "Open source", "🔥 重磅 TOP 10") rather than a headline:
    CJK characters plus twice the Latin words stay within `limit`."""
    text = text.strip()
    if not text or text[-1] in "。！？!?":
        return False
    cjk = sum(1 for c in text if _is_cjk(c))
    words = len(re.findall(r"[A-Za-z0-9]+(?:[.'’-][A-Za-z0-9]+)*", text))
    return cjk + 2 * words <= limit
