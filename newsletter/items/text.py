"""Markdown to plain text, and the first heading and paragraph of a body."""

from __future__ import annotations

from collections.abc import Sequence

from markdown_it import MarkdownIt
from markdown_it.token import Token

from newsletter.items.inline import pieces_of, plain

MD = MarkdownIt("commonmark").enable("table")


def markdown_to_text(markdown: str) -> str:
    """Plain text of a Markdown fragment: paragraphs apart, list items bulleted together."""
    out = ""
    in_item = was_item = False
    for tok in MD.parse(markdown):
        if tok.type == "list_item_open":
            in_item = True
        elif tok.type in ("inline", "fence", "code_block"):
            text = tok.content.rstrip() if tok.type != "inline" else \
                plain(pieces_of(tok.children or []))
            if text:
                sep = "\n" if in_item and was_item else "\n\n"
                out += (sep if out else "") + ("- " if in_item else "") + text
                was_item = in_item
            in_item = False
    return out


def first_heading(tokens: Sequence[Token]) -> str:
    for n, tok in enumerate(tokens):
        if tok.type == "heading_open" and n + 1 < len(tokens):
            return plain(pieces_of(tokens[n + 1].children or []))
    return ""


def first_paragraph(tokens: Sequence[Token]) -> str:
    for n, tok in enumerate(tokens):
        if tok.type == "paragraph_open" and n + 1 < len(tokens):
            text = plain(pieces_of(tokens[n + 1].children or []))
            if text:
                return text
    return ""
