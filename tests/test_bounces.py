"""Bounce and complaint processing: the classifier on several shapes, then the whole
`newsletter bounces` flow on bounces aimed at the deliveries of a real send."""

import mailbox
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from newsletter.bounces.classify import COMPLAINT, HARD, OTHER, SOFT, classify, severity
from newsletter.cli import cli
from newsletter.config import load_settings
from newsletter.store import Store
from newsletter.window import Window, resolve_window
from tests import bounce_samples as samples
from tests.conftest import WritePost, smtp_settings
from tests.pg import both_backends  # noqa: F401 (every store-using test on both stores)
from tests.test_send import POST, add, deliver

BOUNCES = "bounces@mail.example.com"
FORGED = "bounces+1-1-aaaaaaaaaaaaaaaa@mail.example.com"


@pytest.fixture
def week(write_post: WritePost) -> Window:
    for n in range(5, 8):
        write_post(f"d{n}.md", POST.replace("{n}", str(n)))
    return resolve_window(tz=__import__("zoneinfo").ZoneInfo("Asia/Shanghai"), week="2025-W51")


def test_severity_follows_rfc_3463() -> None:
    assert [severity(s) for s in ("5.1.1", "5.1.10", "5.2.1", "5.2.2", "5.7.1", "4.2.2",
                                  "2.0.0")] == [HARD, HARD, HARD, SOFT, SOFT, SOFT, OTHER]


def test_classify_shapes() -> None:
    dsn = classify(samples.postfix_dsn("b+t@x.example", "abc.7@example.com", "gone@y.example"))
    assert (dsn.kind, dsn.status, dsn.recipient, dsn.message_id) == (
        HARD, "5.1.1", "gone@y.example", "abc.7@example.com")
    assert "b+t@x.example" in dsn.envelope and "User unknown" in dsn.detail
    delayed = classify(samples.postfix_dsn("b@x", "m@x", "full@y.example", "4.2.2", "delayed"))
    assert (delayed.kind, delayed.status) == (SOFT, "4.2.2")
    policy = classify(samples.postfix_dsn("b@x", "m@x", "p@y.example", "5.7.1"))
    assert policy.kind == SOFT  # a policy block says nothing about the address
    exchange = classify(samples.exchange_dsn("weekly@example.com", "n.3@example.com",
                                             "off@outlook.example"))
    assert (exchange.kind, exchange.status, exchange.recipient, exchange.message_id) == (
        HARD, "5.2.1", "off@outlook.example", "n.3@example.com")
    report = classify(samples.arf("b+t@x.example", "angry@y.example", "q.1@example.com"))
    assert (report.kind, report.recipient, report.detail) == (COMPLAINT, "angry@y.example",
                                                              "abuse")
    assert "b+t@x.example" in report.envelope
    qmail = classify(samples.qmail_plain("b+t@x.example", "nobody@y.example", "z.2@example.com"))
    assert (qmail.kind, qmail.status, qmail.recipient, qmail.message_id) == (
        HARD, "5.1.1", "nobody@y.example", "z.2@example.com")
    soft = classify(samples.gmail_plain_soft("weekly@example.com", "big@y.example", 1))
    assert (soft.kind, soft.status, soft.recipient) == (SOFT, "4.2.2", "big@y.example")
    assert classify(samples.auto_reply("weekly@example.com")).kind == OTHER
    assert classify(b"\xff\xfe not a message at all").kind == OTHER


def bounce_site(site: Path, port: int, soft_limit: int = 2) -> Any:
    config = site / "newsletter.toml"
    text = config.read_text(encoding="utf-8").replace(
        'from = "weekly@example.com"',
        f'from = "weekly@example.com"\nbounce_address = "{BOUNCES}"')
    config.write_text(text + f"\n[bounces]\nsoft_limit = {soft_limit}\nsoft_days = 30\n",
                      encoding="utf-8")
    return smtp_settings(load_settings(config), port)


def statuses(settings: Any) -> dict[str, str]:
    with Store(settings.store_location) as store:
        return {s.email: s.status for s in store.subscribers()}


def test_bounces_command_on_a_maildir(site: Path, week: Any, smtp_server: Any) -> None:
    handler, port = smtp_server
    settings = bounce_site(site, port)
    people = [(f"p{n}@example.org", "", "") for n in range(8)]
    add(settings, *people)
    assert deliver(settings, week).sent == 8
    sent = {rcpt: (mail_from, raw) for (_, mail_from, rcpt), (_, raw)
            in zip(handler.envelopes, handler.messages, strict=True)}

    def mid(rcpt: str) -> str:
        import email

        return str(email.message_from_bytes(sent[rcpt][1])["Message-ID"]).strip("<>")

    box = mailbox.Maildir(site / "bounces")
    box.add(samples.postfix_dsn(sent["p0@example.org"][0], mid("p0@example.org"),
                                "p0@example.org"))  # by VERP
    box.add(samples.exchange_dsn(BOUNCES, mid("p1@example.org"), "p1@example.org"))  # Msg-ID
    box.add(samples.qmail_plain(BOUNCES, "p2@example.org", "unknown@example.com"))  # address
    box.add(samples.arf(sent["p3@example.org"][0], "p3@example.org"))  # complaint
    box.add(samples.gmail_plain_soft(BOUNCES, "p4@example.org", 1))
    box.add(samples.gmail_plain_soft(BOUNCES, "p4@example.org", 2, days_ago=40))  # too old
    box.add(samples.gmail_plain_soft(BOUNCES, "p5@example.org", 1))
    box.add(samples.gmail_plain_soft(BOUNCES, "p5@example.org", 2))  # soft_limit = 2
    box.add(samples.postfix_dsn(FORGED, "nothing@example.com", "p6@example.org"))  # forged
    box.add(samples.postfix_dsn(BOUNCES, "nothing@example.com", "stranger@example.net"))
    box.add(samples.auto_reply(BOUNCES))
    runner = CliRunner()
    first = runner.invoke(cli, ["bounces", "--maildir", str(site / "bounces")])
    assert first.exit_code == 0, first.output
    assert statuses(settings) == {
        "p0@example.org": "bounced", "p1@example.org": "bounced", "p2@example.org": "bounced",
        "p3@example.org": "complained", "p4@example.org": "active",
        "p5@example.org": "bounced", "p6@example.org": "active", "p7@example.org": "active"}
    out = first.output
    assert "11 messages read, 0 seen before, 8 set aside" in out
    assert "Edition 1: hard 3, soft 4, complaints 1" in out
    assert "Forged (1, ignored and kept)" in out and "bad signature" in out
    assert "Unmatched (2, kept in the mailbox)" in out and "stranger@example.net" in out
    assert "p3@example.org: now complained" in out
    left = sorted(p.name for p in (site / "bounces" / "new").iterdir())
    assert len(left) == 3
    assert len(list((site / "bounces" / ".processed" / "cur").iterdir())) == 8
    before = statuses(settings)
    again = runner.invoke(cli, ["bounces", "--maildir", str(site / "bounces")])
    assert again.exit_code == 0, again.output
    assert "3 messages read, 3 seen before, 0 set aside" in again.output
    assert "Edition 1" not in again.output and statuses(settings) == before
    shown = runner.invoke(cli, ["editions", "show", "1"])
    assert "Bounces: hard 3, soft 4, complaints 1" in shown.output


def test_bounces_command_on_an_mbox_is_idempotent(site: Path, week: Any,
                                                 smtp_server: Any) -> None:
    handler, port = smtp_server
    settings = bounce_site(site, port)
    add(settings, ("a@example.org", "", ""), ("b@example.org", "", ""))
    deliver(settings, week)
    by_rcpt = {rcpt: mail_from for _, mail_from, rcpt in handler.envelopes}
    box = mailbox.mbox(site / "bounces.mbox")
    box.add(samples.postfix_dsn(by_rcpt["a@example.org"], "x@y", "a@example.org"))
    box.add(samples.postfix_dsn(by_rcpt["b@example.org"].replace("bounces+", "bounces+1"),
                                "x@y", "b@example.org"))  # altered token
    box.close()
    runner = CliRunner()
    for n in range(2):
        result = runner.invoke(cli, ["bounces", "--mbox", str(site / "bounces.mbox")])
        assert result.exit_code == 0, result.output
        assert f"2 messages read, {2 * n} seen before" in result.output
        assert "Forged (1" in result.output
    assert statuses(settings) == {"a@example.org": "bounced", "b@example.org": "active"}


def test_bounces_usage_errors(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["bounces"])
    assert result.exit_code == 2 and "choose one mailbox" in result.output
    result = runner.invoke(cli, ["bounces", "--maildir", str(site)])
    assert result.exit_code == 2 and "not a Maildir" in result.output
    monkeypatch.delenv("NEWSLETTER_IMAP_PASSWORD", raising=False)
    result = runner.invoke(cli, ["bounces", "--imap", "imaps://u@127.0.0.1/INBOX"])
    assert result.exit_code == 2 and "NEWSLETTER_IMAP_PASSWORD" in result.output
    result = runner.invoke(cli, ["bounces", "--imap", "http://x"])
    assert result.exit_code == 2 and "imaps://user@host/INBOX" in result.output


def test_a_version_1_database_gains_the_bounces_table(tmp_path: Path) -> None:
    import sqlite3

    from newsletter.store import _MIGRATIONS

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(_MIGRATIONS[0] + ";PRAGMA user_version = 1;")
    db.execute("INSERT INTO subscribers (email, email_key, status, created_at, updated_at) "
               "VALUES ('a@example.org', 'a@example.org', 'active', 'x', 'x')")
    db.commit()
    db.close()
    with Store(path) as store:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(_MIGRATIONS)
        sub = store.subscriber("a@example.org")
        assert sub is not None
        assert store.record_bounce(message_key="k", kind="hard", edition_id=None,
                                   subscriber_id=sub.id, recipient="a@example.org",
                                   status="5.1.1", detail="", received_at="2026-01-01",
                                   soft_limit=3, soft_since="2025-01-01") == "bounced"
        assert store.record_bounce(message_key="k", kind="complaint", edition_id=None,
                                   subscriber_id=sub.id, recipient="a@example.org",
                                   status="", detail="", received_at="2026-01-01",
                                   soft_limit=3, soft_since="2025-01-01") is None
        assert store.erase_subscriber("a@example.org") == 2  # the row and its bounce
