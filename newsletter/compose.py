"""An edition: the window's digests deduplicated into ranked, categorized stories.

A *variant* is what one set of categories sees; every subscriber who chose the same set
gets the same variant, so each variant is rendered (and its CSS inlined) once.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from newsletter.config import Settings
from newsletter.content import Digest, LoadResult, load_digests
from newsletter.intro import find_intro
from newsletter.items import Item, web_url
from newsletter.window import Window

TOP_STORIES = 5
_TRACKING = re.compile(r"^(utm_\w+|ref|ref_src|ref_url|fbclid|gclid|dclid|mc_cid|mc_eid|spm|"
                       r"igshid|si|_hsenc|_hsmi|mkt_tok|cmpid|yclid)$", re.IGNORECASE)
_HOST_ALIASES = {"twitter.com": "x.com", "mobile.twitter.com": "x.com", "m.x.com": "x.com"}


def normalize_url(url: str) -> str:
    """One spelling per page: scheme, host case, www., twitter=x, tracking, slash, fragment."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
    except ValueError:
        return url.strip()
    host = host.removeprefix("www.")
    host = _HOST_ALIASES.get(host, host)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if not _TRACKING.match(k) and not (host == "x.com" and k in ("s", "t"))]
    path = parts.path.rstrip("/") or ""
    if host == "x.com":
        path = path.lower()  # x.com user names are case-insensitive
    return urlunsplit(("", host, path, urlencode(sorted(query)), ""))


def normalize_headline(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).casefold()
                   if unicodedata.category(ch)[0] in "LN")


@dataclass(frozen=True)
class DigestLink:
    title: str
    url: str
    date: datetime


@dataclass(frozen=True)
class Story:
    key: str
    headline: str
    url: str | None
    sources: tuple[str, ...]
    summary_md: str
    summary_text: str
    date: datetime  # the earliest mention
    coverage: tuple[DigestLink, ...]  # every digest that mentioned it
    categories: frozenset[str] | None  # None: belongs to every category set

    def in_variant(self, chosen: frozenset[str]) -> bool:
        return not chosen or self.categories is None or bool(self.categories & chosen)


@dataclass(frozen=True)
class Section:
    key: str  # a category name, "top" or "more"
    label: str
    stories: tuple[Story, ...]


@dataclass(frozen=True)
class VariantPlan:
    """What one category set sees, in order; `dropped` stories only counted."""

    categories: frozenset[str]
    sections: tuple[Section, ...]
    dropped: int = 0

    @property
    def key(self) -> str:
        return variant_key(self.categories)

    @property
    def stories(self) -> list[Story]:
        return [s for section in self.sections for s in section.stories]

    def keep(self, keys: set[str]) -> VariantPlan:
        sections = tuple(replace(sec, stories=tuple(s for s in sec.stories if s.key in keys))
                         for sec in self.sections)
        kept = tuple(sec for sec in sections if sec.stories)
        dropped = len(self.stories) - sum(len(s.stories) for s in kept) + self.dropped
        return replace(self, sections=kept, dropped=dropped)


def variant_key(categories: Iterable[str]) -> str:
    names = sorted(categories)
    return "+".join(names) if names else "all"


def variant_categories(key: str) -> tuple[str, ...]:
    """The inverse of `variant_key`."""
    return () if key == "all" else tuple(key.split("+"))


@dataclass(frozen=True)
class Edition:
    window: Window
    number: int
    stories: tuple[Story, ...]  # ranked: coverage, then recency
    digests: tuple[DigestLink, ...]
    labels: dict[str, str] = field(default_factory=dict)  # category name -> label
    order: tuple[str, ...] = ()  # configured category order
    intro: str = ""  # the editor's note (Markdown), shown above the stories

    def plan(self, categories: Iterable[str] = ()) -> VariantPlan:
        """Top stories first, then one section per chosen category; each story once."""
        chosen = frozenset(categories)
        visible = [s for s in self.stories if s.in_variant(chosen)]
        top = [s for s in visible if len(s.coverage) >= 2][:TOP_STORIES]
        shown = {s.key for s in top}
        sections = [Section("top", "", tuple(top))] if top else []
        for name in self.order:
            if chosen and name not in chosen:
                continue
            members = [s for s in visible if s.key not in shown and s.categories is not None
                       and name in s.categories]
            shown.update(s.key for s in members)
            if members:
                sections.append(Section(name, self.labels.get(name, name), tuple(members)))
        rest = [s for s in visible if s.key not in shown]
        if rest:
            sections.append(Section("more", "", tuple(rest)))
        return VariantPlan(chosen, tuple(sections))


def compose(digests: Sequence[Digest], settings: Settings, window: Window,
            number: int = 1, intro: str = "") -> Edition:
    builders: dict[str, _StoryBuilder] = {}
    links = [DigestLink(d.title, d.url, d.date) for d in digests]
    for digest, link in zip(digests, links, strict=True):
        for item in digest.items or (_post_as_item(digest),):
            key = _story_key(item)
            cats = item_categories(item, digest, settings)
            if key in builders:
                builders[key].add(item, link, cats)
            else:
                builders[key] = _StoryBuilder(key, item, link, cats)
    stories = sorted((b.build() for b in builders.values()),
                     key=lambda s: (-len(s.coverage), -s.date.timestamp(), s.headline))
    return Edition(
        window=window, number=number, stories=tuple(stories),
        digests=tuple(links),
        labels={c.name: c.label for c in settings.categories}, order=settings.category_names,
        intro=intro)


def item_categories(item: Item, digest: Digest, settings: Settings) -> frozenset[str] | None:
    """Keyword matches among the digest's configured categories; else all of them."""
    declared = [c for c in settings.categories if c.name in digest.categories]
    candidates = declared or list(settings.categories)
    haystack = f"{item.headline}\n{item.summary_text}".casefold()
    matched = frozenset(c.name for c in candidates
                        if any(k.casefold() in haystack for k in c.keywords if k))
    if matched:
        return matched
    return frozenset(c.name for c in declared) if declared else None


def _story_key(item: Item) -> str:
    if item.url:
        return "u:" + normalize_url(item.url)
    return "h:" + normalize_headline(item.headline)


def _post_as_item(digest: Digest) -> Item:
    """A post without recognizable items is still linked, as one story."""
    return Item(headline=digest.title, url=digest.url, source=None,
                summary_md=digest.excerpt, summary_text=digest.excerpt)


class _StoryBuilder:
    """Merges the mentions of one story: earliest headline, fullest summary, all sources."""

    def __init__(self, key: str, item: Item, link: DigestLink,
                 cats: frozenset[str] | None) -> None:
        self.key, self.first, self.fullest, self.date = key, item, item, link.date
        self.links = [link]
        self.sources: list[str] = []
        self.cats = cats
        self._add_source(item.source)

    def _add_source(self, source: str | None) -> None:
        source = " ".join((source or "").split())
        if source and source not in self.sources:
            self.sources.append(source)

    def add(self, item: Item, link: DigestLink, cats: frozenset[str] | None) -> None:
        if link.date < self.date:
            self.date, self.first = link.date, item
        if len(item.summary_md) > len(self.fullest.summary_md):
            self.fullest = item
        if link not in self.links:
            self.links.append(link)
        self._add_source(item.source)
        self.cats = None if cats is None or self.cats is None else self.cats | cats

    def build(self) -> Story:
        return Story(key=self.key, headline=" ".join(self.first.headline.split()),
                     url=web_url(self.first.url),
                     sources=tuple(self.sources), summary_md=self.fullest.summary_md,
                     summary_text=self.fullest.summary_text, date=self.date,
                     coverage=tuple(sorted(self.links, key=lambda d: d.date)),
                     categories=self.cats)


def compose_window(settings: Settings, window: Window, number: int = 1,
                   intro_file: Path | None = None) -> tuple[Edition, LoadResult]:
    """Load the window's digests and compose them; problems are returned, not raised.
    The editor's note comes from `intro_file` or from `editions/` next to the content."""
    result = load_digests(settings, window)
    intro = find_intro(settings, window, intro_file)
    return compose(result.digests, settings, window, number, intro), result


def edition_to_json(edition: Edition) -> str:
    """The composed edition, kept in the snapshot so a resumed send can render new variants."""
    def link(d: DigestLink) -> dict[str, str]:
        return {"title": d.title, "url": d.url, "date": d.date.isoformat()}

    return json.dumps({
        "window": [edition.window.start.isoformat(), edition.window.end.isoformat()],
        "number": edition.number, "labels": edition.labels, "order": list(edition.order),
        "intro": edition.intro,
        "digests": [link(d) for d in edition.digests],
        "stories": [{**{k: getattr(s, k) for k in ("key", "headline", "url", "summary_md",
                                                     "summary_text")},
                     "sources": list(s.sources), "date": s.date.isoformat(),
                     "coverage": [link(d) for d in s.coverage],
                     "categories": None if s.categories is None else sorted(s.categories)}
                    for s in edition.stories],
    }, ensure_ascii=False)


def edition_from_json(text: str) -> Edition:
    data = json.loads(text)

    def link(d: dict[str, str]) -> DigestLink:
        return DigestLink(d["title"], d["url"], datetime.fromisoformat(d["date"]))

    stories = tuple(Story(
        key=s["key"], headline=s["headline"], url=s["url"], sources=tuple(s["sources"]),
        summary_md=s["summary_md"], summary_text=s["summary_text"],
        date=datetime.fromisoformat(s["date"]), coverage=tuple(link(d) for d in s["coverage"]),
        categories=None if s["categories"] is None else frozenset(s["categories"]))
        for s in data["stories"])
    start, end = (datetime.fromisoformat(x) for x in data["window"])
    return Edition(window=Window(start, end), number=data["number"], stories=stories,
                   digests=tuple(link(d) for d in data["digests"]), labels=data["labels"],
                   order=tuple(data["order"]), intro=data.get("intro", ""))
