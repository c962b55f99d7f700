"""Every failure is data: each kind of worker failure ends the run with the error, and the
next run resumes correctly. Real aiosmtpd on loopback, real SQLite files."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import Settings, load_settings
from newsletter.errors import ConfigError
from newsletter.render import Renderer
from newsletter.send import (
    plan_edition,
    store_snapshot,
)
from newsletter.store import Store
from newsletter.transport import mailbox_refused
from tests.conftest import smtp_settings
from tests.pg import JournalLock, both_stores
from tests.test_send import add, deliver, parsed, week  # noqa: F401

REPO = Path(__file__).resolve().parent.parent


def statuses(settings: Settings) -> dict[str, str]:
    with Store(settings.store_location) as store:
        return {r["email"]: r["status"] for r in store.db.execute(
            "SELECT email, status FROM deliveries")}


def insert_raw(settings: Settings, email: str) -> None:
    """A row as an older version (or another tool) may have stored it, past validation."""
    with Store(settings.store_location) as store, store.write() as db:
        store.insert_subscriber(db, email=email, email_key=email.casefold(), name="",
                                categories=(), status="active", source="legacy")


def append_config(site: Path, text: str) -> Settings:
    config = site / "newsletter.toml"
    config.write_text(config.read_text(encoding="utf-8") + text, encoding="utf-8")
    return load_settings(config)


# ---------------------------------------------------------------- non-ASCII local parts

def test_non_ascii_local_part_refused_at_add_unless_smtputf8(settings: Settings,
                                                             site: Path) -> None:
    runner = CliRunner()
    refused = runner.invoke(cli, ["subscribers", "add", "用户@example.com"])
    assert refused.exit_code == 2
    assert refused.output.count("\n") == 1 and "needs SMTPUTF8" in refused.output
    (site / "people.csv").write_text("email\n用户@example.com\nok@example.com\n",
                                     encoding="utf-8")
    imported = runner.invoke(cli, ["subscribers", "import", "people.csv"])
    assert imported.exit_code == 1 and "people.csv:2: " in imported.output
    config = site / "newsletter.toml"
    config.write_text(config.read_text(encoding="utf-8").replace(
        "[send]\n", "[send]\nsmtputf8 = true\n"), encoding="utf-8")
    assert runner.invoke(cli, ["subscribers", "add", "用户@example.com"]).exit_code == 0


def test_non_ascii_local_part_sent_with_smtputf8(settings: Settings, week: Any,  # noqa: F811
                                                 smtp_server: Any, site: Path) -> None:
    handler, port = smtp_server
    settings = smtp_settings(settings, port, smtputf8=True)
    add(settings, ("用户@example.com", "", ""), ("plain@example.com", "", ""))
    report = deliver(settings, week)
    assert (report.sent, report.failed, report.deferred) == (2, 0, 0)
    got = dict(handler.messages)
    assert "\r\nTo: 用户@example.com\r\n".encode() in got["用户@example.com"]


@both_stores
def test_non_ascii_local_part_without_smtputf8_fails_that_delivery_only(
        settings: Settings, week: Any, smtp_ascii_server: Any) -> None:  # noqa: F811
    handler, port = smtp_ascii_server
    insert_raw(settings, "用户@example.com")
    add(settings, ("plain@example.com", "", ""))
    report = deliver(smtp_settings(settings, port, smtputf8=True), week)
    assert (report.sent, report.failed, report.bounced) == (1, 1, 0)
    assert [r for r, _ in handler.messages] == ["plain@example.com"]
    # the setting off: the same row fails with the reason, and the run still ends
    with Store(settings.store_location) as store:
        store.db.execute("UPDATE deliveries SET status = 'pending' WHERE email LIKE '用户%'")
    again = deliver(smtp_settings(settings, port), week)
    assert (again.failed, again.sent) == (1, 0)
    with Store(settings.store_location) as store:
        replies = [r[0] for r in store.db.execute("SELECT reply FROM deliveries "
                                                  "WHERE email LIKE '用户%'")]
    assert "smtputf8 = true" in replies[0]


# ---------------------------------------------------------------- header values, ports

def test_header_values_encoded_or_refused_at_load(site: Path, week: Any) -> None:  # noqa: F811
    settings = append_config(site, "")
    config = site / "newsletter.toml"
    base = config.read_text(encoding="utf-8").replace('language = "zh-CN"\n', "")
    for bad, key in [('reply_to = "not an address"', "reply_to"),
                     ('reply_to = "a@example.com, b@example.com"', "reply_to"),
                     ('language = "zh CN\\r\\nBcc: x@evil.example"', "language"),
                     ('unsubscribe_mailto = "退订@example.com"', "unsubscribe_mailto")]:
        config.write_text(base.replace("[newsletter]\n", f"[newsletter]\n{bad}\n"),
                          encoding="utf-8")
        with pytest.raises(ConfigError, match=f"newsletter.{key}"):
            load_settings(config)
    config.write_text(base.replace("[newsletter]\n",
                                   '[newsletter]\nreply_to = "编辑部 <editor@example.com>"\n'),
                      encoding="utf-8")
    settings = load_settings(config)
    add(settings, ("a@example.com", "", ""))
    assert deliver(settings, week).sent == 1
    (path,) = (settings.outbox_dir / "new").iterdir()
    raw = path.read_bytes()
    assert raw.split(b"\r\n\r\n")[0].isascii() and b"\n" not in raw.replace(b"\r\n", b"")
    reply_to = parsed(raw)["Reply-To"].addresses[0]
    assert (reply_to.display_name, reply_to.addr_spec) == ("编辑部", "editor@example.com")


@pytest.mark.parametrize("line", ["port = 70000", "port = 0", "timeout = inf",
                                  "timeout = nan", "timeout = -1", "timeout = 0"])
def test_port_and_timeout_checked_at_load(site: Path, line: str) -> None:
    key = line.split()[0]
    with pytest.raises(ConfigError, match=f"smtp.{key}"):
        append_config(site, f'\n[smtp]\nhost = "127.0.0.1"\n{line}\n')


def test_port_out_of_range_in_code_ends_the_run(settings: Settings, week: Any) -> None:  # noqa: F811
    import dataclasses

    settings = smtp_settings(settings, 70000, circuit_breaker=3)
    add(settings, *[(f"p{n}@example.com", "", "") for n in range(6)])
    report = deliver(settings, week)
    assert report.sent == 0 and "70000" in report.halted
    assert set(statuses(settings).values()) <= {"pending", "deferred"}
    del dataclasses


# ---------------------------------------------------------------- template errors

@both_stores
def test_template_error_for_a_new_variant_defers_and_resumes(
        settings: Settings, week: Any, smtp_server: Any, site: Path) -> None:  # noqa: F811
    handler, port = smtp_server
    settings = smtp_settings(settings, port)
    add(settings, ("all@example.com", "", ""), ("mover@example.com", "", ""))
    with Store(settings.store_location) as store:
        store_snapshot(store, plan_edition(store, settings, week, Renderer(settings)))
        store.db.execute("UPDATE subscribers SET categories = 'robots' "
                         "WHERE email = 'mover@example.com'")
    packaged = (REPO / "templates" / "email" / "email.html.j2").read_text(encoding="utf-8")
    broken = site / "templates" / "email" / "email.html.j2"
    broken.parent.mkdir(parents=True)
    broken.write_text(packaged.replace("</body>", "{{ no_such_thing.field }}</body>"),
                      encoding="utf-8")
    report = deliver(settings, week)
    assert (report.sent, report.deferred) == (1, 1)
    assert "no_such_thing" in report.last_error
    assert statuses(settings)["mover@example.com"] == "deferred"
    broken.unlink()
    resumed = deliver(settings, week)
    assert (resumed.sent, resumed.deferred) == (1, 0)
    assert sorted(r for r, _ in handler.messages) == ["all@example.com", "mover@example.com"]


# ---------------------------------------------------------------- journal failures

@both_stores
def test_locked_database_stops_at_once_with_an_exact_summary(
        settings: Settings, week: Any, smtp_server: Any) -> None:  # noqa: F811
    handler, port = smtp_server
    # claims it could not give back hold a resume for claim_timeout (the pid lives on)
    settings = smtp_settings(settings, port, concurrency=2, claim_timeout=1.0)
    people = [f"l{n}@example.com" for n in range(20)]
    add(settings, *[(p, "", "") for p in people])
    with Store(settings.store_location) as store:
        store_snapshot(store, plan_edition(store, settings, week, Renderer(settings)))
    holder = JournalLock(settings)
    accept = handler.handle_DATA

    async def lock_then_accept(server: Any, session: Any, envelope: Any) -> str:
        if not holder.held:  # the batch is claimed: now another process
            holder.take()  # takes the write lock
        return await accept(server, session, envelope)  # type: ignore[no-any-return]

    handler.handle_DATA = lock_then_accept
    try:
        started = time.monotonic()
        report = deliver(settings, week, store_timeout=0.3)
        assert time.monotonic() - started < 10
    finally:
        handler.handle_DATA = accept
        holder.close()
    assert "lock" in report.journal_error  # SQLite: "database is locked"; PG: lock timeout
    accepted = [r for r, _ in handler.messages]
    assert 1 <= len(accepted) <= 2 and sorted(report.unrecorded) == sorted(accepted)
    resumed = deliver(settings, week)
    assert resumed.sent == 20 and not resumed.journal_error
    # exactly the reported ones went out twice, nobody else
    assert len(handler.messages) == 20 + len(report.unrecorded)
    assert {r for r, _ in handler.messages} == set(people)


@both_stores
def test_lock_released_before_the_run_ends_records_what_was_accepted(
        settings: Settings, week: Any, smtp_server: Any) -> None:  # noqa: F811
    handler, port = smtp_server
    handler.delay = 0.2
    settings = smtp_settings(settings, port, concurrency=2)
    add(settings, *[(f"r{n}@example.com", "", "") for n in range(6)])
    with Store(settings.store_location) as store:
        store_snapshot(store, plan_edition(store, settings, week, Renderer(settings)))
    holder = JournalLock(settings)
    holder.take()
    threading.Timer(0.6, holder.release).start()
    report = deliver(settings, week, store_timeout=0.3)
    holder.close()
    assert report.journal_error and report.unrecorded == []  # recorded on the last try
    deliver(settings, week)
    assert len(handler.messages) == 6


def test_full_disk_stops_with_the_unrecorded_messages_named(
        settings: Settings, site: Path, week: Any, smtp_server: Any) -> None:  # noqa: F811
    handler, port = smtp_server
    config = site / "newsletter.toml"
    config.write_text(config.read_text() + f'\n[smtp]\nhost = "127.0.0.1"\nport = {port}\n'
                      'tls = "none"\ntimeout = 5\n', encoding="utf-8")
    people = [f"d{n}@example.com" for n in range(300)]
    add(settings, *[(p, "", "") for p in people])
    with Store(load_settings(config).store_location) as store:
        store_snapshot(store, plan_edition(store, settings, week, Renderer(settings)))
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    files = settings.store_path.parent.iterdir()
    blocks = max(p.stat().st_size for p in files) // 1024 + 64  # ~16 more journal pages
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = f"ulimit -f {blocks}; exec {sys.executable} -m newsletter send --week 2025-W51 --yes"
    full = subprocess.run(["bash", "-c", command], cwd=site, env=env, capture_output=True,
                          text=True, timeout=120)
    assert full.returncode == 1, full.stdout + full.stderr
    assert "Traceback" not in full.stderr
    assert "Stopped: cannot write the delivery journal" in full.stdout
    first = [r for r, _ in handler.messages]
    assert 0 < len(first) < len(people)
    line = next(x for x in full.stdout.splitlines() if "could not be recorded" in x)
    unrecorded = line.rpartition(": ")[2].split(", ")
    assert line.startswith(f"{len(unrecorded)} messages were accepted")
    assert set(unrecorded) <= set(first)
    again = subprocess.run([sys.executable, "-m", "newsletter", "send", "--week", "2025-W51",
                            "--yes"], cwd=site, env=env, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(handler.messages) == len(people) + len(unrecorded)
    assert {r for r, _ in handler.messages} == set(people)


# ---------------------------------------------------------------- the circuit breaker

@both_stores
def test_sender_rejected_trips_the_breaker_then_resumes(settings: Settings, site: Path,
                                                        week: Any, smtp_server: Any) -> None:  # noqa: F811
    handler, port = smtp_server
    handler.mail_faults = ["553 5.7.1 Sender address rejected"] * 1000
    append_config(site, f'\n[smtp]\nhost = "127.0.0.1"\nport = {port}\ntls = "none"\n'
                  "timeout = 2\n")
    add(settings, *[(f"b{n}@example.com", "", "") for n in range(50)])
    runner = CliRunner()
    stopped = runner.invoke(cli, ["send", "--week", "2025-W51", "--yes"])
    assert stopped.exit_code == 1, stopped.output
    assert "failures in a row: the SMTP server 127.0.0.1:" in stopped.output
    assert "553 5.7.1 Sender address rejected" in stopped.output
    assert "failed 0" in stopped.output and not handler.messages
    assert set(statuses(settings).values()) <= {"pending", "deferred"}
    with Store(settings.store_location) as store:
        assert store.counts()[0]["active"] == 50  # nobody bounced
    handler.mail_faults = []
    fixed = runner.invoke(cli, ["send", "--week", "2025-W51", "--yes"])
    assert fixed.exit_code == 0 and "sent 50" in fixed.output and "fully sent" in fixed.output
    assert len(handler.messages) == 50


def test_refused_connection_trips_the_breaker(settings: Settings, week: Any) -> None:  # noqa: F811
    from tests.conftest import free_port

    settings = smtp_settings(settings, free_port(), max_attempts=2, circuit_breaker=4)
    add(settings, *[(f"c{n}@example.com", "", "") for n in range(30)])
    report = deliver(settings, week)
    assert report.sent == 0 and "cannot connect" in report.halted
    assert report.deferred <= 4 + 3  # the breaker stopped it, not the end of the list
    assert set(statuses(settings).values()) <= {"pending", "deferred"}


def test_tarpit_stops_within_a_few_timeouts(settings: Settings, week: Any) -> None:  # noqa: F811
    """A server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(100)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not done.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    timeout = 0.5
    try:
        import dataclasses

        settings = smtp_settings(settings, listener.getsockname()[1], circuit_breaker=5)
        assert settings.smtp is not None
        settings = dataclasses.replace(
            settings, smtp=dataclasses.replace(settings.smtp, timeout=timeout))
        add(settings, *[(f"t{n}@example.com", "", "") for n in range(200)])
        started = time.monotonic()
        report = deliver(settings, week)
        elapsed = time.monotonic() - started
    finally:
        done.set()
        thread.join(5)
        for sock in held:
            sock.close()
        listener.close()
    assert report.halted and report.sent == 0
    assert elapsed < timeout * 8, elapsed


@both_stores
def test_policy_block_fails_without_bouncing_and_retry_failed_delivers(
        settings: Settings, site: Path, week: Any, smtp_server: Any) -> None:  # noqa: F811
    handler, port = smtp_server
    blocked = [f"p{n}@blocked.example" for n in range(5)]
    for rcpt in blocked:
        handler.refuse[rcpt] = "550 5.7.1 Service unavailable; blocked using Spamhaus"
    handler.refuse["gone@example.com"] = "550 5.1.1 <gone@example.com>: no such user"
    append_config(site, f'\n[smtp]\nhost = "127.0.0.1"\nport = {port}\ntls = "none"\n'
                  "timeout = 2\n")
    add(settings, *[(p, "", "") for p in [*blocked, "gone@example.com", "ok@example.com"]])
    runner = CliRunner()
    first = runner.invoke(cli, ["send", "--week", "2025-W51", "--yes"])
    assert first.exit_code == 1
    assert "sent 1, deferred 0, failed 6 (1 bounced)" in first.output
    assert "Refused at blocked.example: 5 (not bounced; 550 5.7.1" in first.output
    with Store(settings.store_location) as store:
        status = {s.email: s.status for s in store.subscribers()}
    assert status["gone@example.com"] == "bounced"
    assert all(status[p] == "active" for p in blocked)
    handler.refuse = {}
    retried = runner.invoke(cli, ["send", "--week", "2025-W51", "--yes", "--retry-failed"])
    assert retried.exit_code == 0, retried.output
    assert "sent 5" in retried.output and "skipped 1" in retried.output  # the bounced one
    assert sorted(r for r, _ in handler.messages) == sorted(["ok@example.com", *blocked])


@pytest.mark.parametrize(("reply", "bounce"), [
    ("550 5.1.1 no such user", True), ("550 5.2.1 mailbox disabled", True),
    ("553 5.5.4 bad address syntax", True),
    ("550 5.7.1 blocked using Spamhaus", False), ("554 5.7.26 DMARC policy", False),
    ("552 5.2.2 mailbox full", False), ("550 no such user here", True),
    ("554 transaction failed", False)])
def test_which_refusals_bounce(reply: str, bounce: bool) -> None:
    code, _, message = reply.partition(" ")
    assert mailbox_refused(int(code), message) is bounce

