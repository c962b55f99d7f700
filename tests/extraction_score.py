"""Scoring extracted items against the hand-labelled posts in tests/fixtures/labelled/.

Matching is one-to-one: pairs with the same normalized URL and similar headlines first,
then the same URL, then similar headlines alone (see POLICY.md there).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from rapidfuzz import fuzz

LABELLED = Path(__file__).resolve().parent / "fixtures" / "labelled"


@dataclass
class Score:
    labelled: int = 0
    extracted: int = 0
    matched: int = 0

    @property
    def precision(self) -> float:
        return self.matched / self.extracted if self.extracted else 1.0

    @property
    def recall(self) -> float:
        return self.matched / self.labelled if self.labelled else 1.0

    def add(self, other: Score) -> None:
        self.labelled += other.labelled
        self.extracted += other.extracted
        self.matched += other.matched


def labelled_posts() -> list[tuple[str, Path, list[dict[str, str | None]]]]:
    """(source folder, post, labelled items) for every post with a label file."""
    found = []
    for label in sorted(LABELLED.glob("*/*.json")):
        post = label.with_suffix(".md")
        if post.exists():
            items = json.loads(label.read_text(encoding="utf-8"))["items"]
            found.append((label.parent.name, post, items))
    return found


def normalize_url(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url.strip())
    host = parts.netloc.lower().removeprefix("www.")
    return f"{host}{parts.path.rstrip('/')}?{parts.query}"


def headline_similarity(a: str, b: str) -> float:
    a, b = (re.sub(r"[\W_]+", "", s.casefold()) for s in (a, b))
    if not a or not b:
        return 0.0
    best = fuzz.ratio(a, b) / 100
    if min(len(a), len(b)) >= 6:
        best = max(best, fuzz.partial_ratio(a, b) / 100 * 0.95)
    return best


def match(extracted: list[tuple[str, str | None]], labelled: list[tuple[str, str | None]]
          ) -> dict[int, int]:
    """Extracted (headline, url) pairs matched one to one to labelled ones: {i: j}."""
    pairs: list[tuple[float, int, int]] = []
    for i, (head, url) in enumerate(extracted):
        for j, (l_head, l_url) in enumerate(labelled):
            same_url = url is not None and normalize_url(url) == normalize_url(l_url)
            sim = headline_similarity(head, l_head)
            if same_url:
                pairs.append((1 + sim, i, j))
            elif sim >= 0.6:
                pairs.append((sim, i, j))
    pairs.sort(reverse=True)
    matched: dict[int, int] = {}
    for _, i, j in pairs:
        if i not in matched and j not in matched.values():
            matched[i] = j
    return matched


def score_post(extracted: list[tuple[str, str | None]],
               labelled: list[dict[str, str | None]]) -> Score:
    gold = [(str(x["headline"]), x["url"]) for x in labelled]
    return Score(len(gold), len(extracted), len(match(extracted, gold)))
