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


@pytest.fixture(scope="session")
def pg_cluster():  # type: ignore[no-untyped-def]
    """The session's throwaway PostgreSQL (tests/pg.py), started on first use."""
    from tests.pg import start_cluster

    yield from start_cluster()


@pytest.fixture
def store_backend() -> str:
    """Where the site's store is; a module importing `tests.pg.both_backends` runs its
    tests on "sqlite" and "postgresql"."""
    return "sqlite"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_backend: str,
         request: pytest.FixtureRequest) -> Path:
    """An empty site: config + content folder; the cwd is the site. On PostgreSQL its
    `[store] url` names a fresh database and PGPASSWORD holds the password."""
    (tmp_path / "content").mkdir()
    config = CONFIG
    if store_backend == "postgresql":
        cluster = request.getfixturevalue("pg_cluster")
        url = cluster.new_database()
        request.addfinalizer(lambda: cluster.drop(url))
        config = config.replace('path = "subscribers/test.db"', f'url = "{url}"')
        monkeypatch.setenv("PGPASSWORD", cluster.password)
    (tmp_path / "newsletter.toml").write_text(config, encoding="utf-8")
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


@pytest.fixture
def browser():  # type: ignore[no-untyped-def]
    """A real headless Chromium. Missing browser: skip locally, fail when CI requires it.
    Per test: Playwright's sync API holds an event loop while it runs, and other tests
    need `asyncio.run()`."""
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


# ---------------------------------------------------------------- a real SMTP server

class FaultyHandler:
    """aiosmtpd handler that records messages and injects the faults a test asks for."""

    def __init__(self) -> None:
        import collections

        self.messages: list[tuple[str, bytes]] = []  # (recipient, raw message)
        self.envelopes: list[tuple[str, str, str]] = []  # (EHLO name, MAIL FROM, recipient)
        self.refuse: dict[str, str] = {}  # recipient -> permanent reply
        self.busy: collections.Counter[str] = collections.Counter()  # recipient -> 451 count
        self.mail_faults: list[str] = []  # replies to the next MAIL commands
        self.data_faults: list[str] = []  # replies to the next DATA commands
        self.drops = 0  # connections to drop at the next DATA (nothing stored)
        self.stalls = 0  # DATA replies to delay beyond the client's timeout (nothing stored)
        self.stall_seconds = 3.0
        self.delay = 0.0  # seconds before every accepted message's reply

    async def handle_MAIL(self, server, session, envelope, address, options):  # type: ignore[no-untyped-def]
        if self.mail_faults:
            return self.mail_faults.pop(0)
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, options):  # type: ignore[no-untyped-def]
        if address in self.refuse:
            return self.refuse[address]
        if self.busy[address] > 0:
            self.busy[address] -= 1
            return "451 4.2.0 mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        import asyncio

        if self.data_faults:
            return self.data_faults.pop(0)
        if self.drops > 0:
            self.drops -= 1
            server.transport.close()
            return "250 never seen"
        if self.stalls > 0:
            self.stalls -= 1
            await asyncio.sleep(self.stall_seconds)
            return "451 4.4.2 too slow"
        if self.delay:
            await asyncio.sleep(self.delay)
        for rcpt in envelope.rcpt_tos:
            self.messages.append((rcpt, envelope.original_content))
            self.envelopes.append((session.host_name, envelope.mail_from, rcpt))
        return "250 2.0.0 queued"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _smtp_server(**options: object):  # type: ignore[no-untyped-def]
    from aiosmtpd.controller import Controller

    handler = FaultyHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, decode_data=False,
                            ready_timeout=10, **options)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture
def smtp_server():  # type: ignore[no-untyped-def]
    """A real aiosmtpd server on an ephemeral loopback port; yields (handler, port)."""
    yield from _smtp_server()


@pytest.fixture
def smtp_ascii_server():  # type: ignore[no-untyped-def]
    """The same, without SMTPUTF8 (aiosmtpd's controller offers it by default)."""
    yield from _smtp_server(enable_SMTPUTF8=False)


def smtp_settings(settings: Settings, port: int, **send: object) -> Settings:
    """The test site's settings delivering to the loopback server."""
    import dataclasses

    from newsletter.config import SendSettings, SmtpSettings

    options = {"concurrency": 3, "retry_delay": 0.01, "max_attempts": 4, **send}
    return dataclasses.replace(
        settings, smtp=SmtpSettings(host="127.0.0.1", port=port, tls="none", timeout=1.0),
        send=SendSettings(**options))  # type: ignore[arg-type]


@pytest.fixture
def web_site(site: Path) -> tuple[Path, str]:
    """The test site with `[web] url` set to a free loopback port (server not started)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = site / "newsletter.toml"
    config.write_text(config.read_text(encoding="utf-8") + f'\n[web]\nurl = "{url}"\n'
                      'allow_http = true\n', encoding="utf-8")
    return site, url


@pytest.fixture
def web_server(web_site: tuple[Path, str]):  # type: ignore[no-untyped-def]
    """`newsletter serve`'s app under a real uvicorn on loopback; yields its base URL."""
    import threading
    import time

    import uvicorn

    from newsletter.web import server_config

    site, url = web_site
    settings = load_settings(site / "newsletter.toml")
    port = int(url.rsplit(":", 1)[1])
    server = uvicorn.Server(server_config(settings, "test-secret-key", host="127.0.0.1",
                                          port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    yield url
    server.should_exit = True
    thread.join(timeout=15)
