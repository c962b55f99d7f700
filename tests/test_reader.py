"""What a reader sees first: sections line, contents, top stories, editor's note, links."""

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.compose import compose, edition_from_json, edition_to_json
from newsletter.config import load_settings
from newsletter.content import load_digests
from newsletter.dates import day, span
from newsletter.errors import NewsletterError
from newsletter.intro import find_intro
from newsletter.render import Renderer
from newsletter.window import resolve_window
from tests.conftest import EXAMPLES
from tests.test_render import personalized

PREFS = "https://ai-weekly.example.com/preferences/TOKEN"


def render(categories: tuple[str, ...], intro: str = "") -> tuple[str, str]:
    settings = load_settings(EXAMPLES / "newsletter.toml")
    window = resolve_window(tz=settings.timezone, week="2025-W51")
    edition = compose(load_digests(settings, window).digests, settings, window, 12, intro)
    renderer = Renderer(settings)
    return personalized(renderer, renderer.render(edition, edition.plan(categories)))


@pytest.mark.parametrize(("categories", "line"), [
    ((), "你订阅的栏目：全部栏目"),
    (("robotics",), "你订阅的栏目：机器人"),
    (("models", "opinion"), "你订阅的栏目：模型与研究、观点"),
])
def test_sections_line_names_the_readers_sections(categories: tuple[str, ...],
                                                   line: str) -> None:
    html, text = render(categories)
    assert line in html and line in text
    # one tap to change them, in both parts
    assert f'<a href="{PREFS}"' in html.split(line, 1)[1][:400]
    assert f"更改：{PREFS}" in text


def test_contents_top_stories_and_heading_sizes() -> None:
    html, text = render(())
    assert '<a href="#s-top"' in html and 'id="s-top"' in html
    assert "本期目录：本周热点 (" in text
    assert '<span class="num" style="color:#1a5fb4">1.</span>' in html
    assert "\n1. " in text and "\n2. " in text
    def px(after: str) -> int:
        return int(re.search(r"font-size:(\d+)px", html.split(after, 1)[1])[1])  # type: ignore[index]

    assert px('class="section"') > px('class="story top"') > px('class="story"')


def test_web_version_and_digests_links() -> None:
    html, text = render(("robotics",))
    web = "https://ai-weekly.example.com/editions/12/robotics/"
    digests = "https://ai-weekly.example.com/editions/12/#digests"
    assert html.count(f'href="{web}"') == 2  # top and footer
    assert f'href="{digests}"' in html and digests in text
    assert "在浏览器中查看：" + web in text
    assert "本期汇集了 7 篇摘要" in html  # one compact line, even when nothing was dropped


def test_editors_note_in_both_parts_and_the_snapshot() -> None:
    html, text = render((), intro="本周 **重点**：开源模型。")
    assert '<div class="intro"' in html and "<strong>重点</strong>" in html
    assert "编者按：\n本周 **重点**：开源模型。" in text
    settings = load_settings(EXAMPLES / "newsletter.toml")
    window = resolve_window(tz=settings.timezone, week="2025-W51")
    edition = compose([], settings, window, 1, "note")
    assert edition_from_json(edition_to_json(edition)).intro == "note"


def test_editors_note_file_next_to_content(tmp_path: Path) -> None:
    settings = load_settings(EXAMPLES / "newsletter.toml")
    window = resolve_window(tz=settings.timezone, week="2025-W51")
    assert find_intro(settings, window) == ""
    note = tmp_path / "note.md"
    note.write_bytes(b"\xff\xfe")
    with pytest.raises(NewsletterError, match=r"note\.md: the editor's note is not UTF-8"):
        find_intro(settings, window, note)


def test_preview_intro_option_and_week_file(site: Path) -> None:
    shutil.copytree(EXAMPLES / "content", site / "content", dirs_exist_ok=True)
    (site / "editions").mkdir()
    (site / "editions" / "2025-W51.md").write_text("From the week file.", encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(cli, ["preview", "--week", "2025-W51", "--out", "p"])
    assert result.exit_code == 0, result.output
    assert "From the week file." in (site / "p" / "all.txt").read_text(encoding="utf-8")
    (site / "given.md").write_text("Given on the command line.", encoding="utf-8")
    result = runner.invoke(cli, ["preview", "--week", "2025-W51", "--out", "p",
                                 "--intro", "given.md"])
    assert "Given on the command line." in (site / "p" / "all.txt").read_text(encoding="utf-8")
    result = runner.invoke(cli, ["preview", "--week", "2025-W51", "--intro", "missing.md"])
    assert result.exit_code == 2 and "missing.md: cannot read the editor's note" in result.output


def test_one_date_style_per_language() -> None:
    from datetime import date
    assert span(date(2025, 12, 15), date(2025, 12, 21), "zh-CN") == "2025年12月15日–21日"
    assert span(date(2025, 12, 29), date(2026, 1, 4), "en") == "Dec 29, 2025 – Jan 4, 2026"
    assert span(date(2025, 11, 28), date(2025, 12, 4), "en") == "Nov 28–Dec 4, 2025"
    assert day(date(2025, 12, 18), "zh") == "12月18日" and day(date(2025, 12, 18), "en") == \
        "Dec 18"


def test_text_wrapping_measures_with_wcwidth_and_keeps_tokens() -> None:
    from newsletter.render import display_width, wrap_line

    assert display_width("e\u0301") == 1  # a combining mark takes no column
    assert display_width("👩\u200d💻") == 2  # one emoji sequence
    # a URL ends where Chinese text begins: the text after it wraps normally
    url = "https://example.com/a/b"
    line = f"见 {url}中文说明" + "很长的句子" * 20
    wrapped = wrap_line(line)
    assert wrapped[0].split()[1] == url and wrapped[0].split()[2].startswith("中文说明")
    assert all(display_width(w) <= 78 for w in wrapped)
    # closing punctuation never starts a line, and never splits "GPT-5，" into "GPT-" / "5，"
    for pad in range(60, 80):
        text = "x" * pad + " GPT-5，很好。"
        lines = wrap_line(text)
        assert not any(w.lstrip()[:1] in "，。" for w in lines[1:]), lines
        assert "GPT-5，" in "\n".join(lines) and not any(w.endswith("GPT-") for w in lines)


def test_greeting_is_wrapped_after_the_name_is_filled_in() -> None:
    settings = load_settings(EXAMPLES / "newsletter.toml")
    window = resolve_window(tz=settings.timezone, week="2025-W51")
    edition = compose(load_digests(settings, window).digests, settings, window, 12)
    renderer = Renderer(settings)
    variant = renderer.render(edition, edition.plan())
    _, text = variant.personalize(renderer, name="很长的名字" * 12, preferences_url="p",
                                  unsubscribe_url="u")
    from newsletter.render import display_width
    assert all(display_width(line) <= 78 for line in text.splitlines()
               if "://" not in line), text[:600]
