"""Signup refuses an address the sender could not deliver, saying why in one line."""

from typing import Any

from newsletter.tokens import FORM, Tokens
from tests.test_web import post


def test_signup_refuses_non_ascii_local_part_with_a_reason(web_site: Any,
                                                           web_server: str) -> None:
    token = Tokens("test-secret-key").make(FORM, 0)
    utf8 = post(f"{web_server}/subscribe", data={"form_token": token,
                                                "email": "用户@example.com"})
    assert utf8.status_code == 422
    assert "Addresses with non-ASCII characters before the @ are not supported" in utf8.text \
        or "暂不支持 @ 前含有非 ASCII 字符的邮箱地址" in utf8.text
    special = post(f"{web_server}/subscribe", data={"form_token": token,
                                                   "email": "a@box.test"})
    assert special.status_code == 422
    assert "cannot be used" in special.text or "不能用于订阅" in special.text
