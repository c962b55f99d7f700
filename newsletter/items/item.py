"""One item of a digest: a story as the digest tells it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    headline: str
    url: str | None
    source: str | None
    summary_md: str
    summary_text: str
    section: str | None = None  # the digest's own heading the item sits under
    tags: tuple[str, ...] = ()
    links: tuple[str, ...] = ()  # further links of the item ("links mentioned", sources)
    shape: str = "link-led"
