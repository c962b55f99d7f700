"""DKIM: every message a real send delivers verifies with dkimpy (an independent
implementation), for RSA-2048 and Ed25519; a changed body or header does not."""

import re
import stat
from pathlib import Path
from typing import Any

import dkim
import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import load_settings
from newsletter.dkim import generate_key, relaxed_body
from newsletter.window import Window, resolve_window
from tests.conftest import WritePost, smtp_settings
from tests.test_send import POST, add, deliver


@pytest.fixture
def week(write_post: WritePost) -> Window:
    for n in range(5, 8):
        write_post(f"d{n}.md", POST.replace("{n}", str(n)))
    return resolve_window(tz=__import__("zoneinfo").ZoneInfo("Asia/Shanghai"), week="2025-W51")


def dkim_site(site: Path, kind: str, *, in_env: bool = False,
              monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[Any, str]:
    pem, record = generate_key(kind)
    config = site / "newsletter.toml"
    text = config.read_text(encoding="utf-8").replace(
        'from = "weekly@example.com"',
        'from = "weekly@example.com"\nreply_to = "Editors <ed@example.com>"\n'
        'feedback_id = "w:list:site"')
    text += '\n[dkim]\ndomain = "example.com"\nselector = "sel1"\n'
    if in_env:
        assert monkeypatch is not None
        monkeypatch.setenv("NEWSLETTER_DKIM_KEY", pem.decode())
    else:
        (site / "dkim.pem").write_bytes(pem)
        text += 'key_file = "dkim.pem"\n'
    config.write_text(text, encoding="utf-8")
    return load_settings(config), record


def dns(record: str) -> Any:
    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return record.encode() if name == b"sel1._domainkey.example.com." else None
    return lookup


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_every_sent_message_verifies(site: Path, week: Any, smtp_server: Any, kind: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    handler, port = smtp_server
    settings, record = dkim_site(site, kind, in_env=kind == "ed25519", monkeypatch=monkeypatch)
    settings = smtp_settings(settings, port)
    add(settings, ("a@example.org", "林 微", ""), ("b@example.org", "B", "robots"),
        ("c@example.org", "", "models;apps"), ("d@例子.example", "Dee", ""))
    assert deliver(settings, week).sent == 4
    assert len(handler.messages) == 4
    lookup = dns(record)
    for _, raw in handler.messages:
        assert raw.startswith(b"DKIM-Signature: v=1; a=" + kind.encode() + b"-sha256;")
        assert dkim.verify(raw, dnsfunc=lookup), raw[:600]
        signed = re.search(rb"h=([^;]+);", raw)
        assert signed is not None
        names = signed.group(1).decode().split(":")
        for header in ("from", "to", "subject", "date", "message-id", "list-unsubscribe",
                       "list-unsubscribe-post", "list-id", "mime-version", "content-type",
                       "reply-to", "feedback-id"):
            assert header in names, header
        head, _, body = raw.partition(b"\r\n\r\n")
        tampered = head + b"\r\n\r\n" + body.replace(b"Content-Type: text/html",
                                                     b"Content-Type: text/htmL", 1)
        assert not dkim.verify(tampered, dnsfunc=lookup)
        assert not dkim.verify(raw.replace(b"Subject: ", b"Subject: Re: ", 1), dnsfunc=lookup)
        extra = raw.replace(b"\r\nFrom: ", b"\r\nFrom: Evil <e@evil.example>\r\nFrom: ", 1)
        assert not dkim.verify(extra, dnsfunc=lookup)  # over-signed: an added From breaks it
        wrong_key = dns(generate_key(kind)[1])
        assert not dkim.verify(raw, dnsfunc=wrong_key)


def test_relaxed_body() -> None:
    assert relaxed_body(b"a  b \t\r\nc\r\n\r\n\r\n") == b"a b\r\nc\r\n"
    assert relaxed_body(b"") == b"" and relaxed_body(b"\r\n\r\n") == b""
    assert relaxed_body(b"x") == b"x\r\n" and relaxed_body(b" y\r\n") == b" y\r\n"
    for body in (b"a  b \t\r\nc\r\n\r\n", b"x \t", b"x\r\n  ", b"\tq\r\n", b"",
                 b"a\r\n \r\n\r\n", b"z\r\n"):  # as dkimpy, the independent verifier
        assert relaxed_body(body) == dkim.RelaxedCanonicalization.canonicalize_body(body)


def test_missing_or_bad_key_is_a_config_error(site: Path, week: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    config = site / "newsletter.toml"
    config.write_text(config.read_text(encoding="utf-8")
                      + '\n[dkim]\ndomain = "example.com"\nselector = "s"\n', encoding="utf-8")
    monkeypatch.delenv("NEWSLETTER_DKIM_KEY", raising=False)
    add(load_settings(config), ("a@example.org", "", ""))
    runner = CliRunner()
    result = runner.invoke(cli, ["send", "--week", "2025-W51", "--yes"])
    assert result.exit_code == 2 and "NEWSLETTER_DKIM_KEY" in result.output, result.output
    monkeypatch.setenv("NEWSLETTER_DKIM_KEY", "not a key")
    result = runner.invoke(cli, ["send", "--week", "2025-W51", "--yes"])
    assert result.exit_code == 2 and "not an unencrypted PEM private key" in result.output
    config.write_text(config.read_text(encoding="utf-8") + 'key = "x"\n', encoding="utf-8")
    result = runner.invoke(cli, ["send", "--week", "2025-W51", "--yes"])
    assert result.exit_code == 2 and "dkim.key: secrets never go in the file" in result.output


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_dkim_key_command(site: Path, kind: str) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["dkim-key", "--type", kind, "--selector", "s2026",
                                 "--out", "k.pem"])
    assert result.exit_code == 0, result.output
    key = site / "k.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "Publish this TXT record at s2026._domainkey.example.com:" in result.output
    record = re.search(r"  (v=DKIM1; k=\w+; p=\S+)\n", result.output)
    assert record and f"k={kind}" in record.group(1)
    zone = re.search(r'IN TXT \( (.+) \)', result.output)
    assert zone and all(len(s) <= 255 for s in re.findall(r'"([^"]*)"', zone.group(1)))
    assert "".join(re.findall(r'"([^"]*)"', zone.group(1))) == record.group(1)
    again = runner.invoke(cli, ["dkim-key", "--out", "k.pem"])
    assert again.exit_code == 2 and "already exists" in again.output


def test_signing_helper_process_and_its_fallback() -> None:
    import asyncio

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    from newsletter import dkim_pool
    from newsletter.dkim import Signer
    from newsletter.transport import TransientFailure

    key = serialization.load_pem_private_key(generate_key("rsa")[0], password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    signer = Signer("example.com", "s", key)
    data = [b"message %d" % n for n in range(25)]

    async def sign_all() -> list[bytes]:
        return await asyncio.gather(*(dkim_pool.sign_elsewhere(signer, d) for d in data))

    for _ in range(2):  # a second event loop reuses the helper
        for d, signature in zip(data, asyncio.run(sign_all()), strict=True):
            key.public_key().verify(signature, d, padding.PKCS1v15(), hashes.SHA256())
    helper = dkim_pool._processes[id(signer)]
    assert helper.process.is_alive() and helper.process.pid != __import__("os").getpid()
    helper.process.kill()
    helper.process.join(10)

    async def after_death() -> bytes:
        try:
            return await dkim_pool.sign_elsewhere(signer, b"late")
        except TransientFailure:  # the message it held is retried by the sender
            return await dkim_pool.sign_elsewhere(signer, b"late")

    signature = asyncio.run(after_death())
    key.public_key().verify(signature, b"late", padding.PKCS1v15(), hashes.SHA256())
    assert helper.broken
