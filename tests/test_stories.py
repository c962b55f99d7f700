"""Stories: link identity, hubs, near-duplicate headlines, routing and ranking, scored
against hand-labelled weeks in tests/fixtures/stories/ (see POLICY.md there)."""

from __future__ import annotations

import json
import tomllib
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from newsletter.compose import compose
from newsletter.config import Settings, _categories
from newsletter.content import Digest, category_aliases, map_categories
from newsletter.items import Item
from newsletter.render import Renderer
from newsletter.routing import Router
from newsletter.stories import Mention, cluster
from newsletter.urls import normalize_url
from newsletter.window import resolve_window
from tests.story_score import STORIES, labelled_pairs, load_mentions, pairs, pairwise, weeks

ROOT = Path(__file__).resolve().parent.parent
TZ = ZoneInfo("Asia/Shanghai")
WINDOW = resolve_window(tz=TZ, week="2025-W51")

# Pairwise recall the issue asks for is 0.80, over all weeks together (0.803: 572 marked
# pairs found, 570 needed, so a change that loses three fails here). The gaarry
# week is a link-less trending digest whose topics are named in several languages and in
# paraphrases ("LDP Secures Record Supermajority" / "高市早苗领导的自民党…" / "日本政治受关注"):
# what strings, summaries and hashtags join there is 0.77, so its floor is 0.75.
RECALL = {"hextra-2025-W49": 0.80, "julynotebook-2026-W09": 0.80, "gaarry-2026-W07": 0.75}


@pytest.mark.parametrize("week", [w.name for w in weeks()])
def test_clustering_against_hand_labelled_pairs(week: str) -> None:
    raw, mentions = load_mentions(STORIES / week)
    found = pairs(cluster(mentions).groups)
    gold = labelled_pairs(STORIES / week)
    precision, recall = pairwise(found, gold)
    assert precision >= 0.9 and recall >= RECALL[week], (precision, recall)
    # different stories sharing a link are never merged for it
    same_link = {(a, b) for a, b in found - gold if raw[a]["url"] and raw[a]["url"] ==
                 raw[b]["url"]}
    assert not same_link


def test_clustering_over_all_weeks() -> None:
    found_all = gold_all = hits = 0
    for week in weeks():
        _, mentions = load_mentions(week)
        found, gold = pairs(cluster(mentions).groups), labelled_pairs(week)
        found_all, gold_all, hits = found_all + len(found), gold_all + len(gold), \
            hits + len(found & gold)
    assert len(weeks()) >= 3
    assert hits / found_all >= 0.95 and hits / gold_all >= 0.80


def _routing(week: Path) -> tuple[Router, dict[str, dict[str, object]], dict[str, list[str]],
                                  dict[str, str]]:
    labels = json.loads((week / "categories.json").read_text(encoding="utf-8"))
    config = ROOT / labels["config"]
    cats = _categories(tomllib.loads(config.read_text(encoding="utf-8"))["categories"],
                       str(config))
    aliases = category_aliases(Settings(root=ROOT, categories=cats))
    mentions = {str(m["id"]): m for m in json.loads((week / "mentions.json").read_text(
        encoding="utf-8"))}
    return Router(cats), mentions, labels["labels"], aliases


def test_category_routing_accuracy() -> None:
    decisions = right = 0
    for week in weeks():
        router, mentions, labels, aliases = _routing(week)
        for key, expected in labels.items():
            m = mentions[key]
            got = router.route(str(m["headline"]), str(m["summary"]), m["section"],  # type: ignore[arg-type]
                               map_categories(m["digest_categories"], aliases))
            for name in router.names:
                decisions += 1
                right += (name in got) == (name in expected)
    assert decisions >= 150 * 3
    assert right / decisions >= 0.85  # per (story, category) decision


def item(headline: str, url: str | None = None, section: str | None = None,
         summary: str = "") -> Item:
    return Item(headline=headline, url=url, source=None, summary_md=summary,
                summary_text=summary, section=section)


def digest(day: int, items: list[Item], categories: tuple[str, ...] = ()) -> Digest:
    return Digest(path=Path(f"{day}.md"), title=f"D{day}",
                  date=datetime(2025, 12, day, 8, tzinfo=TZ), categories=categories,
                  url=f"https://site.example/posts/{day}/", items=tuple(items))


def test_single_category_readers_see_only_stories_with_that_signal(settings: Settings) -> None:
    edition = compose([digest(15, [item("机器人 learns", "https://a/1"), item("x", "https://a/2"),
                                   item("Figure out your taxes", "https://a/3")]),
                       digest(16, [item("新模型", "https://a/4")])], settings, WINDOW)
    for name in settings.category_names:
        for story in edition.plan([name]).stories:
            assert name in story.categories
    assert "https://a/2" in {s.url for s in edition.plan().stories}  # all-category readers


@pytest.mark.parametrize(("text", "keyword", "hit"), [
    ("SAM 3 segments video", "SAM", True), ("Samsung ships a phone", "SAM", False),
    ("A new App for notes", "App", True), ("Apple ships a phone", "App", False),
    ("happy users everywhere", "App", False), ("新机器人发布", "机器人", True),
    ("model weights released", "model", True), ("remodelled kitchens", "model", False),
])
def test_keywords_match_whole_words_latin_and_substrings_cjk(text: str, keyword: str,
                                                             hit: bool) -> None:
    from newsletter.config import Category

    router = Router([Category("c", "C", keywords=(keyword,))])
    assert (router.route(text, "", None) == {"c"}) is hit


def test_section_heading_is_a_signal() -> None:
    from newsletter.config import Category

    router = Router([Category("robots", "机器人", aliases=("Robotics",)),
                     Category("products", "产品", aliases=("产品与功能更新",))])
    assert router.route("Something new", "", "### 机器人") == {"robots"}
    assert router.route("Something new", "", "AI产品与功能更新") == {"products"}
    assert router.route("Something new", "", "Robotics & more") == {"robots"}


@pytest.mark.parametrize(("a", "b", "same"), [
    ("https://e.com/p?ref=v1", "https://e.com/p?ref=v2", False),
    ("https://e.com:8080/p", "https://e.com/p", False),
    ("https://e.com/a%20b", "https://e.com/a b", True),
    ("https://e.com/%E4%B8%AD", "https://e.com/中", True),
    ("https://youtu.be/abc123", "https://www.youtube.com/watch?v=abc123&feature=share", True),
    ("https://mobile.x.com/User/status/1", "https://twitter.com/user/status/1?s=20", True),
    ("https://app.e.com/#/item/1", "https://app.e.com/#/item/2", False),
    ("https://e.com/p#comments", "https://e.com/p", True),
    ("https://e.com/p?utm_source=x&id=3", "https://e.com/p?id=3", True),
])
def test_url_identity(a: str, b: str, same: bool) -> None:
    assert (normalize_url(a) == normalize_url(b)) is same


def test_a_hub_link_does_not_glue_stories(settings: Settings) -> None:
    hub = "https://news.example/list/123"
    edition = compose([
        digest(15, [item("中国电信开源千亿MoE大模型", hub), item("高德打车上线AI服务卫士", hub)]),
        digest(16, [item("Plaud推出AI录音笔NotePin S", "https://news.example/")]),
        digest(17, [item("Plaud 推出 AI 录音笔 NotePin S", "https://techcrunch.com/")]),
    ], settings, WINDOW)
    headlines = sorted(s.headline for s in edition.stories)
    assert len(headlines) == 3 and "高德打车上线AI服务卫士" in headlines


def test_near_duplicates_merge_across_links_but_not_across_numbers(settings: Settings) -> None:
    edition = compose([
        digest(15, [item("OpenAI releases GPT-5 with better reasoning", "https://openai.example/a")]),
        digest(16, [item("OpenAI releases GPT-5, with better reasoning", "https://verge.example/b")]),
        digest(17, [item("OpenAI releases GPT-4 with better reasoning", "https://verge.example/c")]),
    ], settings, WINDOW)
    first = edition.stories[0]
    assert len(first.coverage) == 2 and first.also == (("verge.example",
                                                        "https://verge.example/b"),)
    assert len(edition.stories) == 2


@pytest.mark.parametrize(("headlines", "groups"), [
    (["7. 日本选举：联盟赢得超级多数", "5. 日本选举：联盟赢得超级多数"], [[0, 1]]),
    (["バレンタイン（情人节）", "情人节话题持续热度", "白色情人节", "情人节巧克力", "巧克力"],
     [[0, 1, 3], [2], [4]]),
    (["Massie", "Thomas Massie", "Thomas Massie 发言"], [[0, 1, 2]]),
    (["Orca", "Orca ships a planner", "Orca raises $2B in funding"], [[0], [1], [2]]),
    (["InterJuve", "Valverde", "足球：InterJuve、Valverde"], [[0], [1], [2]]),
    # a glossed name joins the story naming it, though its own headlines name it too
    (["ギャバン（Gavan）", "ギャバン（Gavan）", "日本特摄剧 Gavan"], [[0, 1, 2]]),
    # words of other scripts count: two Arabic hashtags under one region are two stories
    (["中东地区：#سداد_قروض", "中东地区：#عتق_رقبه"], [[0], [1]]),
])
def test_numbering_glosses_openings_and_short_names(headlines: list[str],
                                                    groups: list[list[int]]) -> None:
    mentions = [Mention(h, None, n) for n, h in enumerate(headlines)]
    assert cluster(mentions).groups == groups


@pytest.mark.parametrize(("told", "groups"), [
    # a headline in another script, its summary opening with the digest's translation
    ([("バレンタイン（情人节）", ""), ("Valentine's Day", "情人节持续18小时"),
      ("Super Bowl LX", "超级碗比赛")], [[0, 1], [2]]),
    # a translation that fits several stories describes, it does not name
    ([("Kalulu", "足球运动员"), ("Lali 足球运动员", ""), ("Guede 足球运动员", "")],
     [[0], [1], [2]]),
    # nor does a two-character name opening it: "泰国" opens any Thai thing
    ([("泰国", ""), ("KENG WITH FERRARI", "泰国明星"), ("DUANG WITH YOU", "泰国综艺")],
     [[0], [1], [2]]),
    # a story's points given as bare lines, found in another digest's summary
    ([("J-PAL启动AI扶贫计划", "连接政府、科技公司和非营利组织，评估和改进AI解决方案"),
      ("连接政府、科技公司与非营利组织", ""), ("评估并改进AI解决方案", ""),
      ("连接开发者与开源社区", "")], [[0, 1, 2], [3]]),
    # an item with a summary of its own is a story, though another summary names it
    ([("孟加拉国新总理就职", "这是印度与孟加拉国关系的重要转折点"),
      ("印度与孟加拉国关系", "分析师探讨印度能否修复与孟加拉国的关系")], [[0], [1]]),
    # a hashtag names its trend wherever it is written, also run into CJK text
    ([("#LabourOut", "Calls for opposition"), ("英国工党面临大选呼声", "#LabourOut冲上热搜"),
      ("#GeneralElectionNow", "")], [[0, 1], [2]]),
    # several different headlines translating into one story: it is their topic
    ([("特朗普", ""), ("Tariffs on EU cars", "特朗普签署对欧盟汽车加征关税的行政令"),
      ("Crypto pardon", "特朗普赦免加密货币创始人"), ("Busan summit", "特朗普与习近平在釜山会晤")],
     [[0], [1], [2], [3]]),
    # a translation joins a headline it opens with, not one it holds further in
    ([("AI手机", ""), ("Galaxy S26 launch", "三星发布新款AI手机Galaxy S26"),
      ("Honor Magic 8", "荣耀推出AI手机Magic 8")], [[0], [1], [2]]),
    # issue and pull-request numbers, a link's fragment: no hashtags
    ([("vLLM merges PR #12345", ""), ("Transformers fixes bug #12345", ""),
      ("uv 0.9 released", "https://docs.example/uv/#installation"),
      ("#installation tips", "")], [[0], [1], [2], [3]]),
    # emoji and symbols are no words: two emoji-only headlines are not one headline
    ([("❤️", ""), ("⚠️", "")], [[0], [1]]),
])
def test_summaries_translations_points_and_hashtags(told: list[tuple[str, str]],
                                                    groups: list[list[int]]) -> None:
    mentions = [Mention(h, None, n, summary) for n, (h, summary) in enumerate(told)]
    assert cluster(mentions).groups == groups


def test_a_hashtag_that_different_stories_write_in_passing_names_none() -> None:
    mentions = [Mention("#OpenAI", None, 0, "话题热度"),
                Mention("Anthropic ships Claude 5", None, 1, "对标 #OpenAI 的新模型"),
                Mention("Microsoft renegotiates", None, 2, "与 #OpenAI 的合作协议重新谈判")]
    assert cluster(mentions).groups == [[0], [1], [2]]


def test_a_summary_cut_does_not_shorten_a_hashtag() -> None:
    long = "话" * 292 + " #LabourOut"  # the 300-character cut leaves "#Labour"
    mentions = [Mention("#Labour", None, 0), Mention("Rally", None, 1, long)]
    assert cluster(mentions).groups == [[0], [1]]


def test_a_bare_point_never_heads_its_story(settings: Settings) -> None:
    edition = compose([
        digest(15, [item("连接政府、科技公司与非营利组织", None)]),
        digest(16, [item("J-PAL启动AI扶贫计划", None,
                         summary="连接政府、科技公司和非营利组织，评估和改进AI解决方案")]),
    ], settings, WINDOW)
    assert [s.headline for s in edition.stories] == ["J-PAL启动AI扶贫计划"]


def test_a_hashtag_names_a_trend_only_from_a_headline_and_only_one() -> None:
    # #OpenAI heads no mention: written in summaries only, it names nothing
    mentions = [Mention("OpenAI ships a browser", None, 0, "#OpenAI 新产品"),
                Mention("Anthropic ships Claude 5", None, 1, "#OpenAI 的对手"),
                Mention("#Samsung launches a fridge with a screen", None, 2),
                Mention("#Samsung 股价下跌三成", None, 2),  # dissimilar: a hub, as a link would be
                Mention("Chips", None, 3, "#Samsung 芯片")]
    assert cluster(mentions).groups == [[0], [1], [2], [3], [4]]


def test_standing_items_never_top(settings: Settings) -> None:
    days = range(15, 21)
    edition = compose([digest(d, [item("本周赞助：某某课程", "https://sponsor.example/c"),
                                  item(f"新闻 {d}", f"https://n.example/{d}")]
                              + ([item("Big story twice", "https://big.example/1")]
                                 if d in (15, 16) else [])) for d in days], settings, WINDOW)
    sponsor = next(s for s in edition.stories if "赞助" in s.headline)
    assert sponsor.standing and edition.stories[-1] is sponsor
    top = edition.plan().sections[0]
    assert top.key == "top" and [s.headline for s in top.stories] == ["Big story twice"]


def test_uncategorized_policy_and_section_caps(site: Path, settings: Settings) -> None:
    from newsletter.config import load_settings

    config = site / "newsletter.toml"
    items = [item(f"机器人 {n}", f"https://r/{n}") for n in range(5)] + [item("plain",
                                                                              "https://p/1")]
    assert "https://p/1" not in {s.url for s in compose([digest(15, items)], settings,
                                                        WINDOW).plan(["robots"]).stories}
    config.write_text(config.read_text().replace(
        'postal_address = "1 Test Road, Shanghai"',
        'postal_address = "1 Test Road, Shanghai"\nuncategorized = "all"\nmax_per_section = 2'))
    edition = compose([digest(15, items)], load_settings(config), WINDOW)
    plan = edition.plan(["robots"])
    robots = next(s for s in plan.sections if s.key == "robots")
    assert len(robots.stories) == 2 and robots.more == 3 and plan.dropped == 3
    assert "https://p/1" in {s.url for s in plan.stories}


def test_a_template_without_markers_stays_under_budget(site: Path, settings: Settings) -> None:
    email = site / "templates" / "email"
    email.mkdir(parents=True)
    (email / "email.html.j2").write_text(
        "<html><head><style>p { color: #333333; font-size: 15px; }</style></head><body>"
        "{% for section in sections %}{% for id, story in section.stories %}"
        "<h2>{{ story.headline }}</h2><p>{{ story.summary_md|markdown }}</p>"
        "{% endfor %}{% endfor %}<p>{{ dropped }} more</p>"
        "<a href='{{ slot.unsubscribe_url }}'>x</a></body></html>", encoding="utf-8")
    summary = "一段相当长的摘要，用来模拟真实的新闻条目。" * 8
    digests = [Digest(path=Path(f"{n}.md"), title=f"D{n}", date=WINDOW.start.replace(hour=n % 20),
                      categories=(), url=f"https://s/{n}",
                      items=tuple(Item(headline=f"新闻 {n} {k}", url=f"https://n/{n}/{k}",
                                       source=None, summary_md=summary, summary_text=summary)
                                  for k in range(20))) for n in range(20)]
    edition = compose(digests, settings, WINDOW)
    variant = Renderer(settings).render(edition, edition.plan())
    assert len(variant.html.encode()) <= settings.max_html_bytes
    assert len(edition.stories) == 400
    assert variant.stories > 50 and variant.dropped == 400 - variant.stories
    assert f"{variant.dropped} more" in variant.html
