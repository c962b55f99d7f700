"""The web archive: pages and feed served by `newsletter serve`, and `newsletter archive`."""

import email
import email.policy
import shutil
from pathlib import Path

import feedparser
import httpx
import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from tests.conftest import EXAMPLES

ADDRESS = "reader-private@example.org"


def send_week(site: Path) -> None:
    shutil.copytree(EXAMPLES / "content", site / "content", dirs_exist_ok=True)
    (site / "editions").mkdir(exist_ok=True)
    (site / "editions" / "2025-W51.md").write_text("A note **from the editor**.", "utf-8")
    runner = CliRunner()
    for args in (["subscribers", "add", ADDRESS, "--name", "Private Person",
                  "--categories", "robots"],
                 ["subscribers", "add", "second@example.org"],
                 ["send", "--week", "2025-W51", "--yes"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output


@pytest.fixture
def sent_site(web_site: tuple[Path, str]) -> tuple[Path, str]:
    send_week(web_site[0])
    return web_site


def test_archive_pages_and_feed(sent_site: tuple[Path, str], web_server: str) -> None:
    site, url = sent_site
    with httpx.Client(base_url=web_server, timeout=10) as client:
        index = client.get("/editions/")
        assert index.status_code == 200 and 'href="1/"' in index.text
        edition = client.get("/editions/1/")
        assert edition.status_code == 200
        assert "<strong>from the editor</strong>" in edition.text
        assert 'id="digests"' in edition.text and "https://site.example/posts/" \
            in edition.text
        assert 'href="all/"' in edition.text and 'href="robots/"' in edition.text
        for key in ("all", "robots"):
            page = client.get(f"/editions/1/{key}/")
            assert page.status_code == 200 and "<h1" in page.text
            for private in (ADDRESS, "Private Person", "/preferences/", "/unsubscribe/",
                            "nlslot"):
                assert private not in page.text
            assert f"{url}/subscribe" in page.text
        # the email's web-version and digests links lead to these pages
        raw = next((site / "outbox" / "new").iterdir()).read_bytes()
        mail = email.message_from_bytes(raw, policy=email.policy.default)
        html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
        assert f'href="{url}/editions/1/' in html
        assert client.get("/editions/1/models/").status_code == 404  # nobody got that set
        assert client.get("/editions/9/").status_code == 404
        assert client.get("/editions/1/nosuch/").status_code == 404
        feed = client.get("/editions/feed.xml")
        assert feed.headers["content-type"].startswith("application/atom+xml")
    parsed = feedparser.parse(feed.text)
    assert not parsed.bozo, parsed.bozo_exception
    assert parsed.feed.title == "Test Weekly"
    assert [e.link for e in parsed.entries] == [f"{url}/editions/1/"]


def test_archive_command_writes_static_files(site: Path) -> None:
    send_week(site)
    result = CliRunner().invoke(cli, ["archive", "--out", "public"])
    assert result.exit_code == 0, result.output
    assert "wrote 1 editions" in result.output
    root = site / "public" / "editions"
    assert (root / "index.html").is_file() and (root / "1" / "index.html").is_file()
    assert (root / "1" / "all" / "index.html").is_file()
    assert (root / "1" / "robots" / "index.html").is_file()
    assert not feedparser.parse((root / "feed.xml").read_text("utf-8")).bozo
    assert ADDRESS not in (root / "1" / "robots" / "index.html").read_text("utf-8")
