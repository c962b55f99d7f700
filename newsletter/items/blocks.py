"""The block structure of a Markdown body: markdown-it-py's flat token stream as a tree.

Headings stay flat here (sections are built from them by `extract`); lists, list items and
block quotes nest their children. Nothing is lost that an item could need: each paragraph
and heading keeps its inline token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from markdown_it.token import Token

_CONTAINERS = {
    "bullet_list_open": "list", "ordered_list_open": "list", "list_item_open": "item",
    "blockquote_open": "quote",
}
_CLOSERS = {"bullet_list_close", "ordered_list_close", "list_item_close", "blockquote_close"}


@dataclass
class Block:
    kind: str  # heading, paragraph, list, item, quote, code, table, hr, html
    level: int = 0  # heading level
    inline: Token | None = None  # headings and paragraphs
    children: list[Block] = field(default_factory=list)
    ordered: bool = False
    text: str = ""  # code and html content

    def inline_children(self) -> list[Token]:
        return list(self.inline.children or []) if self.inline is not None else []


def block_tree(tokens: Sequence[Token]) -> list[Block]:
    """The top-level blocks of a token stream, containers holding their children."""
    root: list[Block] = []
    stack: list[Block] = []
    i, n = 0, len(tokens)
    while i < n:
        tok = tokens[i]
        kind = tok.type
        target = stack[-1].children if stack else root
        if kind in ("heading_open", "paragraph_open") and i + 1 < n:
            level = int(tok.tag[1:]) if kind == "heading_open" and tok.tag[1:].isdigit() else 0
            target.append(Block("heading" if level else "paragraph", level, tokens[i + 1]))
            i += 3
            continue
        if kind in _CONTAINERS:
            block = Block(_CONTAINERS[kind], ordered=kind == "ordered_list_open")
            target.append(block)
            stack.append(block)
        elif kind in _CLOSERS:
            if stack:
                stack.pop()
        elif kind == "table_open":
            while i < n and tokens[i].type != "table_close":
                i += 1
            target.append(Block("table"))
        elif kind in ("fence", "code_block"):
            target.append(Block("code", text=tok.content))
        elif kind == "html_block":
            target.append(Block("html", text=tok.content))
        elif kind == "hr":
            target.append(Block("hr"))
        i += 1
    return root
