"""What robots and other sites can do to `newsletter serve`: nothing that changes state.

Link scanners send HEAD and GET to every link of a delivered email; other sites post forms;
a digest's front matter is untrusted; the Host header is the client's to choose.
"""

import contextlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import load_settings
from newsletter.errors import ConfigError
from newsletter.store import Store
from newsletter.tokens import FORM, PREFERENCES, UNSUBSCRIBE, Tokens
from tests.conftest import REPO, free_port
from tests.test_web import ONE_CLICK, TOKENS, add, post, signup, status, wait_outbox
from tests.test_web_browser import POST


def snapshot(site: Path) -> tuple[Any, ...]:
    """Everything a request could change: every subscriber field, every signup record."""
    settings = load_settings(site / "newsletter.toml")
    with Store(settings.store_location) as store:
        people = tuple(store.subscribers())
        try:
            signups = tuple(tuple(row) for row in store.db.execute("SELECT * FROM signups"))
        except sqlite3.OperationalError:  # a store without signup records
            signups = ()
    return people, signups


def links_of(message: Any, base: str) -> set[str]:
    """Every link to our server in a message: text part, HTML hrefs, List-Unsubscribe."""
    found: set[str] = set()
    for kind in ("plain", "html"):
        part = message.get_body((kind,))
        if part is not None:
            found |= set(re.findall(rf"{re.escape(base)}/[^\s\"'<>]+", part.get_content()))
    found |= set(re.findall(r"<(http[^>]+)>", str(message.get("List-Unsubscribe", ""))))
    return {link.replace("&amp;", "&") for link in found if link.startswith(base)}


def test_scanners_change_nothing(web_site: Any, web_server: str, write_post: Any) -> None:
    site, _ = web_site
    write_post("d.md", POST)
    add(site, "reader@example.com", name="Reader", categories="models")
    sent = subprocess.run([sys.executable, "-m", "newsletter", "send", "--week", "2025-W51",
                           "--yes"], cwd=site, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert signup(web_server, "pending@example.com", "Pat").status_code == 200
    messages = wait_outbox(site, 2)
    assert len(messages) == 2
    links = set().union(*(links_of(message, web_server) for message in messages))
    routes = {re.sub(r"/[^/]+$", "/", link.removeprefix(web_server)) for link in links}
    archive = {r for r in routes if r.startswith("/editions/")}  # public pages, no tokens
    assert routes - archive == {"/preferences/", "/unsubscribe/", "/confirm/"}, links
    pages = links | {f"{web_server}/", f"{web_server}/subscribe"}

    before = snapshot(site)
    for sequence in (["HEAD"], ["GET"], ["HEAD", "GET"], ["HEAD", "HEAD", "GET", "GET"]):
        for link in sorted(pages):
            for method in sequence:
                response = httpx.request(method, link)
                assert response.status_code == 200, (method, link)
    assert snapshot(site) == before
    assert status(site, "reader@example.com").status == "active"
    assert status(site, "pending@example.com").status == "pending"


def test_signup_from_the_front_page_in_a_browser(web_site: Any, web_server: str,
                                                 browser: Any) -> None:
    site, _ = web_site
    page = browser.new_page()
    page.goto(f"{web_server}/")  # the address `serve` prints
    page.fill("input[name=email]", "front@example.com")
    page.check("input[value=models]")
    page.get_by_role("button", name="订阅").click()
    page.wait_for_load_state()
    assert "请查收确认邮件" in page.content(), page.inner_text("main")
    page.close()
    assert status(site, "front@example.com").status == "pending"
    assert len(wait_outbox(site, 1)) == 1


def test_null_and_foreign_origins_are_refused(web_site: Any, web_server: str) -> None:
    site, _ = web_site
    form = {"form_token": TOKENS.make(FORM, 0), "email": "victim@example.com"}
    for headers in ({"origin": "null"}, {"origin": "https://evil.example"}, {},
                    {"origin": "null", "sec-fetch-site": "cross-site"},
                    {"origin": web_server, "sec-fetch-site": "cross-site"}):
        response = httpx.post(f"{web_server}/subscribe", data=form, headers=headers)
        assert response.status_code == 400, headers
    assert status(site, "victim@example.com") is None
    assert post(f"{web_server}/subscribe", data=form).status_code == 200


def test_one_click_post_with_any_origin(web_site: Any, web_server: str) -> None:
    site, _ = web_site
    sid = add(site, "a@example.com")
    url = f"{web_server}/unsubscribe/{TOKENS.make(UNSUBSCRIBE, sid)}"
    response = httpx.post(url, content=b"List-Unsubscribe=One-Click", headers={
        **ONE_CLICK, "origin": "https://mail.provider.example", "sec-fetch-site": "cross-site"})
    assert response.status_code == 200
    assert status(site, "a@example.com").status == "unsubscribed"


def test_front_matter_urls_never_reach_an_href_unless_http(site: Path, write_post: Any
                                                          ) -> None:
    config = site / "newsletter.toml"  # a small budget: the email lists the digests' links
    config.write_text(config.read_text(encoding="utf-8").replace(
        "[newsletter]\n", "[newsletter]\nmax_html_bytes = 12000\n"), encoding="utf-8")
    urls = ["javascript:alert(1)", "//evil.example/x", "data:text/html,hi", " JaVaScRiPt:x",
            "/posts/fine/"]
    for n, url in enumerate(urls):
        items = "".join(f"{i}. [Story {n}-{i} model - Lab](https://news.example/{n}/{i})\n\n"
                        f"   {'Text. ' * 40}\n\n" for i in range(1, 9))
        write_post(f"p{n}.md", f'---\ndate: 2025-12-16T1{n}:00:00+08:00\nurl: "{url}"\n'
                   f'categories: ["技术进展"]\n---\n\n{items}')
    add(site, "reader@example.com")
    done = CliRunner().invoke(cli, ["preview", "--week", "2025-W51", "--out", "pv"])
    assert done.exit_code == 0, done.output
    html = "\n".join(p.read_text(encoding="utf-8") for p in Path("pv").glob("*.html")
                     if p.name != "index.html")  # the preview's own page links locally
    hrefs = [h for h in re.findall(r'href="([^"]*)"', html)
             if not h.startswith("#") and h != "demo-link.html"]  # anchors, the demo page
    assert all(h.startswith(("http://", "https://")) for h in hrefs), hrefs
    listed = CliRunner().invoke(cli, ["digests", "--week", "2025-W51", "--json"])
    urls = sorted(d["url"] for d in json.loads(listed.output)["digests"])
    assert urls == ["https://site.example/posts/fine/"] + [
        f"https://site.example/posts/p{n}/" for n in range(4)], urls
    assert "evil.example" not in html and "avascript" not in html.lower()


def test_redirects_use_the_configured_address(web_site: Any, web_server: str) -> None:
    for path in ("/subscribe/", f"/preferences/{TOKENS.make(PREFERENCES, 1)}/"):
        response = httpx.get(f"{web_server}{path}", headers={"host": "evil.example"})
        assert response.status_code in (301, 307, 308), path
        assert response.headers["location"] == f"{web_server}{path.rstrip('/')}"


@contextlib.contextmanager
def serving(site: Path, secret: str) -> Iterator[str]:
    """Another real server for the site, with its own secret; yields its base URL."""
    import uvicorn

    from newsletter.web import server_config

    settings = load_settings(site / "newsletter.toml")
    port = int(settings.public_url.rsplit(":", 1)[1])
    server = uvicorn.Server(server_config(settings, secret, host="127.0.0.1", port=port,
                                          log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        yield settings.public_url
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def test_key_rotation_keeps_old_links_working(web_site: Any) -> None:
    site, _ = web_site
    sid = add(site, "a@example.com")
    old_link = Tokens("old-key").make(PREFERENCES, sid)
    with serving(site, "new-key, old-key") as base:
        page = httpx.get(f"{base}/preferences/{old_link}")
        assert page.status_code == 200
        fresh = re.search(r'/unsubscribe/([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        assert Tokens("new-key").read(UNSUBSCRIBE, fresh) == sid  # the new key signs
        assert Tokens("old-key").read(UNSUBSCRIBE, fresh) is None
        assert httpx.get(f"{base}/preferences/{Tokens('other').make(PREFERENCES, sid)}"
                         ).status_code == 400
    with serving(site, "new-key") as base:  # old key retired: its links end
        assert httpx.get(f"{base}/preferences/{old_link}").status_code == 400


def test_tokens_are_the_timestamp_signers_own() -> None:
    """`make` builds itsdangerous' token itself (it runs twice a message): the same bytes
    as the signer's `sign`, at any time, with any key list, and `read` takes it back."""
    tokens = Tokens("new-key, old-key")
    for purpose in (PREFERENCES, UNSUBSCRIBE, FORM):
        signer = tokens._signers[purpose]
        for sid in (0, 7, 123_456, 10**15):
            for now in (1, 255, 256, 65_536, 1_764_400_000, int(time.time())):
                signer.get_timestamp = lambda now=now: now  # type: ignore[method-assign]
                assert tokens.make(purpose, sid, now=now) == signer.sign(str(sid)).decode()
        assert tokens.read(purpose, tokens.make(purpose, 42)) == 42
        assert Tokens("old-key").read(purpose, tokens.make(purpose, 42)) is None


def test_plain_http_needs_allow_http(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = site / "newsletter.toml"
    config.write_text(config.read_text(encoding="utf-8") + '\n[web]\nurl = "http://x.example"\n',
                      encoding="utf-8")
    with pytest.raises(ConfigError, match=r"web\.url: must start with https://.*allow_http"):
        load_settings(config)
    result = CliRunner().invoke(cli, ["serve", "--port", str(free_port())])
    assert result.exit_code == 2 and "allow_http = true" in result.stderr
    config.write_text(config.read_text(encoding="utf-8") + "allow_http = true\n",
                      encoding="utf-8")
    assert load_settings(config).public_url == "http://x.example"
    started: list[str] = []  # (the server itself is not what this test is about)
    monkeypatch.setattr("newsletter.web.serve", lambda settings, *a, **k: started.append(
        settings.public_url))
    result = CliRunner().invoke(cli, ["serve", "--port", str(free_port())])
    assert result.exit_code == 0 and started == ["http://x.example"]
    assert "allow_http is on: plain http is for local testing only" in result.stderr
