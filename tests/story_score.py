"""Scoring story clustering against the hand-labelled weeks in tests/fixtures/stories/."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

from newsletter.stories import Mention

STORIES = Path(__file__).resolve().parent / "fixtures" / "stories"


def weeks() -> list[Path]:
    return sorted(p for p in STORIES.iterdir() if (p / "clusters.json").exists())


def load_mentions(week: Path) -> tuple[list[dict[str, object]], list[Mention]]:
    raw = json.loads((week / "mentions.json").read_text(encoding="utf-8"))
    digests = {d: n for n, d in enumerate(dict.fromkeys(str(m["digest"]) for m in raw))}
    return raw, [Mention(str(m["headline"]), m["url"] and str(m["url"]),  # type: ignore[arg-type]
                         digests[str(m["digest"])], str(m["summary"] or "")) for m in raw]


def pairs(groups: list[list[int]]) -> set[tuple[int, int]]:
    return {(a, b) for group in groups for a, b in combinations(sorted(group), 2)}


def labelled_pairs(week: Path) -> set[tuple[int, int]]:
    return pairs(json.loads((week / "clusters.json").read_text(encoding="utf-8"))["clusters"])


def pairwise(found: set[tuple[int, int]], gold: set[tuple[int, int]]) -> tuple[float, float]:
    hit = len(found & gold)
    return (hit / len(found) if found else 1.0, hit / len(gold) if gold else 1.0)
