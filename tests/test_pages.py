"""The wording and states of the pages: managed address, unsubscribed state, signup flow."""

import re
from typing import Any

import httpx

from newsletter.tokens import FORM, PREFERENCES
from tests.test_web import TOKENS, add, post, status, wait_outbox


def test_unsubscribed_preference_page_offers_resubscribe(web_site: Any,
                                                         web_server: str) -> None:
    site, _ = web_site
    sid = add(site, "gone@example.com", categories="models", status="unsubscribed")
    url = f"{web_server}/preferences/{TOKENS.make(PREFERENCES, sid)}"
    page = httpx.get(url)
    assert "gone@example.com" in page.text
    assert "你目前处于退订状态" in page.text
    action = re.search(r'<form method="post" action="([^"]+/resubscribe/[^"]+)">', page.text)
    assert action is not None and "重新订阅" in page.text
    assert "退订全部邮件" not in page.text  # no unsubscribe offer to someone unsubscribed
    # "save" does not pretend: it says the reader is still unsubscribed
    saved = post(url, data={"form_token": TOKENS.make(FORM, sid), "name": "",
                                  "categories": ["robots"]})
    assert "已保存，但你仍处于退订状态。" in saved.text
    assert status(site, "gone@example.com").status == "unsubscribed"
    back = post(action.group(1))
    assert back.status_code == 200 and status(site, "gone@example.com").status == "active"
    again = httpx.get(url)
    assert "你目前处于退订状态" not in again.text and "退订全部邮件" in again.text


def test_signup_confirm_wording_and_html_confirmation(web_site: Any, web_server: str) -> None:
    site, _ = web_site
    form = httpx.get(f"{web_server}/subscribe")
    assert "我们会给你发一封确认邮件" in form.text
    assert "全选或都不选，都表示接收所有栏目" in form.text
    token = re.search(r'name="form_token" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    sent = post(f"{web_server}/subscribe", data={"form_token": token,
                                                 "email": "new@example.com"})
    assert "new@example.com" in sent.text and "垃圾邮件" in sent.text
    (message,) = wait_outbox(site, 1)
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    plain = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    link = re.search(r"http://127\.0\.0\.1:\d+/confirm/\S+", plain).group(0)  # type: ignore[union-attr]
    assert f'href="{link}"' in html and "确认订阅" in html and 'lang="zh-CN"' in html
    page = httpx.get(link)
    assert "确认这个邮箱要订阅「Test Weekly」" in page.text
    assert "new@example.com" in page.text and "不让别人用你的邮箱订阅" in page.text
    done = post(link)
    assert "订阅成功" in done.text and status(site, "new@example.com").status == "active"


def test_preview_index_and_demo_links(site: Any) -> None:
    import shutil

    from click.testing import CliRunner

    from newsletter.cli import cli
    from tests.conftest import EXAMPLES

    shutil.copytree(EXAMPLES / "content", site / "content", dirs_exist_ok=True)
    result = CliRunner().invoke(cli, ["preview", "--week", "2025-W51", "--out", "pv"])
    assert result.exit_code == 0, result.output
    index = (site / "pv" / "index.html").read_text("utf-8")
    assert "<html lang='zh-CN'>" in index and "name='viewport'" in index
    assert "2025年12月15日–21日" in index and "flex-wrap:wrap" in index
    page = (site / "pv" / "all.html").read_text("utf-8")
    assert 'href="demo-link.html"' in page and "/preferences/" not in page
    assert "nothing changes" in (site / "pv" / "demo-link.html").read_text("utf-8")
