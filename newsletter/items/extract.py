"""Items of a digest body, found by structure rather than by per-site patterns.

A body is a tree: headings (and bold-only paragraphs, which act as headings) open
sections; lists hold items that may hold lists. Each section heading and each list item
is either a *group* (its children are items; its text becomes their section) or an *item*
(its children are its summary, and their links its extra links):

- a short, unlinked label ("产品与功能更新", "Top stories") with items under it is a group;
- a headline, linked or numbered heading is an item unless two or more children carry
  links of their own (a community or channel heading grouping posts);
- a list item whose lead is a short label and whose nested list holds items is a group;
- a list of bare links under an item, or a section labelled as its sources, gives that
  item extra links.

Sections whose heading matches `exclude_sections` are skipped whole; links matching
`exclude_links` are never a story's link. An item told only as a line in an overview and
again in full later in the post is kept once, in full.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from markdown_it.token import Token

from newsletter.items.blocks import Block, block_tree
from newsletter.items.html import html_to_markdown
from newsletter.items.inline import (
    Lead,
    Piece,
    is_placeholder,
    label_like,
    leading_source,
    markdown,
    pieces_of,
    plain,
    read_lead,
    story_url,
)
from newsletter.items.item import Item
from newsletter.items.repeats import drop_repeats
from newsletter.items.text import MD

# Headings that introduce the links of the item above them, not items of their own.
_LINKS_LABEL = re.compile(
    r"^\W*(来源|來源|出处|信息来源|参考|参考资料|参考链接|相关链接|链接|原文|原文链接|延伸阅读|扩展阅读"
    r"|sources?|links?|links mentioned|references|further reading|read more|related( links)?)"
    r"\W*$", re.IGNORECASE)
_BOLD_HEADER_MAX = 120
_STORY_PROSE = 80  # characters of text under a heading that tell a story of its own
_HTML_STRUCTURE = re.compile(r"<(h[1-6]|p|li|a)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Rules:
    exclude_sections: re.Pattern[str] | None = None
    exclude_links: re.Pattern[str] | None = None


@dataclass
class Extraction:
    items: list[Item] = field(default_factory=list)
    shapes: Counter[str] = field(default_factory=Counter)
    excluded: list[str] = field(default_factory=list)  # headings of the sections left out


@dataclass
class _Body:
    """An item's body: its summary (Markdown and plain text), the source named in it, the
    links labelled as its sources and every other link."""

    md: str = ""
    text: str = ""
    source: str | None = None
    labelled: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)


@dataclass
class _Section:
    header: Block | None
    rank: int
    body: list[Block | _Section] = field(default_factory=list)


def extract(body: str, tokens: Sequence[Token] | None = None, rules: Rules = Rules()
            ) -> Extraction:
    """Every item of a digest body, in reading order, with what the check reports."""
    walker = _Walker(rules)
    tokens = tokens if tokens is not None else MD.parse(body)
    if any(t.type == "html_block" and _HTML_STRUCTURE.search(t.content) for t in tokens):
        tokens = MD.parse(_with_html_as_markdown(body, tokens))
    blocks = block_tree(tokens)
    items = drop_repeats(walker.section(_sections(blocks), None))
    walker.result.items = items
    walker.result.shapes = Counter(item.shape for item in items)
    return walker.result


def extract_items(body: str, tokens: Sequence[Token] | None = None, rules: Rules = Rules()
                  ) -> list[Item]:
    return extract(body, tokens, rules).items


def _with_html_as_markdown(body: str, tokens: Sequence[Token]) -> str:
    """The body with each raw HTML block that has structure rewritten as Markdown."""
    lines = body.split("\n")
    for tok in reversed(tokens):
        if tok.type == "html_block" and tok.map and _HTML_STRUCTURE.search(tok.content):
            start, end = tok.map
            lines[start:end] = ["", *html_to_markdown(tok.content).split("\n"), ""]
    return "\n".join(lines)


def _sections(blocks: list[Block]) -> _Section:
    root = _Section(None, 0)
    stack = [root]
    for block in blocks:
        rank = block.level if block.kind == "heading" else 7 if _bold_header(block) else 0
        if rank:
            while stack[-1].rank >= rank:
                stack.pop()
            section = _Section(block, rank)
            stack[-1].body.append(section)
            stack.append(section)
        else:
            stack[-1].body.append(block)
    return root


def _bold_header(block: Block) -> bool:
    """A paragraph that is all bold (`**Headline**`, `**1. [Title](url)**`) heads what
    follows it, like a heading."""
    if block.kind != "paragraph":
        return False
    pieces = [p for p in pieces_of(block.inline_children()) if p.kind != "em"]
    while pieces and pieces[-1].kind == "text" and not pieces[-1].text.strip(" :："):
        pieces.pop()
    return (len(pieces) >= 3 and pieces[0].kind == "strong" and pieces[-1].kind == "strong"
            and sum(p.kind == "strong" for p in pieces) == 2
            and 0 < len(plain(pieces)) <= _BOLD_HEADER_MAX)


class _Walker:
    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.result = Extraction()
        self._pieces: dict[int, list[Piece]] = {}
        self._leads: dict[int, Lead] = {}

    def lead(self, block: Block) -> Lead:
        key = id(block)
        if key not in self._leads:
            # a copy: reading the lead trims its numbering off the pieces
            self._leads[key] = read_lead(list(self.pieces(block)), self.rules.exclude_links)
        return self._leads[key]

    def excluded(self, label: str) -> bool:
        pattern = self.rules.exclude_sections
        if pattern is not None and label and pattern.search(label):
            self.result.excluded.append(label)
            return True
        return False

    # -------------------------------------------------------------- sections

    def section(self, section: _Section, name: str | None) -> list[Item]:
        header = self.lead(section.header) if section.header is not None else None
        title = header.headline if header is not None else ""
        if header is not None and label_like(title) and self.excluded(title):
            return []  # a section label the reader did not sign up for (a headline never is)
        blocks = [b for b in section.body if isinstance(b, Block)]
        labelled_group = header is not None and section.rank < 7 and label_like(title) \
            and header.url is None and not header.numbered and not header.tags
        group_name = title if labelled_group else name
        source_links: list[str] = []
        details: list[_Section] = []  # labelled sub-sections that only describe this item
        inner: list[Item] = []
        prose = sum(len(plain(pieces_of(b.inline_children()))) for b in blocks
                    if b.kind == "paragraph")
        for sub in (s for s in section.body if isinstance(s, _Section)):
            sub_title = self.lead(sub.header).headline if sub.header is not None else ""
            if _LINKS_LABEL.match(sub_title):
                source_links += self.links_in(sub)
                continue
            if header is not None and not labelled_group and prose >= _STORY_PROSE and \
                    label_like(sub_title) and self.plain_notes(sub):
                details.append(sub)  # "关键标签" under a story: notes on it, not stories
            else:
                inner += self.section(sub, group_name)
        candidates = self.items_of(blocks, group_name)
        if header is None or inner:
            return candidates + inner
        if labelled_group:
            if candidates:
                return candidates
            if not any(self.links_in_blocks(blocks)) and label_like(title, limit=8):
                return []  # an intro, outro or note under a label: not a story
        elif len({i.url for i in candidates if i.url and i.url != header.url}) >= 2:
            return candidates  # a linked or long heading grouping posts with links of their own
        for sub in details:
            assert sub.header is not None
            blocks = [*blocks, sub.header, *(b for b in sub.body if isinstance(b, Block))]
        if not title or (header.url is None and not any(b.kind in ("paragraph", "list")
                                                         for b in blocks)):
            return candidates  # a title over a table, a quote or nothing: not a story
        return [self.heading_item(header, blocks, source_links, name)]

    def plain_notes(self, section: _Section) -> bool:
        """A section of plain bulleted lines or text: no sub-sections, numbers, bold leads
        or links of its own."""
        blocks = section.body
        if not blocks or any(isinstance(b, _Section) or b.kind not in ("list", "paragraph")
                             or (b.kind == "list" and b.ordered) for b in blocks):
            return False
        if self.links_in_blocks([b for b in blocks if isinstance(b, Block)]):
            return False
        lines = [b for b in blocks if isinstance(b, Block) and b.kind == "paragraph"] + [
            e.children[0] for b in blocks if isinstance(b, Block) and b.kind == "list"
            for e in b.children if e.children and e.children[0].kind == "paragraph"]
        return all(self.lead(line).shape == "text" and not self.lead(line).numbered
                   for line in lines)

    def heading_item(self, header: Lead, blocks: list[Block], source_links: list[str],
                     section: str | None) -> Item:
        body = self.summary(blocks)
        links = _unique([*header.links, *body.labelled, *source_links, *body.links])
        url = header.url or next(iter(body.labelled), None) or \
            next(iter(source_links), None) or next(iter(links), None)
        return _item(header, body, url=url, links=links, section=section,
                     shape="heading" if header.shape != "link-led" else "heading-link")

    # -------------------------------------------------------------- lists and paragraphs

    def items_of(self, blocks: list[Block], section: str | None) -> list[Item]:
        items: list[Item] = []
        links_follow = False
        numbered: int | None = None  # the numbered paragraph whose story is still open
        for block in blocks:
            if block.kind == "list":
                if links_follow:  # "Links mentioned:" then a list: the last item's links
                    if items:
                        last = items[-1]
                        extra = _unique([*last.links, *self.links_in_blocks([block])])
                        items[-1] = replace(last, links=tuple(u for u in extra if u != last.url))
                    links_follow = False
                    continue
                for entry in block.children:
                    found = self.list_item(entry, section)
                    if block.ordered:
                        found = [replace(i, shape=f"numbered {i.shape}")
                                 if not i.shape.startswith("numbered") else i for i in found]
                    items += found
            elif block.kind == "paragraph":
                lead = self.lead(block)
                links_follow = bool(_LINKS_LABEL.match(lead.text.rstrip(":：")))
                if links_follow:
                    numbered = None
                elif numbered is not None and not lead.numbered and lead.shape == "text":
                    items[numbered] = self.continued(items[numbered], block)
                elif self.paragraph_is_item(lead):
                    items.append(_item(lead, section=section, links=lead.links))
                    numbered = len(items) - 1 if lead.numbered else None
                continue
            else:
                links_follow = False
            numbered = None
        return items

    def continued(self, item: Item, block: Block) -> Item:
        """A numbered paragraph's story goes on in the plain paragraphs after it."""
        body = self.summary([block])
        links = [*body.labelled, *body.links]
        url = item.url or next(iter(links), None)
        return replace(item, url=url, source=item.source or body.source,
                       summary_md="\n\n".join(p for p in (item.summary_md, body.md) if p),
                       summary_text="\n\n".join(p for p in (item.summary_text, body.text) if p),
                       links=tuple(u for u in _unique([*item.links, *links]) if u != url))

    def paragraph_is_item(self, lead: Lead) -> bool:
        if not lead.headline or (lead.link_only and lead.url is None):
            return False
        if lead.link_only and not lead.numbered and lead.shape != "link-led":
            return False
        return lead.url is not None or lead.numbered or (
            lead.shape == "bold-lead" and len(lead.rest_text) >= 15)

    def list_item(self, entry: Block, section: str | None) -> list[Item]:
        blocks = entry.children
        if not blocks or blocks[0].kind != "paragraph":
            return self.items_of(blocks, section)
        lead = self.lead(blocks[0])
        rest = blocks[1:]
        if lead.tags and self.rules.exclude_sections is not None and any(
                self.rules.exclude_sections.search(t) for t in lead.tags):
            return []
        nested_lists = [b for b in rest if b.kind == "list"]
        if nested_lists and label_like(lead.headline) and not lead.rest_text:
            if self.excluded(lead.headline):
                return []
            nested = self.items_of(nested_lists, lead.headline)
            if nested and (lead.url is None or any(_told_as_item(i) for i in nested)) \
                    and not _LINKS_LABEL.match(lead.headline):
                return nested  # a group: its label is the section of the items under it
        if not lead.headline:
            return []
        if (lead.link_only or lead.shape == "link-led") and not lead.links and not rest:
            return []  # navigation: an anchor or a relative link, and nothing more
        body = self.summary(rest)
        links = _unique([*lead.links, *body.labelled, *body.links])
        url = lead.url or next(iter(body.labelled), None) or next(iter(links), None)
        return [_item(lead, body, url=url, links=links, section=section)]

    # -------------------------------------------------------------- summaries

    def summary(self, blocks: list[Block]) -> _Body:
        """An item's body. Lines naming the source leave the summary; a list after a
        "Links"/"来源" label gives labelled links."""
        body = _Body()
        md: list[str] = []
        text: list[str] = []
        links_follow = False
        for block in blocks:
            if links_follow and block.kind == "list":
                body.labelled += self.links_in_blocks([block])
                links_follow = False
                continue
            links_follow = block.kind in ("paragraph", "heading") and bool(
                _LINKS_LABEL.match(plain(self.pieces(block)).rstrip(":：")))
            if links_follow:
                continue
            if block.kind in ("paragraph", "heading"):
                if self.names_source(block, body):
                    continue
                line_md, line_text = markdown(self.pieces(block)), plain(self.pieces(block))
                if line_text:
                    md.append(f"**{line_md}**" if block.kind == "heading" else line_md)
                    text.append(line_text)
                body.links += self.links_in_blocks([block])
            elif block.kind == "list":
                lines: list[tuple[str, str]] = []
                for entry in block.children:
                    first = entry.children[0] if entry.children else None
                    if first is None or first.kind != "paragraph" or \
                            self.names_source(first, body):
                        continue
                    line_text = plain(self.pieces(first))
                    if line_text:
                        lines.append((markdown(self.pieces(first)), line_text))
                    body.links += self.links_in_blocks(entry.children)
                if lines:
                    md.append("\n".join(f"- {m}" for m, _ in lines))
                    text.append("\n".join(f"- {t}" for _, t in lines))
            elif block.kind == "quote":
                inner = self.summary(block.children)
                if inner.md:
                    md.append("\n".join(f"> {ln}" if ln else ">" for ln in inner.md.split("\n")))
                    text.append(inner.text)
                body.source = body.source or inner.source
                body.labelled += inner.labelled
                body.links += inner.links
        body.md, body.text = "\n\n".join(md), "\n\n".join(text)
        return body

    def names_source(self, block: Block, body: _Body) -> bool:
        """A `来源：TechCrunch` / `Source: [X](url)` line: it names the item's source (and
        gives labelled links) instead of adding to the summary."""
        pieces = self.pieces(block)
        text = plain(pieces)
        named = leading_source(text)
        if named is None or len(text) >= 200:
            return False
        links = [u for p in pieces if p.kind == "link" and (u := self.story(p.href))]
        names = [plain([p]) for p in pieces if p.kind == "link" and not is_placeholder(p.text)]
        bare = re.findall(r"https?://\S+", named)
        body.source = body.source or ", ".join(names) or (None if bare else named)
        body.labelled += links + bare
        return True

    def pieces(self, block: Block) -> list[Piece]:
        key = id(block)
        if key not in self._pieces:
            self._pieces[key] = pieces_of(block.inline_children())
        return self._pieces[key]

    def story(self, href: str) -> str | None:
        return story_url(href, self.rules.exclude_links)

    def links_in_blocks(self, blocks: list[Block]) -> list[str]:
        found: list[str] = []
        for block in blocks:
            if block.inline is not None:
                found += [u for p in self.pieces(block)
                          if p.kind == "link" and (u := self.story(p.href))]
            found += self.links_in_blocks(block.children)
        return found

    def links_in(self, section: _Section) -> list[str]:
        found = self.links_in_blocks([b for b in section.body if isinstance(b, Block)])
        for sub in section.body:
            if isinstance(sub, _Section):
                found += self.links_in(sub)
        return found


def _item(lead: Lead, body: _Body | None = None, *, url: str | None = None,
          links: Sequence[str] = (), section: str | None = None, shape: str | None = None
          ) -> Item:
    url = url if url is not None else lead.url
    body = body or _Body()
    if shape is None:
        shape = lead.shape if lead.shape != "text" else "text-link" if url else "text"
    return Item(headline=lead.headline, url=url, source=lead.source or body.source,
                summary_md="\n\n".join(p for p in (lead.rest_md, body.md) if p),
                summary_text="\n\n".join(p for p in (lead.rest_text, body.text) if p),
                section=section, tags=tuple(lead.tags),
                links=tuple(u for u in _unique(links) if u != url),
                shape=("numbered " if lead.numbered else "") + shape)


def _told_as_item(item: Item) -> bool:
    """Written as a story of its own (a link, a number, a bold lead), not a plain note."""
    return item.url is not None or item.shape != "text"



def _unique(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


def compile_rules(exclude_sections: Sequence[str], exclude_links: Sequence[str]) -> Rules:
    """Rules from the configured pattern lists (each a regular expression)."""

    def joined(patterns: Sequence[str]) -> re.Pattern[str] | None:
        return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE) \
            if patterns else None

    return Rules(joined(exclude_sections), joined(exclude_links))
