"""Digests whose body is raw HTML (`<div>`, `<h2>`, `<p>`, `<a>`): the same structure, as
Markdown, so one extractor reads both. Only structure is kept: headings, paragraphs, list
items, links and bold; scripts, styles and images are dropped."""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCKS = {"p", "div", "section", "article", "ul", "ol", "table", "tr", "blockquote",
           "header", "footer", "main", "aside", "figure"}
_SKIP = {"script", "style", "noscript", "template", "svg"}


class _ToMarkdown(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[str] = []
        self.href: list[str | None] = []
        self.skipping = 0

    def inline_context(self) -> bool:
        return any(t in ("p", "li", "h1", "h2", "h3", "h4", "h5", "h6") for t in self.open)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skipping += 1
        if tag in ("br", "img", "hr", "meta", "link", "input"):
            self.out.append("\n\n---\n\n" if tag == "hr" else "\n" if tag == "br" else "")
            return
        if re.fullmatch(r"h[1-6]", tag):
            self.out.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in _BLOCKS:
            self.out.append("\n\n")
        elif tag in ("strong", "b"):
            self.out.append("**")
        elif tag == "a":
            href = dict(attrs).get("href")
            if not self.inline_context():
                self.out.append("\n- ")
            self.out.append("[" if href else "")
            self.href.append(href)
        elif tag == "span":
            self.out.append(" ")
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skipping = max(0, self.skipping - 1)
        if tag not in self.open:
            return
        while self.open and self.open.pop() != tag:
            pass
        if re.fullmatch(r"h[1-6]", tag) or tag in _BLOCKS:
            self.out.append("\n\n")
        elif tag in ("strong", "b"):
            self.out.append("**")
        elif tag == "a" and self.href:
            href = self.href.pop()
            self.out.append(f"]({href.replace(')', '%29').replace(' ', '%20')})" if href else "")
            if not self.inline_context():
                self.out.append("\n")
        elif tag == "li":
            self.out.append("\n")
        elif tag == "span":
            self.out.append(" ")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.out.append(re.sub(r"\s+", " ", data.replace("[", "［").replace("]", "］")))


def html_to_markdown(html: str) -> str:
    parser = _ToMarkdown()
    parser.feed(html)
    parser.close()
    text = "".join(parser.out)
    lines = [line.strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
