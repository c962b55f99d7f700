"""EHLO name, Feedback-ID and VERP envelope senders, seen by a real SMTP server."""

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from newsletter.config import SmtpSettings, load_settings
from newsletter.errors import ConfigError
from newsletter.tokens import Tokens
from newsletter.transport import helo_name
from newsletter.verp import Verp
from newsletter.window import Window, resolve_window
from tests.conftest import WritePost, smtp_settings
from tests.test_send import POST, add, deliver, parsed


@pytest.fixture
def week(write_post: WritePost) -> Window:
    for n in range(5, 8):
        write_post(f"d{n}.md", POST.replace("{n}", str(n)))
    return resolve_window(tz=__import__("zoneinfo").ZoneInfo("Asia/Shanghai"), week="2025-W51")


def with_config(site: Path, text: str) -> Any:
    config = site / "newsletter.toml"
    config.write_text(config.read_text(encoding="utf-8") + text, encoding="utf-8")
    return load_settings(config)


def test_ehlo_name_is_never_localhost_unless_configured(site: Path, week: Any,
                                                        smtp_server: Any) -> None:
    handler, port = smtp_server
    settings = smtp_settings(load_settings(site / "newsletter.toml"), port)
    add(settings, ("a@example.com", "", ""), ("b@example.com", "", ""))
    deliver(settings, week)
    names = {helo for helo, _, _ in handler.envelopes}
    assert names == {helo_name(settings)} and len(handler.envelopes) == 2
    assert "localhost" not in names.pop()
    # the fallback when the host has no real name: the From domain
    for fqdn in ("localhost", "vm", "localhost.localdomain", "127.0.0.1", ""):
        assert helo_name(settings, fqdn) == "example.com"
    assert helo_name(settings, "mail.news.example.org.") == "mail.news.example.org"


def test_ehlo_name_configured(site: Path, week: Any, smtp_server: Any) -> None:
    handler, port = smtp_server
    settings = smtp_settings(load_settings(site / "newsletter.toml"), port)
    assert settings.smtp is not None
    settings = dataclasses.replace(
        settings, smtp=dataclasses.replace(settings.smtp, helo="out1.mail.example.net"))
    add(settings, ("a@example.com", "", ""))
    deliver(settings, week)
    assert [helo for helo, _, _ in handler.envelopes] == ["out1.mail.example.net"]
    assert SmtpSettings(host="x").helo == ""


def test_bad_helo_and_bounce_address_name_the_key(site: Path) -> None:
    with pytest.raises(ConfigError, match=r"smtp\.helo: must be a host name"):
        with_config(site, '[smtp]\nhost = "h"\nhelo = "bad name"\n')


def test_bounce_address_with_plus_is_refused(site: Path) -> None:
    config = site / "newsletter.toml"
    config.write_text(config.read_text(encoding="utf-8").replace(
        'from = "weekly@example.com"',
        'from = "weekly@example.com"\nbounce_address = "b+x@example.com"'), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"newsletter\.bounce_address: must be a plain"):
        load_settings(config)


def test_feedback_id_and_verp_envelope(site: Path, week: Any, smtp_server: Any) -> None:
    handler, port = smtp_server
    config = site / "newsletter.toml"
    config.write_text(config.read_text(encoding="utf-8").replace(
        'from = "weekly@example.com"',
        'from = "weekly@example.com"\nbounce_address = "bounces@mail.example.com"\n'
        'feedback_id = "weekly:list:site"'), encoding="utf-8")
    settings = smtp_settings(load_settings(config), port)
    assert settings.verp
    add(settings, ("a@example.com", "", ""), ("b@example.com", "", ""))
    deliver(settings, week)
    verp = Verp(Tokens("test-secret-key").derive("bounce"))
    seen = set()
    for (_, mail_from, _), (_, raw) in zip(handler.envelopes, handler.messages, strict=True):
        local, _, domain = mail_from.rpartition("@")
        assert domain == "mail.example.com" and local.startswith("bounces+")
        assert len(local) <= 64
        match = verp.read(mail_from)
        assert match is not None and match.valid
        seen.add(match.subscriber_id)
        msg = parsed(raw)
        assert msg["From"] == "Test Weekly <weekly@example.com>"  # From stays as configured
        assert msg["Feedback-ID"] == "weekly:list:site"
    assert len(seen) == 2


def test_verp_tokens_are_signed_and_case_insensitive() -> None:
    verp = Verp(b"k" * 32)
    token = verp.token(7, 123456)
    address = f"bounces+{token}@example.com"
    match = verp.read(address.upper())
    assert match is not None and (match.edition_id, match.subscriber_id, match.valid) == (
        7, 123456, True)
    forged = address.replace(token.split("-")[1], "3e7", 1)  # another subscriber, same MAC
    bad = verp.read(forged)
    assert bad is not None and not bad.valid
    other = Verp(b"x" * 32).read(address)
    assert other is not None and not other.valid
    assert verp.read("bounces@example.com") is None


def test_no_bounce_address_means_from_without_verp(settings: Any, week: Any,
                                                   smtp_server: Any) -> None:
    handler, port = smtp_server
    settings = smtp_settings(settings, port)
    assert not settings.verp
    add(settings, ("a@example.com", "", ""))
    deliver(settings, week)
    assert [m for _, m, _ in handler.envelopes] == ["weekly@example.com"]
    assert b"Feedback-ID" not in handler.messages[0][1]
