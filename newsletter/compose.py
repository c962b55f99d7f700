"""An edition: the window's digests merged into ranked, categorized stories.

Mentions become stories in `newsletter.stories` (links, hubs, near-duplicate headlines)
and find their categories in `newsletter.routing`; here they are ranked (digests that
covered them, then sources, then recency; standing items last) and planned per variant.

A *variant* is what one set of categories sees; every subscriber who chose the same set
gets the same variant, so each variant is rendered (and its CSS inlined) once.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from newsletter.config import Settings
from newsletter.content import Digest, LoadResult, load_digests
from newsletter.intro import find_intro
from newsletter.items import Item, web_url
from newsletter.routing import Router
from newsletter.stories import Mention, cluster
from newsletter.urls import DEFAULT_TRACKING, UrlRules, normalize_url
from newsletter.window import Window

TOP_STORIES = 5
UNCATEGORIZED_CHOICES = ("all", "more")  # or a category name


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
    categories: frozenset[str]  # empty: no category signal (see Edition.uncategorized)
    also: tuple[tuple[str, str], ...] = ()  # (source, url): the same story elsewhere
    standing: bool = False  # in most digests of the window: a standing item, not news

    @property
    def reach(self) -> tuple[int, int]:
        """How widely it was covered: distinct digests, then distinct sources and links."""
        return len(self.coverage), len(self.sources) + len(self.also)


@dataclass(frozen=True)
class Section:
    key: str  # a category name, "top" or "more"
    label: str
    stories: tuple[Story, ...]
    more: int = 0  # stories of this section left out by max_per_section


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
    stories: tuple[Story, ...]  # ranked: news before standing items, reach, then recency
    digests: tuple[DigestLink, ...]
    labels: dict[str, str] = field(default_factory=dict)  # category name -> label
    order: tuple[str, ...] = ()  # configured category order
    uncategorized: str = "more"  # "all", "more" or a category name
    max_per_section: int = 0  # 0: no cap
    intro: str = ""  # the editor's note (Markdown), shown above the stories

    def sees_uncategorized(self, chosen: frozenset[str]) -> bool:
        """Stories without a category signal go to every reader ("all"), or only to readers
        of every category ("more"); never silently to every chosen set."""
        return self.uncategorized == "all" or not chosen or set(self.order) <= chosen

    def plan(self, categories: Iterable[str] = ()) -> VariantPlan:
        """Top stories first, then one section per chosen category; each story once."""
        chosen = frozenset(categories)
        every = self.sees_uncategorized(chosen)
        visible = [s for s in self.stories
                   if (s.categories and (not chosen or s.categories & chosen))
                   or (not s.categories and every)]
        top = [s for s in visible if len(s.coverage) >= 2 and not s.standing][:TOP_STORIES]
        shown = {s.key for s in top}
        sections = [Section("top", "", tuple(top))] if top else []
        dropped = 0
        for name in self.order:
            if chosen and name not in chosen:
                continue
            members = [s for s in visible if s.key not in shown and name in s.categories]
            shown.update(s.key for s in members)
            cut = len(members) - self.max_per_section if self.max_per_section else 0
            if cut > 0:
                members, dropped = members[:self.max_per_section], dropped + cut
            if members:
                sections.append(Section(name, self.labels.get(name, name), tuple(members),
                                        more=max(cut, 0)))
        rest = [s for s in visible if s.key not in shown]
        if rest:
            sections.append(Section("more", "", tuple(rest)))
        return VariantPlan(chosen, tuple(sections), dropped)


def compose(digests: Sequence[Digest], settings: Settings, window: Window,
            number: int = 1, intro: str = "") -> Edition:
    """The window's digests as ranked stories: mentions clustered into stories, routed to
    categories, standing items recognized."""
    return _Composer(digests, settings).edition(window, number, intro)


@dataclass(frozen=True)
class ExplainedStory:
    story: Story
    mentions: list[tuple[str, str | None, str]]  # (headline, url, digest title)
    reasons: list[str]


def explain(digests: Sequence[Digest], settings: Settings) -> list[ExplainedStory]:
    """Every story with the mentions merged into it and why (for `digests --stories`)."""
    return _Composer(digests, settings).explained()


class _Composer:
    def __init__(self, digests: Sequence[Digest], settings: Settings) -> None:
        self.settings = settings
        self.links = [DigestLink(d.title, d.url, d.date) for d in digests]
        self.mentions: list[tuple[Item, int]] = [
            (item, n) for n, d in enumerate(digests) for item in (d.items or (_post_as_item(d),))]
        rules = UrlRules.build(settings.stories.host_aliases,
                               settings.stories.tracking or DEFAULT_TRACKING)
        self.clustering = cluster(
            [Mention(i.headline, web_url(i.url), n, i.summary_text) for i, n in self.mentions],
            rules, settings.stories.similarity)
        router = Router(settings.categories)
        self.routes = [router.route(i.headline, i.summary_text, i.section, digests[n].categories)
                       for i, n in self.mentions]
        self.rules = rules

    def stories(self) -> list[tuple[Story, list[int]]]:
        built: list[tuple[Story, list[int]]] = []
        keys: set[str] = set()
        standing_at = max(4, len(self.links) * 3 // 5 + 1)
        for group in self.clustering.groups:
            story = self.story(group, standing_at)
            key, n = story.key, 1
            while key in keys:  # two stories with one headline and no link of their own
                n += 1
                key = f"{story.key}#{n}"
            keys.add(key)
            built.append((replace(story, key=key), group))
        built.sort(key=lambda sg: (sg[0].standing, -sg[0].reach[0], -sg[0].reach[1],
                                   -sg[0].date.timestamp(), sg[0].headline))
        return built

    def story(self, group: list[int], standing_at: int) -> Story:
        members = sorted(group, key=lambda m: (self.links[self.mentions[m][1]].date, m))
        # the earliest mention that tells the story heads it, not a bare line of its points
        told = [m for m in members
                if self.mentions[m][0].url or self.mentions[m][0].summary_text.strip()]
        first = self.mentions[(told or members)[0]][0]
        fullest = max((self.mentions[m][0] for m in members), key=lambda i: len(i.summary_md))
        pages: dict[str, tuple[str, str]] = {}  # normalized -> (source or host, url)
        for m in members:
            item = self.mentions[m][0]
            url = web_url(item.url)
            page = normalize_url(url, self.rules) if url else None
            if url and page and page not in self.clustering.hubs and page not in pages:
                pages[page] = (item.source or urlsplit(url).hostname or url, url)
        url = next(iter(pages.values()))[1] if pages else web_url(first.url)
        sources = list(dict.fromkeys(" ".join((self.mentions[m][0].source or "").split())
                                     for m in members))
        coverage = sorted({self.links[self.mentions[m][1]] for m in members},
                          key=lambda d: d.date)
        cats = frozenset().union(*(self.routes[m] for m in members))
        fallback = self.settings.stories.uncategorized
        if not cats and fallback not in UNCATEGORIZED_CHOICES:
            cats = frozenset({fallback})
        key = "u:" + next(iter(pages)) if pages else "h:" + normalize_headline(first.headline)
        return Story(
            key=key, headline=" ".join(first.headline.split()), url=url,
            sources=tuple(s for s in sources if s), summary_md=fullest.summary_md,
            summary_text=fullest.summary_text, date=coverage[0].date,
            coverage=tuple(coverage), categories=cats,
            also=tuple(v for v in list(pages.values())[1:]),
            standing=len(coverage) >= standing_at)

    def edition(self, window: Window, number: int, intro: str = "") -> Edition:
        s = self.settings
        fallback = s.stories.uncategorized
        return Edition(
            window=window, number=number, stories=tuple(st for st, _ in self.stories()),
            digests=tuple(self.links), labels={c.name: c.label for c in s.categories},
            order=s.category_names,
            uncategorized=fallback if fallback in UNCATEGORIZED_CHOICES else "more",
            max_per_section=s.stories.max_per_section, intro=intro)

    def explained(self) -> list[ExplainedStory]:
        reasons: dict[int, list[str]] = {}
        for merge in self.clustering.merges:
            reasons.setdefault(merge.a, []).append(merge.reason)
        out = []
        for story, group in self.stories():
            mentions = [(self.mentions[m][0].headline, self.mentions[m][0].url,
                         self.links[self.mentions[m][1]].title) for m in group]
            why = [r for m in group for r in reasons.get(m, [])]
            out.append(ExplainedStory(story, mentions, list(dict.fromkeys(why))))
        return out


def _post_as_item(digest: Digest) -> Item:
    """A post without recognizable items is still linked, as one story."""
    return Item(headline=digest.title, url=digest.url, source=None,
                summary_md=digest.excerpt, summary_text=digest.excerpt)


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
        "uncategorized": edition.uncategorized, "max_per_section": edition.max_per_section,
        "intro": edition.intro,
        "digests": [link(d) for d in edition.digests],
        "stories": [{**{k: getattr(s, k) for k in ("key", "headline", "url", "summary_md",
                                                     "summary_text")},
                     "sources": list(s.sources), "date": s.date.isoformat(),
                     "coverage": [link(d) for d in s.coverage],
                     "categories": sorted(s.categories), "also": [list(a) for a in s.also],
                     "standing": s.standing}
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
        categories=frozenset(s["categories"] or ()),
        also=tuple((a, b) for a, b in s.get("also", [])), standing=s.get("standing", False))
        for s in data["stories"])
    start, end = (datetime.fromisoformat(x) for x in data["window"])
    return Edition(window=Window(start, end), number=data["number"], stories=stories,
                   digests=tuple(link(d) for d in data["digests"]), labels=data["labels"],
                   order=tuple(data["order"]), uncategorized=data.get("uncategorized", "all"),
                   max_per_section=data.get("max_per_section", 0), intro=data.get("intro", ""))
