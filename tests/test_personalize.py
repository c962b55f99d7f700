"""Personalized bytes read exactly as rendered: no padding in the text part, none inside a
URL a template extends, and a greeting rendered for each name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from newsletter.config import Settings
from newsletter.message import MessageFactory, Recipient
from newsletter.render import Renderer
from newsletter.send import plan_edition
from newsletter.store import Store
from newsletter.tokens import Tokens
from tests.test_send import add, parsed, week  # noqa: F401

REPO = Path(__file__).resolve().parent.parent


def override(site: Path, name: str, old: str, new: str) -> None:
    text = (REPO / "templates" / "email" / name).read_text(encoding="utf-8")
    assert old in text
    target = site / "templates" / "email" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text.replace(old, new), encoding="utf-8")


def messages(settings: Settings, window: Any, names: list[str]) -> list[tuple[Any, Any]]:
    """(message as parsed, the reference fill of the same variant) per name."""
    renderer = Renderer(settings)
    tokens = Tokens("test-secret-key")
    with Store(settings.store_location) as store:
        if not list(store.subscribers()):
            add(settings, ("x@example.com", "", ""))
        (variant,) = plan_edition(store, settings, window, renderer).variants
    factory = MessageFactory(settings, variant, renderer, tokens)
    result = []
    for n, name in enumerate(names):
        recipient = Recipient(f"p{n}@example.com", name, n + 1)
        preferences, unsubscribe = factory.links(recipient)
        expected = variant.personalize(renderer, name=name, preferences_url=preferences,
                                       unsubscribe_url=unsubscribe)
        result.append((parsed(factory.build(recipient)), expected))
    return result


def test_parts_are_exactly_the_rendered_text(settings: Settings, site: Path,
                                             week: Any) -> None:  # noqa: F811
    override(site, "email.txt.j2", "{{ slot.preferences_url }}",
             "{{ slot.preferences_url }}?from=email")
    override(site, "email.html.j2", 'href="{{ slot.preferences_url }}"',
             'href="{{ slot.preferences_url }}?from=email"')
    for name in ["", "Al", "林 微" * 7, "x" * 57]:
        ((msg, (html, text)),) = messages(settings, week, [name])
        got_text = msg.get_body(("plain",)).get_content()
        got_html = msg.get_body(("html",)).get_content()
        assert got_text.replace("\r\n", "\n") == text.replace("\r\n", "\n")
        assert not [line for line in got_text.splitlines() if line != line.rstrip()]
        assert "?from=email" in got_text and "?from=email" in got_html
        assert "/preferences/" in got_text
        link = got_html.split("/preferences/")[1].split('"')[0]
        assert " " not in link and link.endswith("?from=email")
        # the HTML may only differ by spaces the padding put where they are harmless
        assert got_html.replace(" ", "") == html.replace(" ", "")


def test_greeting_rendered_for_each_name(settings: Settings, site: Path,
                                         week: Any) -> None:  # noqa: F811
    greeting = site / "templates" / "email" / "greeting.txt.j2"
    greeting.parent.mkdir(parents=True)
    greeting.write_text('{% if name == "Al" %}Yo {{ name }}!{% elif name %}Dear {{ name }},'
                        "{% else %}Hello,{% endif %}", encoding="utf-8")
    got = messages(settings, week, ["Alexander", "Al", "", "Al"])
    texts = [msg.get_body(("plain",)).get_content() for msg, _ in got]
    assert "Dear Alexander," in texts[0] and "Yo Al!" in texts[1] and "Hello," in texts[2]
    assert "Yo Al!" in texts[3] and "Dear Al," not in texts[1] + texts[3]


def test_long_non_ascii_list_name_folds_with_crlf(settings: Settings, site: Path,
                                                  week: Any) -> None:  # noqa: F811
    import dataclasses

    settings = dataclasses.replace(settings, name="非常长的中文新闻通讯名称" * 8)
    ((msg, _),) = messages(settings, week, ["Ann"])
    assert "非常长的中文新闻通讯名称" in str(msg["List-Id"])
    renderer = Renderer(settings)
    with Store(settings.store_location) as store:
        (variant,) = plan_edition(store, settings, week, renderer).variants
    built = MessageFactory(settings, variant, renderer, Tokens("k")).build(Recipient("a@b.example"))
    header = built.split(b"\r\n\r\n")[0]
    assert b"\n" not in header.replace(b"\r\n", b"")  # no bare LF anywhere
    assert header.count(b"\r\n ") >= 2  # List-Id (and Subject) folded


def test_greeting_without_rendering_per_name_is_the_rendered_one(
        settings: Settings, site: Path) -> None:
    """A template that only prints the name and tests for one is rendered once; any
    other use of the name (a comparison, a filter) renders it for each name."""
    names = ["Ann", "林 微", "{{ name }}", "Hi Hi", "a%s", "x" * 300, "nlname", " Bo  b "]
    renderer = Renderer(settings)
    assert renderer._greeting_shape is not None
    for name in names:
        assert renderer.greeting(name) == renderer._render_greeting(" ".join(name.split()))
    assert renderer.greeting("") == renderer._render_greeting("")
    greeting = site / "templates" / "email" / "greeting.txt.j2"
    greeting.parent.mkdir(parents=True, exist_ok=True)
    for text in ['{% if name %}Dear {{ name }}, {{ name }}{% else %}Hello{% endif %}!',
                 "{{ name|upper }}", '{% if name|length > 3 %}{{ name }}{% endif %}',
                 '{% set name = "Bo" %}{{ name }}']:
        greeting.write_text(text, encoding="utf-8")
        renderer = Renderer(settings)
        assert (renderer._greeting_shape is not None) == text.startswith("{% if name %}")
        assert [renderer.greeting(n) for n in names] == [
            renderer._greeting.render(name=" ".join(n.split()), lang="en").strip()
            for n in names]
