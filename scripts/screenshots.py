"""README pictures: the example email on a phone and a desktop, light and dark, and the
preference page, taken in a real headless Chromium (Debian's `chromium`, through
Playwright) so they stay current with the templates.

    apt-get install chromium fonts-noto-cjk    # the example is in Chinese
    python scripts/screenshots.py              # writes docs/*.png

It builds a throwaway site from `examples/` in a temporary folder, sends the example week
into its Maildir outbox, and serves its preference center on a free loopback port; nothing
outside the temporary folder and `docs/` is touched.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PHONE = {"width": 375, "height": 1100}
DESKTOP = {"width": 1024, "height": 900}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_site(folder: Path, port: int) -> Path:
    """The example site with one subscriber per variant and the week sent to its outbox."""
    shutil.copytree(REPO / "examples", folder, dirs_exist_ok=True)
    config = folder / "newsletter.toml"
    text = config.read_text(encoding="utf-8").replace(
        'path = "../subscribers/newsletter.db"', 'path = "subscribers/newsletter.db"')
    config.write_text(text + f'\n[web]\nurl = "http://127.0.0.1:{port}"\n', encoding="utf-8")
    (folder / "editions").mkdir(exist_ok=True)
    (folder / "editions" / "2025-W51.md").write_text(
        "本周开源模型密集发布，**机器人**也进了工厂。下周一起看看年终盘点。\n", encoding="utf-8")
    env_run = [sys.executable, "-m", "newsletter"]
    for args in (["subscribers", "add", "ada@example.com", "--name", "Ada",
                  "--categories", "models,opinion"],
                 ["send", "--week", "2025-W51", "--yes"]):
        subprocess.run(env_run + args, cwd=folder, check=True, capture_output=True,
                       env={"PYTHONPATH": str(REPO), "NEWSLETTER_SECRET_KEY": "screenshots",
                            "PATH": "/usr/bin:/bin"})
    return folder


def delivered_html(site: Path) -> tuple[str, str]:
    """The HTML part of the delivered email and its preference link."""
    raw = next((site / "outbox" / "new").iterdir()).read_bytes()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    start = html.index("/preferences/")
    link = html[html.rindex('"', 0, start) + 1:html.index('"', start)]
    return html, link


def serve(site: Path, port: int) -> object:
    import uvicorn

    from newsletter.config import load_settings
    from newsletter.web import create_app

    settings = load_settings(site / "newsletter.toml")
    server = uvicorn.Server(uvicorn.Config(create_app(settings, "screenshots"),
                                           host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return server


def main() -> None:
    sys.path.insert(0, str(REPO))
    from playwright.sync_api import sync_playwright

    DOCS.mkdir(exist_ok=True)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        site = build_site(Path(tmp) / "site", port)
        html, preferences = delivered_html(site)
        server = serve(site, port)
        shots = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            for scheme in ("light", "dark"):
                for name, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
                    page = browser.new_page(viewport=viewport, color_scheme=scheme)
                    page.set_content(html, wait_until="load")
                    out = DOCS / f"email-{name}-{scheme}.png"
                    page.screenshot(path=str(out))
                    shots.append(out)
                    page.close()
                page = browser.new_page(viewport={"width": 375, "height": 900},
                                        color_scheme=scheme)
                page.goto(preferences)
                out = DOCS / f"preferences-phone-{scheme}.png"
                page.screenshot(path=str(out), full_page=True)
                shots.append(out)
                page.close()
            browser.close()
        server.should_exit = True  # type: ignore[attr-defined]
        time.sleep(0.3)
    for out in shots:
        print(f"{out.relative_to(REPO)}  {out.stat().st_size // 1024} KB")


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
