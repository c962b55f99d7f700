"""Shared fixtures: a site folder with a config, written fresh for each test."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from newsletter.config import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"

CONFIG = """
[newsletter]
name = "Test Weekly"
from = "weekly@example.com"
from_name = "Test Weekly"
base_url = "https://site.example"
timezone = "Asia/Shanghai"
language = "zh-CN"
postal_address = "1 Test Road, Shanghai"

[content]
dir = "content"

[store]
path = "subscribers/test.db"

[outbox]
dir = "outbox"

[send]
retry_delay = 0.01

[[categories]]
name = "models"
label = "模型"
aliases = ["技术进展", "AI发展"]
keywords = ["模型", "model"]

[[categories]]
name = "robots"
label = "机器人"
aliases = ["Robotics", "机器人"]
keywords = ["机器人", "robot"]

[[categories]]
name = "apps"
label = "应用"
aliases = ["应用场景", "AI 资讯", "AI News"]
keywords = ["App", "应用"]
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty site: config + content folder; the cwd is the site."""
    (tmp_path / "content").mkdir()
    (tmp_path / "newsletter.toml").write_text(CONFIG, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "test-secret-key")
    return tmp_path


@pytest.fixture
def settings(site: Path) -> Settings:
    return load_settings(site / "newsletter.toml")


WritePost = Callable[..., Path]


@pytest.fixture
def write_post(site: Path) -> WritePost:
    def write(name: str, text: str | bytes) -> Path:
        path = site / "content" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def browser():  # type: ignore[no-untyped-def]
    """A real headless Chromium. Missing browser: skip locally, fail when CI requires it."""
    import os

    if not Path(CHROMIUM).exists():
        if os.environ.get("NEWSLETTER_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} not found but NEWSLETTER_REQUIRE_BROWSER=1")
        pytest.skip(f"{CHROMIUM} not installed (CI sets NEWSLETTER_REQUIRE_BROWSER=1)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def static_server():  # type: ignore[no-untyped-def]
    """Serve a folder on 127.0.0.1 (ephemeral port); yields a function folder -> base URL."""
    import functools
    import http.server
    import threading

    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *a: None  # type: ignore[attr-defined]
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
