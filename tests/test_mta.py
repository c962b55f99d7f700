"""Real bounces from a real MTA: a throwaway Postfix on loopback accepts the send, delivers
known users and writes RFC 3464 DSNs for unknown ones to our VERP bounce address; then
`newsletter bounces` reads them from the Maildir, and through a real IMAP server
(Dovecot) over the same kind of mailbox."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dkim
import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.dkim import generate_key
from newsletter.store import Store
from newsletter.window import Window, resolve_window
from tests.conftest import WritePost
from tests.mta import BOUNCE_DOMAIN, SBIN_PATH, TEST_DOMAIN, Dovecot, Postfix, free_port
from tests.test_send import POST

KNOWN = {"maildir": [f"m{n}" for n in range(5)], "imap": [f"i{n}" for n in range(4)]}
UNKNOWN = {"maildir": ["ghost1", "ghost2", "nobody3"], "imap": ["ghost4", "ghost5"]}


def require(*programs: str) -> None:
    """Missing locally: skip; missing where CI requires it: fail."""
    missing = [p for p in programs if shutil.which(p, path=SBIN_PATH) is None]
    why = (f"{', '.join(missing)} not installed" if missing else
           "a throwaway Postfix/Dovecot instance needs root" if os.geteuid() != 0 else "")
    if why and os.environ.get("NEWSLETTER_REQUIRE_MTA") == "1":
        pytest.fail(f"{why} but NEWSLETTER_REQUIRE_MTA=1")
    if why:
        pytest.skip(f"{why} (CI installs them and sets NEWSLETTER_REQUIRE_MTA=1)")


def server_root(name: str) -> Path:
    """Under /tmp itself: pytest's own temp folders are closed to the servers' users."""
    return Path(tempfile.mkdtemp(prefix=f"newsletter-{name}-"))


@pytest.fixture(scope="session")
def postfix() -> Iterator[Postfix]:
    require("postfix")
    users = tuple(u for group in KNOWN.values() for u in group)
    server = Postfix(server_root("postfix"), free_port(), users,
                     bounce_users=("bounces-maildir", "bounces-imap"))
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture
def week(write_post: WritePost) -> Window:
    for n in range(5, 8):
        write_post(f"d{n}.md", POST.replace("{n}", str(n)))
    return resolve_window(tz=__import__("zoneinfo").ZoneInfo("Asia/Shanghai"), week="2025-W51")


def send_through_postfix(site: Path, postfix: Postfix, flow: str) -> str:
    """Send the week to known and unknown users; returns the DKIM record of the key used."""
    pem, record = generate_key("rsa")
    (site / "dkim.pem").write_bytes(pem)
    config = site / "newsletter.toml"
    config.write_text(config.read_text(encoding="utf-8").replace(
        'from = "weekly@example.com"',
        f'from = "weekly@example.com"\nbounce_address = "bounces-{flow}@{BOUNCE_DOMAIN}"')
        + f'\n[smtp]\nhost = "127.0.0.1"\nport = {postfix.port}\ntls = "none"\n'
        + '\n[dkim]\ndomain = "example.com"\nselector = "t"\nkey_file = "dkim.pem"\n',
        encoding="utf-8")
    runner = CliRunner()
    for user in KNOWN[flow] + UNKNOWN[flow]:
        result = runner.invoke(cli, ["subscribers", "add", f"{user}@{TEST_DOMAIN}"])
        assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["send", "--week", "2025-W51", "--yes"])
    total = len(KNOWN[flow]) + len(UNKNOWN[flow])
    assert result.exit_code == 0 and f"sent {total}, deferred 0, failed 0" in result.output, \
        result.output
    # Postfix accepted every message; the unknown users bounce later, as real DSNs.
    bounces = postfix.bounce_maildir(f"bounces-{flow}") / "new"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = len(list(bounces.iterdir())) if bounces.is_dir() else 0
        delivered = all((postfix.maildir(u) / "new").is_dir()
                        and len(list((postfix.maildir(u) / "new").iterdir())) == 1
                        for u in KNOWN[flow])
        if got >= len(UNKNOWN[flow]) and delivered:
            break
        time.sleep(0.2)
    assert len(list(bounces.iterdir())) == len(UNKNOWN[flow]), postfix.log()[-3000:]
    for path in bounces.iterdir():
        raw = path.read_bytes()
        assert b"report-type=delivery-status" in raw and b"Status: 5.1.1" in raw
    return record


def statuses(site: Path) -> dict[str, str]:
    with Store(site / "subscribers" / "test.db") as store:
        return {s.email.split("@")[0]: s.status for s in store.subscribers()}


def expected(flow: str) -> dict[str, str]:
    return {**{u: "active" for u in KNOWN[flow]}, **{u: "bounced" for u in UNKNOWN[flow]}}


def test_postfix_bounces_through_a_maildir(site: Path, week: Any, postfix: Postfix) -> None:
    record = send_through_postfix(site, postfix, "maildir")
    for user in KNOWN["maildir"]:  # the signature survives a real MTA's added headers
        (delivered,) = (postfix.maildir(user) / "new").iterdir()
        raw = delivered.read_bytes()
        assert raw.startswith(b"Return-Path: <bounces-maildir+")
        assert dkim.verify(raw, dnsfunc=lambda name, timeout=5: record.encode()
                           if name == b"t._domainkey.example.com." else None)
    box = postfix.bounce_maildir("bounces-maildir")
    runner = CliRunner()
    first = runner.invoke(cli, ["bounces", "--maildir", str(box)])
    assert first.exit_code == 0, first.output
    assert statuses(site) == expected("maildir")
    assert "3 messages read, 0 seen before, 3 set aside" in first.output
    assert "Edition 1: hard 3, soft 0, complaints 0" in first.output
    assert "Unmatched" not in first.output and "Forged" not in first.output
    assert not list((box / "new").iterdir())
    assert len(list((box / ".processed" / "cur").iterdir())) == 3
    again = runner.invoke(cli, ["bounces", "--maildir", str(box)])
    assert again.exit_code == 0 and "0 messages read" in again.output, again.output
    assert statuses(site) == expected("maildir")
    shown = runner.invoke(cli, ["editions", "show", "1"])
    assert "Bounces: hard 3, soft 0, complaints 0" in shown.output


def test_postfix_bounces_through_imap(site: Path, week: Any, postfix: Postfix,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    require("dovecot")
    send_through_postfix(site, postfix, "imap")
    box = postfix.bounce_maildir("bounces-imap")
    dovecot = Dovecot(server_root("dovecot"), free_port(), box)
    try:
        dovecot.start()
        monkeypatch.setenv("NEWSLETTER_IMAP_PASSWORD", dovecot.password)
        url = f"imap://bounces@127.0.0.1:{dovecot.port}/INBOX"
        runner = CliRunner()
        first = runner.invoke(cli, ["bounces", "--imap", url])
        assert first.exit_code == 0, first.output
        assert statuses(site) == expected("imap")
        assert "2 messages read, 0 seen before, 2 set aside" in first.output
        assert "Edition 1: hard 2, soft 0, complaints 0" in first.output
        # moved by the server into its `processed` folder, flagged as read
        moved = list((box / ".processed" / "cur").iterdir())
        assert len(moved) == 2 and all("S" in p.name.split(":2,")[1] for p in moved)
        keywords = (box / ".processed" / "dovecot-keywords").read_text()
        assert "$NewsletterProcessed" in keywords
        assert not list((box / "new").iterdir()) and not list((box / "cur").iterdir())
        again = runner.invoke(cli, ["bounces", "--imap", url])
        assert again.exit_code == 0 and "0 messages read" in again.output, again.output
        assert statuses(site) == expected("imap")
        monkeypatch.setenv("NEWSLETTER_IMAP_PASSWORD", "wrong")
        denied = runner.invoke(cli, ["bounces", "--imap", url])
        assert denied.exit_code == 1 and "imap://bounces@127.0.0.1" in denied.output
    finally:
        dovecot.stop()
        shutil.rmtree(dovecot.root, ignore_errors=True)
