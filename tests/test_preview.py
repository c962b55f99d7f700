import email
import email.policy
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import load_settings
from newsletter.preview import write_preview
from newsletter.window import resolve_window
from tests.conftest import EXAMPLES


@pytest.fixture
def example_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    shutil.copytree(EXAMPLES, site, ignore=shutil.ignore_patterns("preview", "outbox"))
    text = (site / "newsletter.toml").read_text(encoding="utf-8")
    (site / "newsletter.toml").write_text(
        text.replace("../subscribers/newsletter.db", "subscribers/test.db"), encoding="utf-8")
    monkeypatch.chdir(site)
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "k")
    return site


def test_preview_writes_every_variant(example_site: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["subscribers", "add", "a@example.com", "--categories",
                               "robotics"]).exit_code == 0
    done = runner.invoke(cli, ["preview", "--week", "2025-W51", "--out", "pv"])
    assert done.exit_code == 0, done.output
    for key in ("all", "robotics"):
        for suffix in ("html", "txt", "eml"):
            assert (example_site / "pv" / f"{key}.{suffix}").stat().st_size > 0
    index = (example_site / "pv" / "index.html").read_text(encoding="utf-8")
    assert "robotics.eml" in index and "stories" in index and "bytes" in index
    message = email.message_from_bytes((example_site / "pv" / "robotics.eml").read_bytes(),
                                       policy=email.policy.default)
    assert message["Subject"] == "AI 周报 第1期 · 12月15日–21日"
    assert message.get_body(("plain",)) is not None


def test_preview_for_one_subscriber_and_empty_variant(example_site: Path) -> None:
    runner = CliRunner()
    runner.invoke(cli, ["subscribers", "add", "b@example.com", "--name", "Bea",
                        "--categories", "opinion"])
    done = runner.invoke(cli, ["preview", "--week", "2025-W51", "--subscriber",
                               "B@Example.com", "--out", "pv"])
    assert done.exit_code == 0, done.output
    assert "opinion:" in done.output
    assert "Bea，你好" in (example_site / "pv" / "opinion.txt").read_text(encoding="utf-8")
    empty = runner.invoke(cli, ["preview", "--week", "2024-W01", "--categories", "robotics"])
    assert "robotics: no stories in this window" in empty.output
    both = runner.invoke(cli, ["preview", "--categories", "x", "--subscriber", "y"])
    assert both.exit_code == 2


@pytest.mark.browser
def test_preview_in_chromium_phone_and_desktop(example_site: Path, browser: Any,
                                               static_server: Any) -> None:
    settings = load_settings(example_site / "newsletter.toml")
    window = resolve_window(tz=settings.timezone, week="2025-W51")
    out = example_site / "pv"
    report = write_preview(settings, window, out, categories="")
    report_rob = write_preview(settings, window, out, categories="robotics")
    base = static_server(out)
    for variant, plan_stories in [
        (report.variants[0], report.edition.plan().stories),
        (report_rob.variants[0], report_rob.edition.plan(["robotics"]).stories),
    ]:
        expected = {s.url for s in plan_stories if s.url}
        for width in (375, 600):
            page = browser.new_page(viewport={"width": width, "height": 800})
            page.goto(f"{base}/{variant.key}.html")
            scroll = page.evaluate("document.documentElement.scrollWidth")
            assert scroll <= width, f"{variant.key} overflows at {width}px: {scroll}"
            hrefs = set(page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"))
            missing = {u for u in expected if u not in hrefs and
                       re.sub(r"/$", "", u) not in {h.rstrip("/") for h in hrefs}}
            assert not missing, missing
            page.close()
    index = browser.new_page()
    index.goto(f"{base}/index.html")
    assert index.locator("iframe").count() >= 3
    index.close()


def test_preview_server_rerenders_when_a_digest_changes(example_site: Path,
                                                        static_server: Any) -> None:
    import threading
    import time
    import urllib.request

    from newsletter.preview import serve_preview
    from tests.conftest import free_port

    settings = load_settings(example_site / "newsletter.toml")
    window = resolve_window(tz=settings.timezone, week="2025-W51")
    out = example_site / "pv"

    def build() -> Any:
        return write_preview(settings, window, out, categories="")

    build()
    port = free_port()
    stop = threading.Event()
    builds: list[Any] = []
    thread = threading.Thread(target=serve_preview, args=(settings, build, out),
                              kwargs={"port": port, "on_build": builds.append, "stop": stop},
                              daemon=True)
    thread.start()
    try:
        time.sleep(1.2)
        post = example_site / "content" / "2025-12-15-08.md"
        post.write_text(post.read_text(encoding="utf-8").replace(
            "DeepSeek 发布 V3.2", "DeepSeek 发布 V9.9"), encoding="utf-8")
        deadline = time.monotonic() + 20
        while not builds and time.monotonic() < deadline:
            time.sleep(0.1)
        assert builds, "no re-render after the digest changed"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/all.html", timeout=10) as page:
            assert "DeepSeek 发布 V9.9" in page.read().decode("utf-8")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/version.txt", timeout=10) as v:
            assert v.read() == b"1"
    finally:
        stop.set()
        thread.join(timeout=10)
