import email
import email.policy
import re
import time
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import load_settings
from newsletter.store import Store
from newsletter.subscribers import Subscribers
from newsletter.tokens import CONFIRM, FORM, PREFERENCES, UNSUBSCRIBE, Tokens
from tests.pg import both_stores

TOKENS = Tokens("test-secret-key")
ONE_CLICK = {"content-type": "application/x-www-form-urlencoded"}


def add(site: Path, address: str, **kwargs: Any) -> int:
    settings = load_settings(site / "newsletter.toml")
    with Store(settings.store_location) as store:
        return Subscribers(store, settings).add(address, **kwargs).id


def status(site: Path, address: str) -> Any:
    settings = load_settings(site / "newsletter.toml")
    with Store(settings.store_location) as store:
        return store.subscriber(address.casefold())


def post(url: str, **kwargs: Any) -> httpx.Response:
    """A form post as a browser on our own page sends it: with our Origin."""
    origin = "/".join(url.split("/", 3)[:3])
    return httpx.post(url, headers={"origin": origin, **kwargs.pop("headers", {})}, **kwargs)


def wait_outbox(site: Path, count: int, seconds: float = 10.0) -> list[email.message.EmailMessage]:
    """The outbox once it holds `count` messages (confirmations leave after the answer)."""
    deadline = time.monotonic() + seconds
    while len(outbox(site)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # and nothing more arrives
    return outbox(site)


def outbox(site: Path) -> list[email.message.EmailMessage]:
    folder = site / "outbox" / "new"
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for p in sorted(folder.iterdir())] if folder.exists() else []


@both_stores
def test_preferences_show_and_save(web_site: Any, web_server: str) -> None:
    site, _ = web_site
    sid = add(site, "a@example.com", name="Ann", categories="models,robots")
    url = f"{web_server}/preferences/{TOKENS.make(PREFERENCES, sid)}"
    page = httpx.get(url)
    assert page.status_code == 200
    assert page.headers["referrer-policy"] == "same-origin"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert re.search(r'value="models" checked', page.text)
    assert re.search(r'value="apps">', page.text)
    assert 'value="Ann"' in page.text and "<script" not in page.text
    saved = post(url, data={"form_token": TOKENS.make(FORM, sid), "name": "Anna",
                                  "categories": ["apps", "models"]})
    assert saved.status_code == 200
    assert "新增: 应用" in saved.text and "取消: 机器人" in saved.text
    assert status(site, "a@example.com").categories == ("apps", "models")
    everything = post(url, data={"form_token": TOKENS.make(FORM, sid), "name": "Anna",
                                       "categories": ["apps", "models", "robots"]})
    assert everything.status_code == 200
    assert status(site, "a@example.com").categories == ()  # all ticked: every category
    # nothing ticked means every section, as on the signup form, and the page says so
    none = post(url, data={"form_token": TOKENS.make(FORM, sid), "name": "A"})
    assert none.status_code == 200 and "全选或都不选，都表示接收所有栏目" in none.text
    assert status(site, "a@example.com").categories == ()
    assert "本页管理的邮箱：<span class=\"address\">a@example.com</span>" in none.text


@pytest.mark.parametrize("data", [
    {"name": "x", "categories": "models"},  # no form token
    {"form_token": TOKENS.make(FORM, 999), "categories": "models"},  # another subscriber's
    {"form_token": "forged", "categories": "models"},
    {"form_token": "FORM", "categories": "sports"},  # unknown category
    {"form_token": "FORM", "categories": "models", "name": "n" * 201},
])
def test_preferences_bad_forms(web_site: Any, web_server: str, data: dict[str, str]) -> None:
    site, _ = web_site
    sid = add(site, "a@example.com", categories="robots")
    if data.get("form_token") == "FORM":
        data["form_token"] = TOKENS.make(FORM, sid)
    url = f"{web_server}/preferences/{TOKENS.make(PREFERENCES, sid)}"
    response = post(url, data=data)
    assert response.status_code == 400
    assert status(site, "a@example.com").categories == ("robots",)


def test_cross_site_post_and_huge_bodies_are_refused(web_site: Any, web_server: str) -> None:
    site, _ = web_site
    sid = add(site, "a@example.com", categories="robots")
    page = f"{web_server}/preferences/{TOKENS.make(PREFERENCES, sid)}"
    form = {"form_token": TOKENS.make(FORM, sid), "categories": "models"}
    for headers in ({"origin": "https://evil.example"}, {"origin": "null"}, {},
                    {"sec-fetch-site": "cross-site"}):
        refused = httpx.post(page, data=form, headers=headers)
        assert refused.status_code == 400, headers
    assert status(site, "a@example.com").categories == ("robots",)
    url = f"{web_server}/unsubscribe/{TOKENS.make(UNSUBSCRIBE, sid)}"
    huge = httpx.post(url, content=b"x" * 20_000, headers=ONE_CLICK)
    assert huge.status_code == 413
    chunked = httpx.post(url, content=iter([b"x" * 10_000, b"x" * 10_000]), headers=ONE_CLICK)
    assert chunked.status_code in (400, 413)
    assert status(site, "a@example.com").status == "active"


@both_stores
def test_rfc8058_one_click_unsubscribes_but_get_does_not(web_site: Any,
                                                          web_server: str) -> None:
    site, _ = web_site
    sid = add(site, "a@example.com")
    url = f"{web_server}/unsubscribe/{TOKENS.make(UNSUBSCRIBE, sid)}"
    for _ in range(3):
        assert httpx.get(url).status_code == 200
    assert status(site, "a@example.com").status == "active"
    response = httpx.post(url, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
    assert response.status_code == 200
    assert status(site, "a@example.com").status == "unsubscribed"
    again = re.search(r'<form method="post" action="([^"]+/resubscribe/[^"]+)"', response.text)
    assert again
    assert httpx.post(again.group(1)).status_code == 400  # a form post: our Origin only
    assert post(again.group(1)).status_code == 200
    assert status(site, "a@example.com").status == "active"


def test_bad_tokens_get_a_plain_400(web_site: Any, web_server: str) -> None:
    site, _ = web_site
    sid = add(site, "a@example.com")
    good = {p: TOKENS.make(p, sid) for p in (PREFERENCES, UNSUBSCRIBE, CONFIRM)}
    altered = good[PREFERENCES][:-2] + ("AA" if not good[PREFERENCES].endswith("AA") else "BB")
    other_key = Tokens("another-key").make(PREFERENCES, sid)
    cases = {
        "/preferences/": ["garbage", altered, other_key, good[UNSUBSCRIBE], good[CONFIRM]],
        "/unsubscribe/": ["garbage", good[PREFERENCES], good[CONFIRM]],
        "/confirm/": ["garbage", good[PREFERENCES], good[UNSUBSCRIBE]],
        "/resubscribe/": [good[PREFERENCES]],
    }
    for route, tokens in cases.items():
        for token in tokens:
            for method in ("GET", "POST"):
                if route == "/resubscribe/" and method == "GET":
                    continue
                response = httpx.request(method, f"{web_server}{route}{token}")
                assert response.status_code == 400, (route, token, method)
                assert "Traceback" not in response.text and "a@example.com" not in response.text
    assert status(site, "a@example.com").status == "active"
    assert httpx.get(f"{web_server}/nowhere").status_code == 404


@both_stores
def test_signup_confirm_and_no_enumeration(web_site: Any, web_server: str) -> None:
    site, _ = web_site
    add(site, "known@example.com")
    form = httpx.get(f"{web_server}/subscribe")
    token = re.search(r'name="form_token" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    new = post(f"{web_server}/subscribe", data={
        "form_token": token, "email": "New@Example.com", "name": "Nia",
        "categories": ["robots"]})
    known = post(f"{web_server}/subscribe", data={
        "form_token": token, "email": "known@example.com", "name": "", "categories": []})
    assert new.status_code == known.status_code == 200
    # the same answer either way (each page repeats the address that was typed)
    assert new.text.replace("New@example.com", "X") == known.text.replace("known@example.com", "X")
    assert "New@example.com" in new.text and "垃圾邮件" in new.text
    assert status(site, "new@example.com").status == "pending"
    (message,) = wait_outbox(site, 1)  # only the unknown address got mail
    assert message["To"] == "Nia <New@example.com>"
    link = re.search(r"http://127\.0\.0\.1:\d+/confirm/\S+",
                     message.get_body(("plain",)).get_content()).group(0)  # type: ignore[union-attr]
    assert "example.com" not in link.lower()
    assert httpx.get(link).status_code == 200
    assert status(site, "new@example.com").status == "pending"  # GET changes nothing
    assert httpx.post(link).status_code == 400  # no Origin: not our page's button
    assert post(link).status_code == 200
    assert status(site, "new@example.com").status == "active"
    assert status(site, "new@example.com").categories == ("robots",)


def signup(web_server: str, address: str, name: str = "", **headers: str) -> httpx.Response:
    return post(f"{web_server}/subscribe", data={"form_token": TOKENS.make(FORM, 0),
                                                 "email": address, "name": name},
                headers=headers)


def test_confirmation_links_expire(web_site: Any, web_server: str) -> None:
    site, _ = web_site
    assert signup(web_server, "p@example.com").status_code == 200
    wait_outbox(site, 1)
    with mock.patch("time.time", return_value=time.time() - 8 * 24 * 3600):
        old = TOKENS.make(CONFIRM, 1)  # the first signup's id, signed 8 days ago
    assert post(f"{web_server}/confirm/{old}").status_code == 400
    assert status(site, "p@example.com").status == "pending"
    assert post(f"{web_server}/confirm/{TOKENS.make(CONFIRM, 1)}").status_code == 200
    assert status(site, "p@example.com").status == "active"


@both_stores
def test_signup_validation_and_rate_limits(web_site: Any, web_server: str) -> None:
    site, _ = web_site
    token = TOKENS.make(FORM, 0)
    bad = post(f"{web_server}/subscribe", data={"form_token": token, "email": "nope"})
    assert bad.status_code == 422 and 'value="nope"' in bad.text
    forged = post(f"{web_server}/subscribe", data={"form_token": "x", "email": "a@b.co"})
    assert forged.status_code == 400
    codes = [signup(web_server, "same@example.com").status_code for _ in range(8)]
    assert codes == [200] * 8 and len(wait_outbox(site, 3)) == 3  # 3 mails per address a day
    # 8 recorded signups from this network so far; the 21st in the hour is refused
    codes = [signup(web_server, f"other{n}@example.com").status_code for n in range(13)]
    assert codes == [200] * 12 + [429]


def test_serve_refuses_without_a_secret_key(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY")
    result = CliRunner().invoke(cli, ["serve", "--port", "1"])
    assert result.exit_code == 2
    assert "NEWSLETTER_SECRET_KEY is not set" in result.stderr
