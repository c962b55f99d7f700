"""Which categories a story belongs to, from the signals its mentions carry.

- The section heading an item sits under in its digest (`### 机器人`), mapped through the
  categories' names, labels and aliases: the digest author's own categorization.
- Keywords: Latin-script keywords match whole words (`SAM` is not in "Samsung", `App` is
  not in "Apple"), case-sensitively when the keyword has capitals; CJK keywords match as
  substrings. The headline counts; the summary only when nothing else gives a signal.
- A digest that declares exactly one configured category, when nothing else speaks.

A story with no signal is *uncategorized*; `[newsletter] uncategorized` says where it goes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from newsletter.config import Category

_LATIN = re.compile(r"[A-Za-z0-9]")


def _norm(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())


class Router:
    def __init__(self, categories: Sequence[Category]) -> None:
        self.names = tuple(c.name for c in categories)
        self.spellings: list[tuple[str, str]] = []  # (normalized spelling, category)
        self.keywords: list[tuple[re.Pattern[str], str]] = []
        for cat in categories:
            for spelling in (cat.name, cat.label, *cat.aliases):
                if _norm(spelling):
                    self.spellings.append((_norm(spelling), cat.name))
            for word in cat.keywords:
                if word.strip():
                    self.keywords.append((_keyword(word.strip()), cat.name))
        # longest spellings first, so "AI产品与功能更新" finds "产品与功能更新" before "产品"
        self.spellings.sort(key=lambda s: -len(s[0]))

    def section(self, heading: str | None) -> frozenset[str]:
        """The categories a digest's section heading names (exactly, or by containing a
        category's spelling of two characters or more)."""
        key = _norm(heading or "")
        if not key:
            return frozenset()
        exact = {name for spelling, name in self.spellings if spelling == key}
        if exact:
            return frozenset(exact)
        return frozenset({name for spelling, name in self.spellings
                          if len(spelling) >= 2 and spelling in key})

    def route(self, headline: str, summary: str, section: str | None,
              declared: Sequence[str] = ()) -> frozenset[str]:
        """The section heading and the headline's keywords; the summary's keywords only
        when those say nothing (a summary mentions much it is not about); then a digest's
        single declared category."""
        found = set(self.section(section)) | self.matches(headline)
        if not found:
            found = self.matches(summary)
        if not found:
            configured = [name for name in declared if name in self.names]
            if len(configured) == 1:
                found.add(configured[0])
        return frozenset(found)

    def matches(self, text: str) -> set[str]:
        return {name for pattern, name in self.keywords if pattern.search(text)}


def _keyword(word: str) -> re.Pattern[str]:
    escaped = re.escape(word)
    if not _LATIN.search(word):
        return re.compile(escaped)  # CJK: a substring
    flags = 0 if any(c.isupper() for c in word) else re.IGNORECASE
    return re.compile(rf"(?<![A-Za-z0-9]){escaped}(?![A-Za-z0-9])", flags)
