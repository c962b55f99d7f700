import os
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from newsletter.config import Settings
from newsletter.content import load_digests
from newsletter.items import extract_items
from newsletter.window import resolve_window
from tests.conftest import WritePost

TZ = ZoneInfo("Asia/Shanghai")


def only(settings: Settings) -> object:
    result = load_digests(settings)
    assert not result.problems, result.problems
    assert len(result.digests) == 1
    return result.digests[0]


# ---------------------------------------------------------------- dates

@pytest.mark.parametrize(("front", "name", "expected"), [
    ("date: 2025-12-20T16:00:09+08:00", "a.md", datetime(2025, 12, 20, 16, 0, 9, tzinfo=TZ)),
    ("date: 2025-12-20T08:00:09Z", "a.md", datetime(2025, 12, 20, 8, 0, 9, tzinfo=UTC)),
    ('date: "2025-12-20T08:00:09.250Z"', "a.md",
     datetime(2025, 12, 20, 8, 0, 9, 250000, tzinfo=UTC)),
    ("date: 2026-02-06 08:30:00", "a.md", datetime(2026, 2, 6, 8, 30, tzinfo=TZ)),  # naive
    ("date: 2026-01-31", "a.md", datetime(2026, 1, 31, tzinfo=TZ)),  # date only
    ("date: 2026-01-31\npublishDate: 2026-02-02T10:00:00+08:00", "a.md",
     datetime(2026, 2, 2, 10, tzinfo=TZ)),  # publishDate wins
    ("title: x", "2025-12-20.md", datetime(2025, 12, 20, tzinfo=TZ)),
    ("title: x", "2025-12-20-16.md", datetime(2025, 12, 20, 16, tzinfo=TZ)),
    ("title: x", "20250923T113237Z-post.md", datetime(2025, 9, 23, 11, 32, 37,
                                                      tzinfo=UTC)),
    ("title: x", "2026-02-07-hk-market.md", datetime(2026, 2, 7, tzinfo=TZ)),
    ("date: 2026-02-06 23:59:00", "2026-02-07-x.md", datetime(2026, 2, 6, 23, 59, tzinfo=TZ)),
])
def test_date_rules(settings: Settings, write_post: WritePost, front: str, name: str,
                    expected: datetime) -> None:
    write_post(name, f"---\n{front}\n---\nbody\n")
    assert only(settings).date == expected  # type: ignore[attr-defined]


def test_toml_and_json_front_matter(settings: Settings, write_post: WritePost) -> None:
    write_post("t.md", '+++\ntitle = "T"\ndate = 2025-12-16T10:00:00+08:00\n+++\nbody\n')
    write_post("j.md", '{\n"title": "J", "date": "2025-12-17"\n}\nbody\n')
    titles = {d.title: d.date.day for d in load_digests(settings).digests}
    assert titles == {"T": 16, "J": 17}


@pytest.mark.parametrize(("content", "reason"), [
    ("---\ntitle: x\n---\nno date anywhere\n", "no date: add 'date:'"),
    ("---\ndate: someday\n---\n", "date: cannot read 'someday' as a date"),
    ("---\ntitle: [unclosed\n---\n", "bad front matter at line"),
    ("---\n- a\n- b\n---\n", "front matter is not a mapping"),
    ("title: x\ndate: 2025-12-20\n---\nbody\n", "front matter lacks its opening '---'"),
    ("", "empty file"),
    ("   \n\n", "empty file"),
])
def test_bad_files_are_reported_and_skipped(settings: Settings, write_post: WritePost,
                                            content: str, reason: str) -> None:
    bad = write_post("bad.md", content)
    write_post("2025-12-20-good.md", "---\ntitle: good\n---\nbody\n")
    result = load_digests(settings)
    assert [d.title for d in result.digests] == ["good"]
    assert len(result.problems) == 1
    assert result.problems[0].path == bad
    assert reason in result.problems[0].reason


def test_binary_non_utf8_and_huge_files(settings: Settings, write_post: WritePost) -> None:
    write_post("bin.md", b"\x89PNG\r\n\x1a\n\x00\x00")
    write_post("latin.md", "---\ntitle: café\ndate: 2025-12-20\n---\n".encode("latin-1"))
    write_post("huge.md", b"---\ndate: 2025-12-20\n---\n" + b"a" * (2 * 1024 * 1024 + 1))
    reasons = sorted(p.reason for p in load_digests(settings).problems)
    assert reasons[0].startswith("binary file")
    assert reasons[1].startswith("file is 2,097,178 bytes, over")
    assert reasons[2].startswith("not UTF-8 (byte")


def test_bom_crlf_drafts_and_other_files(settings: Settings, write_post: WritePost) -> None:
    write_post("crlf.md", "\ufeff---\r\ntitle: CRLF\r\ndate: 2025-12-20\r\n---\r\n"
               "1. [A - S](https://a.example)\r\n\r\n   summary\r\n".encode())
    write_post("draft.md", "---\ntitle: D\ndate: 2025-12-20\ndraft: true\n---\n")
    write_post("old.md.bak", "---\ntitle: B\ndate: 2025-12-20\n---\n")
    write_post(".hidden/x.md", "---\ntitle: H\ndate: 2025-12-20\n---\n")
    result = load_digests(settings)
    assert [d.title for d in result.digests] == ["CRLF"]
    assert result.drafts == 1
    item = result.digests[0].items[0]
    assert (item.headline, item.source, item.summary_text) == ("A", "S", "summary")


def test_categories_mapped_through_aliases(settings: Settings, write_post: WritePost) -> None:
    write_post("a.md", '---\ndate: 2025-12-20\ncategories: ["技术进展", "AI发展", "ai news",'
               ' "Other"]\n---\n')
    write_post("b.md", "---\ndate: 2025-12-21\ncategories: 机器人\n---\n")
    write_post("c.md", "---\ndate: 2025-12-22\n---\n")
    cats = [d.categories for d in load_digests(settings).digests]
    assert cats == [("models", "apps", "Other"), ("robots",), ()]


def test_post_url(settings: Settings, write_post: WritePost) -> None:
    write_post("2025-12-20-16.md", "---\ndate: 2025-12-20\n---\n")
    write_post("b.md", "---\ndate: 2025-12-21\nslug: my-post\n---\n")
    write_post("c.md", "---\ndate: 2025-12-22\nurl: /custom/path/\n---\n")
    urls = [d.url for d in load_digests(settings).digests]
    assert urls == ["https://site.example/posts/2025-12-20-16/",
                    "https://site.example/posts/my-post/", "https://site.example/custom/path/"]


def test_window_selects_only_inside(settings: Settings, write_post: WritePost) -> None:
    write_post("a.md", "---\ndate: 2025-12-21T23:59:00+08:00\n---\n")
    write_post("b.md", "---\ndate: 2025-12-22T00:00:00+08:00\n---\n")  # exactly at the end
    write_post("c.md", "---\ndate: 2025-12-15T00:00:00+08:00\n---\n")  # exactly at the start
    window = resolve_window(tz=TZ, week="2025-W51")
    names = [d.path.name for d in load_digests(settings, window).digests]
    assert names == ["c.md", "a.md"]


def test_post_without_items_keeps_an_excerpt(settings: Settings, write_post: WritePost) -> None:
    write_post("essay.md", "---\ndate: 2025-12-20\n---\n# Title From Heading\n\n"
               "First paragraph of an essay.\n\nSecond.\n")
    digest = only(settings)
    assert digest.title == "Title From Heading"  # type: ignore[attr-defined]
    assert digest.items == ()  # type: ignore[attr-defined]
    assert digest.excerpt == "First paragraph of an essay."  # type: ignore[attr-defined]


# ---------------------------------------------------------------- item layouts

def test_numbered_list_with_indented_summary() -> None:
    body = ("Intro.\n\n1.  [Karpathy on 2025 - 歸藏(guizang.ai)](https://x.com/a/1)\n\n"
            "    He **summarised** the year.\n\n    Second paragraph.\n\n"
            "2.  [Qwen &amp; friends - 宝玉](https://x.com/b/2)\n\n    Summary two.\n")
    first, second = extract_items(body)
    assert (first.headline, first.url, first.source) == ("Karpathy on 2025", "https://x.com/a/1",
                                                         "歸藏(guizang.ai)")
    assert first.summary_md == "He **summarised** the year.\n\nSecond paragraph."
    assert first.summary_text == "He summarised the year.\n\nSecond paragraph."
    assert second.headline == "Qwen & friends"


def test_numbered_heading_with_source_line_and_placeholder() -> None:
    body = ("## 🔥 Hot\n\n### 1. [Quantonation&#8217;s fund](https://tc.example/q)\n\n"
            "Closed at €220 million.\n\n**来源:** [TechCrunch](#)\n\n---\n\n"
            "### 2. [Second](#)\n\nText.\n")
    first, second = extract_items(body)
    assert first.headline == "Quantonation’s fund"
    assert (first.url, first.source, first.summary_md) == ("https://tc.example/q", "TechCrunch",
                                                           "Closed at €220 million.")
    assert second.url is None  # a placeholder link means no url


def test_bold_numbered_heading() -> None:
    (item,) = extract_items("### **1. [Redis 之父的反思](https://baoyu.example/r)**\n\nBody.\n")
    assert (item.headline, item.url, item.summary_text) == ("Redis 之父的反思",
                                                            "https://baoyu.example/r", "Body.")


def test_heading_link_with_bullets() -> None:
    body = ("## [OpenAI launches a model](https://tc.example/o)\n\n- **一句话**：faster\n"
            "- point two\n- **来源**：TechCrunch AI\n\n## [Second](https://tc.example/s)\n\n"
            "- x\n\n## 当日要点\n\nnot an item\n")
    first, second = extract_items(body)
    assert first.source == "TechCrunch AI"
    assert first.summary_text == "- 一句话：faster\n- point two"
    assert second.summary_text == "- x"  # a plain heading ends the item


def test_bold_number_then_link_and_text() -> None:
    body = ("- **04** [Headline four](https://a.example/4) the summary text\n"
            "- **05** [AI信任危机加剧] 调查显示信任度下降。[TechCrunch](https://tc.example/5)\n")
    four, five = extract_items(body)
    assert (four.headline, four.url, four.summary_text) == ("Headline four", "https://a.example/4",
                                                            "the summary text")
    assert (five.headline, five.url, five.source) == ("AI信任危机加剧", "https://tc.example/5",
                                                      "TechCrunch")
    assert five.summary_text == "调查显示信任度下降。"


def test_bold_lead_with_html_link() -> None:
    body = ('- **Anthropic buys Vercept**：stronger agents. <a class="cite" '
            'href="https://tc.example/v">1</a>\n- **Another**: no link, still an item\n')
    item, other = extract_items(body)
    assert (item.headline, item.url) == ("Anthropic buys Vercept", "https://tc.example/v")
    assert (other.headline, other.url, other.summary_text) == ("Another", None,
                                                               "no link, still an item")


def test_tables_nested_lists_and_raw_html_do_not_crash() -> None:
    body = ("| a | b |\n|---|---|\n| [x](https://t) | y |\n\n- outer\n  - [inner](https://i)\n\n"
            '<div class="article"><h2>Raw</h2><p>html</p></div>\n')
    items = extract_items(body)
    assert [i.headline for i in items] == ["inner"]


# ---------------------------------------------------------------- robustness

@hsettings(max_examples=150, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=3000) | st.text(max_size=2000).map(str.encode))
def test_loader_never_raises_on_arbitrary_bytes(settings: Settings, data: bytes) -> None:
    path = Path(settings.content_dir) / "fuzz.md"
    path.write_bytes(b"---\ndate: 2025-12-20\n---\n" + data if data[:1] == b"#" else data)
    result = load_digests(settings)
    assert len(result.digests) + len(result.problems) == 1


@hsettings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("[]()*#-1. \n>|`<a>:：来源\\!_")), max_size=300))
def test_item_extraction_never_raises(body: str) -> None:
    for item in extract_items(body):
        assert item.headline


# ---------------------------------------------------------------- formats and file selection

def test_multimarkdown_header_lines(settings: Settings, write_post: WritePost) -> None:
    write_post("p.md", "Title: Pelican post\nDate: 2025-12-17 09:30\nCategory: Robotics\n"
               "Tags: a, b\n\n## [Story](https://s.example/1)\n\nText.\n")
    digest = only(settings)
    assert digest.title == "Pelican post"
    assert digest.date == datetime(2025, 12, 17, 9, 30, tzinfo=TZ)
    assert digest.categories == ("robots",)
    assert [i.url for i in digest.items] == ["https://s.example/1"]


def test_a_body_starting_with_a_colon_line_is_not_a_header(settings: Settings,
                                                           write_post: WritePost) -> None:
    write_post("2025-12-18.md", "Note: this is prose.\n\nMore prose.\n")
    assert only(settings).title == "2025-12-18"


@pytest.mark.parametrize(("name", "expected"), [
    ("20251119T045816+0000-post.md", datetime(2025, 11, 19, 4, 58, 16, tzinfo=UTC)),
    ("20251119T045816+0800-post.md", datetime(2025, 11, 19, 4, 58, 16, tzinfo=TZ)),
    ("20251119T045816-05:00.md", datetime(2025, 11, 19, 9, 58, 16, tzinfo=UTC)),
])
def test_file_name_stamps_keep_their_offset(settings: Settings, write_post: WritePost,
                                            name: str, expected: datetime) -> None:
    write_post(name, "---\ntitle: x\n---\nbody\n")
    assert only(settings).date == expected


def test_undated_files_are_skipped_or_take_their_mtime(site: Path, write_post: WritePost
                                                       ) -> None:
    path = write_post("undated.md", "---\ntitle: x\n---\nbody\n")
    os.utime(path, (1766000000, 1766000000))
    from newsletter.config import load_settings

    skipped = load_digests(load_settings(site / "newsletter.toml"))
    assert [p.reason for p in skipped.problems] == [
        "no date: add 'date:' to the front matter, start the file name with YYYY-MM-DD, or "
        "set [content] undated = \"mtime\""]
    config = site / "newsletter.toml"
    config.write_text(config.read_text().replace('dir = "content"',
                                                 'dir = "content"\nundated = "mtime"'))
    dated = load_digests(load_settings(config))
    assert [d.date.timestamp() for d in dated.digests] == [1766000000]


def test_pages_are_left_out_without_advice(settings: Settings, write_post: WritePost) -> None:
    write_post("_index.md", "---\ntitle: Posts\n---\n")
    write_post("about.md", "---\ntitle: About\n---\nWho we are.\n")
    write_post("2025-12-20.md", "---\ntitle: A digest\n---\n")
    result = load_digests(settings)
    assert [d.title for d in result.digests] == ["A digest"]
    assert (result.pages, result.problems) == (2, [])


def test_symlink_loop_ends_the_walk_there(settings: Settings, write_post: WritePost) -> None:
    write_post("a/2025-12-20.md", "---\ntitle: A\n---\n")
    (Path(settings.content_dir) / "a" / "loop").symlink_to(Path(settings.content_dir))
    assert [d.title for d in load_digests(settings).digests] == ["A"]
