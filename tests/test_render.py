import os
import re
from datetime import timedelta
from pathlib import Path

import pytest

from newsletter.compose import compose
from newsletter.config import Settings, load_settings
from newsletter.content import Digest, load_digests
from newsletter.items import Item
from newsletter.render import Renderer, display_width, inline_calls, wrap_line
from newsletter.window import resolve_window
from tests.conftest import EXAMPLES

GOLDEN = Path(__file__).parent / "golden"
REGENERATE = os.environ.get("NEWSLETTER_REGENERATE_GOLDEN") == "1"


def example_edition() -> tuple[Settings, Renderer, object]:
    settings = load_settings(EXAMPLES / "newsletter.toml")
    window = resolve_window(tz=settings.timezone, week="2025-W51")
    edition = compose(load_digests(settings, window).digests, settings, window, number=12)
    return settings, Renderer(settings), edition


def personalized(renderer: Renderer, variant: object) -> tuple[str, str]:
    return variant.personalize(renderer, name="Ada",  # type: ignore[attr-defined]
                               preferences_url="https://ai-weekly.example.com/preferences/TOKEN",
                               unsubscribe_url="https://ai-weekly.example.com/unsubscribe/TOKEN")


@pytest.mark.parametrize("categories", [("robotics",), ("models", "opinion")])
def test_golden_files(categories: tuple[str, ...]) -> None:
    """Set NEWSLETTER_REGENERATE_GOLDEN=1 to rewrite them after an intended change."""
    _, renderer, edition = example_edition()
    variant = renderer.render(edition, edition.plan(categories))  # type: ignore[attr-defined]
    html, text = personalized(renderer, variant)
    for suffix, produced in (("html", html), ("txt", text)):
        path = GOLDEN / f"{variant.key}.{suffix}"
        if REGENERATE:
            path.write_text(produced, encoding="utf-8")
        assert produced == path.read_text(encoding="utf-8"), f"{path} differs"


def test_reference_digest_renders_all_16_stories() -> None:
    settings, renderer, edition = example_edition()
    variant = renderer.render(edition, edition.plan())  # type: ignore[attr-defined]
    html, text = personalized(renderer, variant)
    reference = [d for d in load_digests(settings).digests if d.title.startswith("2025.12.20")]
    for item in reference[0].items:
        assert f'href="{item.url}"' in html
        assert item.url in text
    assert variant.subject == "AI 周报 第12期 · 12月15日–21日"


def test_html_structure() -> None:
    _, renderer, edition = example_edition()
    html, text = personalized(renderer, renderer.render(edition, edition.plan()))  # type: ignore[attr-defined]
    assert '<html lang="zh-CN"' in html
    assert 'name="color-scheme"' in html and "prefers-color-scheme" in html
    assert "<!--[if mso]>" in html and "@media only screen" in html
    assert "display:none" in html  # preheader
    assert "PingFang SC" in html
    assert "第 12 期" in html and "2025年12月15日–21日" in html
    assert "https://ai-weekly.example.com/unsubscribe/TOKEN" in html
    assert "100 Example Road" in html and "100 Example Road" in text
    assert "nlslot" not in html and "nlslot" not in text
    assert 'style="' in html  # inlined
    assert "Ada，你好" in html and "Ada，你好" in text


def test_inlining_happens_once_per_variant_not_per_subscriber() -> None:
    _, renderer, edition = example_edition()
    before = inline_calls()
    variant = renderer.render(edition, edition.plan(["products"]))  # type: ignore[attr-defined]
    for n in range(50):
        variant.personalize(renderer, name=f"R{n}", preferences_url="p", unsubscribe_url="u")
    assert inline_calls() - before == 1


def hostile_edition(settings: Settings) -> object:
    window = resolve_window(tz=settings.timezone, week="2025-W51")
    evil = Item(
        headline="Evil {{ 7*7 }} {% if true %}yes{% endif %}<script>alert(1)</script>",
        url="javascript:alert(1)", source="Src\r\nBcc: victim@example.com",
        summary_md='<img src=x onerror="alert(2)"> <script>alert(3)</script> '
                   '[click](javascript:alert(4)) <a href="javascript:alert(5)">a</a> '
                   '{{ config }} <b onclick="x()">bold</b>',
        summary_text="{{ config }}")
    title = "Title\r\nSubject: injected"
    d = Digest(path=Path("evil.md"), title=title, date=window.start + timedelta(hours=2),
               categories=(), url="https://site.example/e/", items=(evil,))
    return compose([d], settings, window)


def test_hostile_content_is_neutralized(settings: Settings) -> None:
    renderer = Renderer(settings)
    edition = hostile_edition(settings)
    variant = renderer.render(edition, edition.plan())  # type: ignore[attr-defined]
    html, text = personalized(renderer, variant)
    lowered = html.lower()
    assert "<script" not in lowered
    assert "onerror" not in lowered and "onclick" not in lowered
    assert "href=\"javascript:" not in lowered and "href='javascript:" not in lowered
    assert "Src Bcc: victim@example.com" in html  # one line, as text
    assert "{{ 7*7 }}" in html and "49" not in html.split("Evil", 1)[1][:20]
    assert "{% if true %}" in html and "{{ config }}" in html
    assert "{{ 7*7 }}" in text
    assert "\r" not in variant.subject and "\n" not in variant.subject


def dense_digests(settings: Settings, count: int = 42, items: int = 16) -> list[Digest]:
    window = resolve_window(tz=settings.timezone, week="2025-W51")
    summary = ("这是一个相当长的摘要，用来模拟真实的新闻条目，包含**重点**和[链接](https://e.example/x)。"
               * 4)
    return [Digest(path=Path(f"{n}.md"), title=f"Digest {n}",
                   date=window.start + timedelta(hours=4 * n), categories=("models", "robots"),
                   url=f"https://site.example/posts/{n}/",
                   items=tuple(Item(headline=f"新闻 {n}-{k} 模型 机器人", source="来源",
                                    url=f"https://news.example/{n}/{k}", summary_md=summary,
                                    summary_text=summary) for k in range(items)))
            for n in range(count)]


def test_size_budget_drops_lowest_ranked_and_says_so(settings: Settings) -> None:
    window = resolve_window(tz=settings.timezone, week="2025-W51")
    edition = compose(dense_digests(settings), settings, window)
    renderer = Renderer(settings)
    for cats in [(), ("robots",), ("models", "apps")]:
        variant = renderer.render(edition, edition.plan(cats))
        html, text = personalized(renderer, variant)
        assert len(html.encode()) <= settings.max_html_bytes
        assert variant.dropped > 0 and variant.stories > 20
        assert f"还有 {variant.dropped} 条新闻，请看网页版" in html
        assert f"还有 {variant.dropped} 条新闻，请看网页版" in text
        # the table of contents counts what the budget kept, per section
        counts = [int(n) for n in re.findall(r"\s\((\d+)\)</a>", html)]
        assert sum(counts) == variant.stories and "nltoc" not in html
        shown = set(re.findall(r"https://news\.example/\d+/\d+", html))
        assert shown == set(re.findall(r"https://news\.example/\d+/\d+", text))
        assert len(shown) == variant.stories
        # the newest stories rank first when coverage is equal: the oldest are dropped
        assert "https://news.example/41/0" in shown and "https://news.example/0/0" not in shown


def test_text_lines_fit_78_columns_and_urls_stay_whole() -> None:
    _, renderer, edition = example_edition()
    _, text = personalized(renderer, renderer.render(edition, edition.plan()))  # type: ignore[attr-defined]
    for line in text.splitlines():
        assert display_width(line) <= 78 or \
            re.fullmatch(r"\s*(\S+(: |：))?https?://\S+", line), line


def test_wrap_line() -> None:
    assert display_width("中a") == 3
    cjk = "中" * 100
    assert [display_width(x) for x in wrap_line(cjk)] == [78, 78, 44]
    url = "https://example.com/" + "a" * 100
    assert wrap_line(f"see {url} now") == ["see", url, "now"]
    wrapped = wrap_line("- " + "word " * 30)
    assert all(line.startswith("  ") for line in wrapped[1:])
