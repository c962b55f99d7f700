"""A person in a real Chromium: preferences from a delivered email, and signup."""

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from tests.conftest import REPO
from tests.test_web import add, outbox, status, wait_outbox

POST = """---
date: 2025-12-16T10:00:00+08:00
categories: ["技术进展", "机器人"]
---

1. [新模型 model - Lab](https://news.example/model/1)

   A model story.

2. [机器人 robot - Robo](https://news.example/robot/1)

   A robot story.
"""

pytestmark = pytest.mark.browser


def test_untick_a_category_from_a_delivered_email(web_site: Any, web_server: str,
                                                  browser: Any, write_post: Any) -> None:
    site, _ = web_site
    write_post("d.md", POST)
    add(site, "reader@example.com", name="Reader")
    sent = subprocess.run([sys.executable, "-m", "newsletter", "send", "--week", "2025-W51",
                           "--yes"], cwd=site, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert sent.returncode == 0, sent.stdout + sent.stderr
    (message,) = outbox(site)
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    link = re.search(rf"{re.escape(web_server)}/preferences/\S+", text).group(0)  # type: ignore[union-attr]

    page = browser.new_page(viewport={"width": 375, "height": 800})
    page.goto(link)
    assert page.locator("input[value=robots]").is_checked()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.locator("input[value=robots]").uncheck()
    page.get_by_role("button", name="保存").click()
    page.wait_for_load_state()
    assert "取消: 机器人" in page.locator("[role=status]").inner_text()
    page.close()
    assert status(site, "reader@example.com").categories == ("apps", "models")

    done = CliRunner().invoke(cli, ["preview", "--week", "2025-W51", "--subscriber",
                               "reader@example.com", "--out", "pv"])
    assert done.exit_code == 0, done.output
    (html_file,) = Path("pv").glob("apps+models.html")
    html = html_file.read_text(encoding="utf-8")
    assert "news.example/model/1" in html and "news.example/robot/1" not in html


def test_signup_then_confirm_in_the_browser(web_site: Any, web_server: str,
                                            browser: Any) -> None:
    site, _ = web_site
    page = browser.new_page()
    page.goto(f"{web_server}/subscribe")
    page.fill("input[name=email]", "new.reader@example.com")
    page.fill("input[name=name]", "New Reader")
    page.check("input[value=robots]")
    page.get_by_role("button", name="订阅").click()
    page.wait_for_load_state()
    assert "请查收确认邮件" in page.content(), page.inner_text("main")
    assert status(site, "new.reader@example.com").status == "pending"

    (message,) = wait_outbox(site, 1)  # sent just after the answer
    body = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    link = re.search(rf"{re.escape(web_server)}/confirm/\S+", body).group(0)  # type: ignore[union-attr]
    page.goto(link)
    assert status(site, "new.reader@example.com").status == "pending"
    page.get_by_role("button", name="确认").click()
    page.wait_for_load_state()
    assert "订阅成功" in page.content()
    page.close()
    found = status(site, "new.reader@example.com")
    assert (found.status, found.categories, found.name) == ("active", ("robots",), "New Reader")
