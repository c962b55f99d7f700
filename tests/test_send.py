import asyncio
import email
import email.policy
import re
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import Settings
from newsletter.render import Renderer
from newsletter.send import (
    Sender,
    SendOptions,
    SendReport,
    find_snapshot,
    plan_edition,
    store_snapshot,
)
from newsletter.store import Store
from newsletter.subscribers import Subscribers
from newsletter.tokens import PREFERENCES, UNSUBSCRIBE, Tokens
from newsletter.transport import MaildirTransport, make_transport
from newsletter.window import resolve_window
from tests.conftest import WritePost, smtp_settings
from tests.pg import both_backends  # noqa: F401 (every test on both stores)

POST = """---
title: "Week digest {n}"
date: 2025-12-1{n}T10:00:00+08:00
categories: ["技术进展", "机器人", "应用场景"]
---

1.  [新模型 model release {n} - Lab](https://news.example/model/{n})

    A model story.

2.  [机器人 robot demo {n} - Robo](https://news.example/robot/{n})

    A robot story.

3.  [应用 App launch {n} - Apps](https://news.example/app/{n})

    An app story.
"""


@pytest.fixture
def week(write_post: WritePost) -> Any:
    for n in range(5, 8):
        write_post(f"d{n}.md", POST.replace("{n}", str(n)))
    return resolve_window(tz=ZoneInfo("Asia/Shanghai"), week="2025-W51")


def add(settings: Settings, *people: tuple[str, str, str]) -> None:
    with Store(settings.store_location) as store:
        subs = Subscribers(store, settings)
        for address, name, cats in people:
            subs.add(address, name=name, categories=cats)


def deliver(settings: Settings, window: Any, stop_after: int | None = None,
            stop_after_seconds: float | None = None, store_timeout: float = 60.0,
            **overrides: Any) -> SendReport:
    """Snapshot (once) and send the window's edition, bounded (a run that hangs fails the
    test, not the suite); stop after `stop_after` results or `stop_after_seconds`."""
    with Store(settings.store_location, timeout=store_timeout) as store:
        renderer = Renderer(settings)
        snap = find_snapshot(store, window) or store_snapshot(
            store, plan_edition(store, settings, window, renderer))

        async def go() -> SendReport:
            stop = asyncio.Event()
            if stop_after_seconds is not None:
                asyncio.get_running_loop().call_later(stop_after_seconds, stop.set)

            def watch(event: object, report: SendReport) -> None:
                if stop_after is not None and report.done >= stop_after:
                    stop.set()

            sender = Sender(store, settings, snap.edition_id, make_transport(settings),
                            SendOptions.from_settings(settings, **overrides), renderer=renderer,
                            tokens=Tokens("test-secret-key"), stop=stop, on_event=watch)
            return await asyncio.wait_for(sender.run(), 60)

        return asyncio.run(go())


def parsed(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def test_messages_received_with_headers_parts_and_categories(settings: Settings, week: Any,
                                                             smtp_server: Any) -> None:
    handler, port = smtp_server
    settings = smtp_settings(settings, port)
    add(settings, ("all@example.com", "林 微", ""), ("robots@example.com", "Rob", "robots"),
        ("models@example.com", "", "models;apps"))
    report = deliver(settings, week)
    assert (report.sent, report.failed, report.deferred) == (3, 0, 0)
    got = {rcpt: raw for rcpt, raw in handler.messages}
    assert set(got) == {"all@example.com", "robots@example.com", "models@example.com"}
    tokens = Tokens("test-secret-key")
    for rcpt, raw in got.items():
        assert max(len(line) for line in raw.split(b"\r\n")) <= 998
        assert b"\r\n\r\n" in raw and all(ord(c) < 128 for c in raw.decode("latin-1"))
        msg = parsed(raw)
        assert msg["From"] == "Test Weekly <weekly@example.com>"
        assert msg["Subject"] == "Test Weekly 第1期 · 12月15日–21日"
        assert msg["MIME-Version"] == "1.0"
        assert re.fullmatch(r"<[0-9a-f]+\.\d+@example\.com>", msg["Message-ID"])
        assert msg["Date"] and msg["Content-Language"] == "zh-CN"
        assert msg["List-Id"] == '"Test Weekly" <weekly.example.com>'
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        unsub = re.fullmatch(r"<https://site\.example/unsubscribe/([^>]+)>",
                             msg["List-Unsubscribe"])
        assert unsub and tokens.read(UNSUBSCRIBE, unsub.group(1))
        assert msg.get_content_type() == "multipart/alternative"
        text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
        prefs = re.search(r"https://site\.example/preferences/(\S+)", text)
        assert prefs and tokens.read(PREFERENCES, prefs.group(1))
        assert rcpt not in text and rcpt not in html.replace(f"mailto:{rcpt}", "")
        stories = set(re.findall(r"https://news\.example/(\w+)/\d", html))
        assert stories == set(re.findall(r"https://news\.example/(\w+)/\d", text))
        yield_cats = {"all@example.com": {"model", "robot", "app"},
                      "robots@example.com": {"robot"},
                      "models@example.com": {"model", "app"}}
        assert stories == yield_cats[rcpt], rcpt
    assert parsed(got["all@example.com"])["To"] == "林 微 <all@example.com>"
    assert b"=?utf-8?" in got["all@example.com"].split(b"\r\n\r\n")[0]
    assert "Rob，你好" in parsed(got["robots@example.com"]).get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_faults_end_with_one_copy_each_or_a_recorded_failure(settings: Settings, week: Any,
                                                            smtp_server: Any) -> None:
    handler, port = smtp_server
    settings = smtp_settings(settings, port, max_attempts=6)
    people = [(f"p{n}@example.com", f"P{n}", "") for n in range(30)]
    add(settings, *people)
    handler.refuse["p3@example.com"] = "550 5.1.1 no such user"
    handler.refuse["p4@example.com"] = "553 5.1.3 bad address"
    handler.busy["p5@example.com"] = 2
    handler.busy["p6@example.com"] = 3
    handler.mail_faults += ["451 4.3.0 try again", "421 4.3.2 shutting down"]
    handler.data_faults += ["451 4.3.0 queue full", "421 4.3.2 going away"]
    handler.drops = 3
    handler.stalls = 2
    handler.stall_seconds = 2.0
    report = deliver(settings, week)
    if report.deferred:  # what is left over is sent by the next run
        report = deliver(settings, week)
    received = [rcpt for rcpt, _ in handler.messages]
    assert sorted(received) == sorted(f"p{n}@example.com" for n in range(30) if n not in (3, 4))
    assert len(received) == len(set(received))  # once each
    with Store(settings.store_location) as store:
        rows = {r["email"]: r for r in store.db.execute("SELECT * FROM deliveries")}
        assert rows["p3@example.com"]["status"] == "failed"
        assert rows["p3@example.com"]["reply"].startswith("550 5.1.1")
        assert rows["p4@example.com"]["reply"].startswith("553")
        assert store.subscriber("p3@example.com").status == "bounced"  # type: ignore[union-attr]
        assert sum(r["status"] == "sent" for r in rows.values()) == 28
        assert rows["p6@example.com"]["attempts"] >= 4


def test_deferred_after_max_attempts_then_resumed(settings: Settings, week: Any,
                                                  smtp_server: Any) -> None:
    handler, port = smtp_server
    settings = smtp_settings(settings, port, max_attempts=2)
    add(settings, ("slow@example.com", "", ""), ("ok@example.com", "", ""))
    handler.busy["slow@example.com"] = 2
    first = deliver(settings, week)
    assert (first.sent, first.deferred) == (1, 1)
    second = deliver(settings, week)
    assert (second.sent, second.deferred) == (1, 0)
    assert sorted(r for r, _ in handler.messages) == ["ok@example.com", "slow@example.com"]


def test_unsubscribe_or_category_change_before_sending(settings: Settings, week: Any,
                                                       smtp_server: Any) -> None:
    handler, port = smtp_server
    settings = smtp_settings(settings, port)
    add(settings, ("gone@example.com", "", ""), ("mover@example.com", "", "models"),
        ("stay@example.com", "", ""))
    with Store(settings.store_location) as store:
        store_snapshot(store, plan_edition(store, settings, week, Renderer(settings)))
        subs = Subscribers(store, settings)
        subs.set("gone@example.com", status="unsubscribed")
        subs.set("mover@example.com", categories="robots")
    report = deliver(settings, week)
    assert (report.sent, report.skipped, report.retargeted) == (2, 1, 1)
    got = dict(handler.messages)
    assert "gone@example.com" not in got
    html = parsed(got["mover@example.com"]).get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "news.example/robot/" in html and "news.example/model/" not in html


def test_snapshot_is_not_changed_by_later_edits(settings: Settings, week: Any,
                                                write_post: WritePost, tmp_path: Path) -> None:
    add(settings, ("a@example.com", "", ""), ("b@example.com", "", ""))
    first = deliver(settings, week, limit=1)
    assert first.sent == 1
    write_post("d5.md", POST.replace("{n}", "5").replace("A model story.", "EDITED LATER"))
    second = deliver(settings, week)
    assert second.sent == 1
    outbox = list((settings.outbox_dir / "new").iterdir())
    assert len(outbox) == 2
    for path in outbox:
        body = parsed(path.read_bytes()).get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "EDITED LATER" not in body
    assert deliver(settings, week).done == 0  # fully sent: nothing more


def test_stop_takes_no_new_messages(settings: Settings, week: Any) -> None:
    add(settings, *[(f"s{n}@example.com", "", "") for n in range(40)])
    report = deliver(settings, week, stop_after=5, concurrency=1)
    assert report.interrupted and 5 <= report.sent < 40
    rest = deliver(settings, week)
    assert report.sent + rest.sent == 40
    assert len(list((settings.outbox_dir / "new").iterdir())) == 40


def test_nothing_sendable_stops_and_keeps_every_delivery(settings: Settings, week: Any) -> None:
    from tests.conftest import free_port

    settings = smtp_settings(settings, free_port(), max_attempts=2, circuit_breaker=2)
    add(settings, ("a@example.com", "", ""))
    report = deliver(settings, week)
    assert report.sent == 0 and "cannot connect" in report.halted
    with Store(settings.store_location) as store:
        assert store.db.execute("SELECT status FROM deliveries").fetchone()[0] == "deferred"


def test_maildir_writes_whole_files(settings: Settings, tmp_path: Path) -> None:
    async def go() -> None:
        conn = await MaildirTransport(tmp_path / "box").connect()
        await conn.send("a@example.com", "b@example.com", b"Subject: x\r\n\r\nbody\r\n")

    asyncio.run(go())
    assert [p.read_bytes() for p in (tmp_path / "box" / "new").iterdir()] == [
        b"Subject: x\r\n\r\nbody\r\n"]
    assert not list((tmp_path / "box" / "tmp").iterdir())


def test_cli_send_asks_refuses_without_terminal_and_dry_runs(settings: Settings,
                                                             week: Any) -> None:
    runner = CliRunner()
    add(settings, ("a@example.com", "", ""))
    dry = runner.invoke(cli, ["send", "--week", "2025-W51", "--dry-run"])
    assert dry.exit_code == 0 and "1 messages to send" in dry.output
    assert "Dry run" in dry.output
    refused = runner.invoke(cli, ["send", "--week", "2025-W51"])
    assert refused.exit_code == 2 and "add --yes" in refused.output
    assert not (settings.outbox_dir / "new").exists()
    done = runner.invoke(cli, ["send", "--week", "2025-W51", "--yes"])
    assert done.exit_code == 0, done.output
    assert "sent 1, deferred 0, failed 0" in done.output
    again = runner.invoke(cli, ["send", "--week", "2025-W51", "--yes"])
    assert "fully sent" in again.output and again.exit_code == 0
    listing = runner.invoke(cli, ["editions"])
    assert "#1" in listing.output and "sent 1" in listing.output
    copy = runner.invoke(cli, ["send", "--week", "2025-W51", "--to", "x@example.org",
                               "--categories", "robots"])
    assert copy.exit_code == 0 and "variant robots" in copy.output
    assert len(list((settings.outbox_dir / "new").iterdir())) == 2
    with Store(settings.store_location) as store:  # the test copy is outside the journal
        assert store.db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] == 1


def test_cli_exit_1_and_show_failures(settings: Settings, week: Any, smtp_server: Any,
                                      tmp_path: Path) -> None:
    handler, port = smtp_server
    handler.refuse["bad@example.com"] = "550 5.1.1 unknown user"
    config = Path("newsletter.toml")
    config.write_text(config.read_text() + f'\n[smtp]\nhost = "127.0.0.1"\nport = {port}\n'
                      'tls = "none"\ntimeout = 2\n', encoding="utf-8")
    add(settings, ("bad@example.com", "", ""), ("good@example.com", "", ""))
    runner = CliRunner()
    done = runner.invoke(cli, ["send", "--week", "2025-W51", "--yes"])
    assert done.exit_code == 1
    assert "sent 1, deferred 0, failed 1" in done.output
    shown = runner.invoke(cli, ["editions", "show", "1"])
    assert "bad@example.com  failed after 1 attempts: 550 5.1.1 unknown user" in shown.output


def test_idn_address_and_a_very_long_name(settings: Settings, week: Any,
                                          smtp_server: Any) -> None:
    handler, port = smtp_server
    settings = smtp_settings(settings, port)
    long_name = "名字🙂" * 66  # 198 characters, 660 bytes of UTF-8
    add(settings, ("user@bücher.example", long_name, ""))
    assert deliver(settings, week).sent == 1
    ((rcpt, raw),) = handler.messages
    assert rcpt == "user@xn--bcher-kva.example"
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    to = parsed(raw)["To"]
    # folded into several encoded words; RFC 2047 readers ignore the space between them
    # (Python's parser keeps it, hence the join)
    assert "".join(to.addresses[0].display_name.split()) == long_name  # type: ignore[attr-defined]
    assert to.addresses[0].addr_spec == "user@xn--bcher-kva.example"  # type: ignore[attr-defined]


def test_plain_addresses_go_out_as_aiosmtplib_would_quote_them() -> None:
    """MAIL and RCPT skip aiosmtplib's address parsing only where it changes nothing."""
    import random

    from aiosmtplib.email import quote_address

    from newsletter.transport import _PLAIN

    rng = random.Random(15)
    plain = 0
    for _ in range(50_000):
        address = "".join(rng.choice("aZ09._+=-@" * 3 + ' <>"(),;:é')
                          for _ in range(rng.randint(3, 10)))
        if _PLAIN.match(address):
            plain += 1
            assert quote_address(address) == f"<{address}>"
    assert plain > 100
    assert _PLAIN.match("bounce+1-2-abcdefghijklmnop@example.com")
    assert not _PLAIN.match("a b@example.com") and not _PLAIN.match("用户@例子.公司")


def test_snapshot_inserts_every_category_set_in_one_pass_and_counts_them(
        settings: Settings, write_post: WritePost) -> None:
    """Sets whose variant has stories get one delivery each, under that variant's key;
    a set without stories gets none; the counts the snapshot reports are the rows."""
    write_post("d5.md", POST.replace("{n}", "5").split("2.  [")[0])  # a model story only
    window = resolve_window(tz=ZoneInfo("Asia/Shanghai"),
                            week="2025-W51")
    add(settings, ("all@example.com", "", ""), ("all2@example.com", "", ""),
        ("m@example.com", "", "models"), ("r@example.com", "", "robots"),
        ("mr@example.com", "", "models;robots"), ("ma@example.com", "", "apps;models"))
    with Store(settings.store_location) as store:
        plan = plan_edition(store, settings, window, Renderer(settings))
        add(settings, ("late@example.com", "", "models"))  # after the plan, before the snapshot
        snap = store_snapshot(store, plan)
        rows = dict(store.db.execute("SELECT email, variant_key FROM deliveries").fetchall())
        assert snap.variants == store.recipients_per_variant(snap.edition_id)
        assert snap.counts["pending"] == len(rows) == 6
    assert "r@example.com" not in rows  # robots: no story this week
    assert len(set(rows.values())) >= 2 and rows["m@example.com"] == rows["late@example.com"]
    assert rows["all@example.com"] == rows["all2@example.com"]
    assert sum(snap.variants.values()) == 6


def test_any_reply_a_server_sends_is_journaled(settings: Settings, week: Any,
                                               smtp_server: Any) -> None:
    """A NUL (PostgreSQL refuses it in text) or a byte that is not UTF-8 (aiosmtplib keeps
    it as a lone surrogate) in a reply is stored escaped; the run finishes and records
    every result."""
    handler, port = smtp_server
    add(settings, ("a@example.com", "", ""), ("b@example.com", "", ""))
    handler.refuse["b@example.com"] = "550 5.1.1 no such user\x00 here"
    report = deliver(smtp_settings(settings, port), week)
    assert (report.sent, report.failed, report.journal_error) == (1, 1, "")
    with Store(settings.store_location) as store:
        (failed,) = store.failures(1)
        assert failed.reply == "550 5.1.1 no such user  here"
        delivery_id = store.db.execute("SELECT id FROM deliveries WHERE email = ?",
                                       ("b@example.com",)).fetchone()[0]
        store.record(delivery_id, "failed", attempts=2, reply="550 unbekannt: M\udcfcller")
        assert store.failures(1)[0].reply == "550 unbekannt: M\\udcfcller"
