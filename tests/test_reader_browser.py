"""Every page and the email in a real Chromium at 320, 375, 600 and 1024 px, light and
dark: no horizontal overflow, AA contrast for every visible text, 44 px touch targets."""

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from newsletter.compose import compose
from newsletter.config import load_settings
from newsletter.content import load_digests
from newsletter.render import Renderer
from newsletter.tokens import CONFIRM, FORM, PREFERENCES, UNSUBSCRIBE
from newsletter.window import resolve_window
from tests.a11y import SCHEMES, WIDTHS, check_page
from tests.conftest import EXAMPLES
from tests.test_archive import send_week
from tests.test_render import dense_digests, personalized
from tests.test_web import TOKENS, add

pytestmark = pytest.mark.browser


def emails() -> dict[str, str]:
    """The example week's variants and a dense week's, each with and without <style>."""
    settings = load_settings(EXAMPLES / "newsletter.toml")
    window = resolve_window(tz=settings.timezone, week="2025-W51")
    renderer = Renderer(settings)
    example = compose(load_digests(settings, window).digests, settings, window, 12,
                      "An editor's **note** with a [link](https://example.com/a-long-path-"
                      "that-should-wrap-on-a-small-phone-screen-without-overflowing).")
    dense = compose(dense_digests(settings), settings, window, 13)
    found = {}
    for label, edition, cats in (("example-all", example, ()),
                                 ("example-models", example, ("models", "opinion")),
                                 ("dense-all", dense, ())):
        html, _ = personalized(renderer, renderer.render(edition, edition.plan(cats)))
        found[label] = html
        found[label + "-no-style"] = re.sub(r"<style[^>]*>.*?</style>", "", html, flags=re.S)
    return found


def pages(site: Path, base: str) -> dict[str, Callable[[], str]]:
    """Every page of `newsletter serve`, as a person reaches it (GET or after a POST)."""
    active = add(site, "active@example.com", name="Ann", categories="models")
    gone = add(site, "gone@example.com", status="unsubscribed")
    pending = add(site, "pending@example.com", status="pending")
    prefs = f"{base}/preferences/{TOKENS.make(PREFERENCES, active)}"
    unsub = f"{base}/unsubscribe/{TOKENS.make(UNSUBSCRIBE, active)}"
    gone_prefs = f"{base}/preferences/{TOKENS.make(PREFERENCES, gone)}"
    confirm = f"{base}/confirm/{TOKENS.make(CONFIRM, pending)}"

    def get(url: str) -> Callable[[], str]:
        return lambda: httpx.get(url).text

    def post(url: str, data: dict[str, Any]) -> Callable[[], str]:
        return lambda: httpx.post(url, data=data).text

    signup = httpx.get(f"{base}/subscribe").text
    form_token = re.search(r'name="form_token" value="([^"]+)"', signup).group(1)  # type: ignore[union-attr]
    return {
        "signup": get(f"{base}/subscribe"),
        "check-inbox": post(f"{base}/subscribe", {"form_token": form_token,
                                                   "email": "someone.with.a.long.address"
                                                            "@subdomain.example.com"}),
        "preferences": get(prefs),
        "preferences-saved": post(prefs, {"form_token": TOKENS.make(FORM, active),
                                          "name": "Ann", "categories": ["models", "apps"]}),
        "preferences-unsubscribed": get(gone_prefs),
        "preferences-unsubscribed-saved": post(gone_prefs, {
            "form_token": TOKENS.make(FORM, gone), "categories": ["models"]}),
        "unsubscribe": get(unsub),
        "confirm": get(confirm),
        "confirm-done": post(confirm, {}),
        "invalid-link": get(f"{base}/preferences/not-a-token"),
        "bad-form": post(prefs, {"form_token": "forged"}),
        "archive": get(f"{base}/editions/"),
        "edition": get(f"{base}/editions/1/"),
        "edition-version": get(f"{base}/editions/1/all/"),
        "unsubscribe-done": post(unsub, {}),
    }


def test_email_and_pages_at_every_width_light_and_dark(web_site: Any, web_server: str,
                                                       request: pytest.FixtureRequest) -> None:
    site, _ = web_site
    send_week(site)  # before Chromium starts: its event loop would block asyncio.run()
    documents = {f"email {k}": v for k, v in emails().items()}
    for name, fetch in pages(site, web_server).items():  # in order: POSTs change state
        documents[f"page {name}"] = fetch()
    browser = request.getfixturevalue("browser")  # one Chromium for all the checks
    problems = []
    for scheme in SCHEMES:
        context = browser.new_context(color_scheme=scheme)
        page = context.new_page()
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 800})
            for name, html in documents.items():
                page.set_content(html, wait_until="load")
                problems += [f"{name} {width}px {scheme}: {p}" for p in check_page(page, width)]
        context.close()
    assert not problems, "\n".join(problems[:60]) + f"\n({len(problems)} problems)"


def test_the_checker_finds_what_it_looks_for(browser: Any) -> None:
    """The checks above can fail: each known problem is reported."""
    bad = ("<!DOCTYPE html><html><head><meta name='color-scheme' content='light dark'>"
           "</head><body style='margin:0'>"
           "<p style='color:#999'>grey on white</p>"
           "<div style='background:rgba(0,0,0,0.5)'><p style='color:#333'>dark on dim</p></div>"
           "<p>default text</p>"
           "<div style='width:700px'>wide</div>"
           "<footer><a href='#' style='font-size:12px'>tiny link</a></footer></body></html>")
    page = browser.new_page(viewport={"width": 375, "height": 600}, color_scheme="dark")
    page.set_content(bad)
    found = "\n".join(check_page(page, 375))
    assert '"grey on white"' not in found  # dark canvas: #999 on it passes
    assert '"dark on dim"' in found and "horizontal overflow: 700 > 375" in found
    assert 'px tall: "tiny link"' in found
    page.emulate_media(color_scheme="light")
    found = "\n".join(check_page(page, 375))
    assert 'contrast 2.85 < 4.5: "grey on white"' in found
    page.close()
