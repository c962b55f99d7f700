from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from newsletter.compose import compose, normalize_url
from newsletter.config import Settings
from newsletter.content import Digest
from newsletter.items import Item
from newsletter.window import resolve_window

TZ = ZoneInfo("Asia/Shanghai")
WINDOW = resolve_window(tz=TZ, week="2025-W51")


def item(headline: str, url: str | None = None, summary: str = "", source: str | None = None
         ) -> Item:
    return Item(headline=headline, url=url, source=source, summary_md=summary,
                summary_text=summary)


def digest(day: int, items: list[Item], categories: tuple[str, ...] = (), hour: int = 8,
           title: str = "") -> Digest:
    return Digest(path=Path(f"{day}-{hour}.md"), title=title or f"D{day}",
                  date=datetime(2025, 12, day, hour, tzinfo=TZ), categories=categories,
                  url=f"https://site.example/posts/{day}-{hour}/", items=tuple(items))


@pytest.mark.parametrize(("a", "b"), [
    ("https://x.com/a/status/1", "https://twitter.com/a/status/1"),
    ("https://X.com/A/status/1/", "https://x.com/a/status/1?s=20"),
    ("https://www.example.com/p?utm_source=x&id=3", "http://example.com/p/?id=3#frag"),
    ("https://example.com/p?b=2&a=1", "https://example.com/p?a=1&b=2&fbclid=zzz"),
])
def test_same_story_urls(a: str, b: str) -> None:
    assert normalize_url(a) == normalize_url(b)


def test_different_pages_stay_different() -> None:
    assert normalize_url("https://example.com/p?id=3") != normalize_url("https://example.com/p?id=4")
    assert normalize_url("https://example.com/A") != normalize_url("https://example.com/a")


def test_dedupe_keeps_earliest_date_every_digest_and_source(settings: Settings) -> None:
    first = digest(16, [item("Story", "https://x.com/a/status/1", "short", "S1")])
    second = digest(15, [item("Story (earlier)", "https://twitter.com/a/status/1/",
                              "the longer summary", "S2")])
    third = digest(17, [item("Story", "https://x.com/a/status/1?s=20", "", "S1")])
    edition = compose([first, second, third], settings, WINDOW)
    (story,) = edition.stories
    assert story.headline == "Story (earlier)"
    assert story.date == second.date
    assert [d.title for d in story.coverage] == ["D15", "D16", "D17"]
    assert story.sources == ("S2", "S1")  # in the order they told it
    assert story.summary_md == "the longer summary"


def test_dedupe_by_headline_without_url(settings: Settings) -> None:
    edition = compose([digest(15, [item("Hello, World!")]), digest(16, [item("hello world")])],
                      settings, WINDOW)
    assert len(edition.stories) == 1


def test_rank_by_coverage_then_recency_and_top_stories(settings: Settings) -> None:
    edition = compose([
        digest(15, [item("old", "https://a/1"), item("twice", "https://a/2")]),
        digest(17, [item("new", "https://a/3"), item("twice", "https://a/2")]),
    ], settings, WINDOW)
    assert [s.headline for s in edition.stories] == ["twice", "new", "old"]
    plan = edition.plan()
    assert plan.sections[0].key == "top"
    assert [s.headline for s in plan.sections[0].stories] == ["twice"]
    assert [s.headline for s in plan.stories].count("twice") == 1  # once per variant


def test_no_top_section_without_repeated_stories(settings: Settings) -> None:
    edition = compose([digest(15, [item("a", "https://a/1")])], settings, WINDOW)
    assert [s.key for s in edition.plan().sections] == ["more"]


def test_item_categories(settings: Settings) -> None:
    edition = compose([
        digest(15, [item("新模型 model", "https://a/1"), item("机器人 news", "https://a/2"),
                    item("nothing matches", "https://a/3")], categories=("models", "apps")),
        digest(16, [item("机器人 in a digest without categories", "https://a/4"),
                    item("plain", "https://a/5")], categories=("robots",)),
    ], settings, WINDOW)
    cats = {s.url: s.categories for s in edition.stories}
    assert cats["https://a/1"] == {"models"}
    assert cats["https://a/2"] == {"robots"}  # a keyword counts whatever the digest declares
    assert cats["https://a/3"] == set()  # two declared categories and no keyword: no signal
    assert cats["https://a/4"] == {"robots"}
    assert cats["https://a/5"] == {"robots"}  # the digest's only category is a signal


def test_variants_follow_config_order_and_skip_empty(settings: Settings) -> None:
    edition = compose([digest(15, [item("机器人", "https://a/1"), item("model", "https://a/2"),
                                   item("x", "https://a/3")], categories=("models", "robots"))],
                      settings, WINDOW)
    everything = edition.plan()
    assert [s.key for s in everything.sections] == ["models", "robots", "more"]
    robots = edition.plan(["robots"])
    assert {s.url for s in robots.stories} == {"https://a/1"}  # "x" has no robots signal
    assert edition.plan(["apps"]).stories == []
    every_category = edition.plan(["models", "robots", "apps"])
    assert "https://a/3" in {s.url for s in every_category.stories}


def test_post_without_items_becomes_a_story(settings: Settings) -> None:
    essay = Digest(path=Path("e.md"), title="An essay", date=WINDOW.start + timedelta(hours=1),
                   categories=(), url="https://site.example/posts/e/", excerpt="About things.")
    (story,) = compose([essay], settings, WINDOW).stories
    assert (story.headline, story.url, story.summary_text) == (
        "An essay", "https://site.example/posts/e/", "About things.")
