"""`newsletter store migrate --to postgresql://…`: an SQLite store with subscribers, a
half-sent edition, signups and bounces goes into an empty PostgreSQL database, ids and
claims kept, counts compared; the send then resumes from PostgreSQL."""

import collections
import dataclasses
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from newsletter.cli import cli
from newsletter.config import Settings, load_settings
from newsletter.store import Store
from newsletter.store_copy import TABLES
from tests.conftest import smtp_settings
from tests.test_send import add, deliver, week  # noqa: F401

PEOPLE = 60


def migrate(target: str) -> Result:
    return CliRunner().invoke(cli, ["store", "migrate", "--to", target])


def test_migrate_round_trip_then_the_send_resumes(settings: Settings, site: Path, week: Any,  # noqa: F811
                                                  smtp_server: Any, pg_cluster: Any,
                                                  monkeypatch: Any) -> None:
    handler, port = smtp_server
    settings = smtp_settings(settings, port, concurrency=2)
    add(settings, *[(f"m{n}@example.com", f"M {n}", "robots" if n % 3 else "")
                    for n in range(PEOPLE)])
    first = deliver(settings, week, stop_after=25)
    assert 25 <= first.sent < PEOPLE  # a half-sent edition: the journal has both states
    with Store(settings.store_location) as store:
        store.record_signup(at=time.time(), network="192.0.2.0/24", email="new@example.com",
                            email_key="new@example.com", name="New", categories=("apps",),
                            since_network=0, per_network=10, per_day=3)
        last = store.subscriber("m59@example.com")  # not sent yet: ids go in order
        assert last is not None
        store.record_bounce(message_key="k1", kind="hard", edition_id=1,
                            subscriber_id=last.id, recipient=last.email, status="5.1.1",
                            detail="no such user", received_at="2025-12-22T00:00:00+00:00",
                            soft_limit=3, soft_since="2025-12-01T00:00:00+00:00")
        with store.write() as db:  # the highest id, erased: never to be given again
            erased = store.insert_subscriber(db, email="gone@example.com",
                                             email_key="gone@example.com", name="",
                                             categories=(), status="active", source="test")
        store.erase_subscriber("gone@example.com")
        before = store.table_counts()
        sqlite_people = {s.id: s for s in store.subscribers()}
    assert all(before[t] for t in TABLES)  # every table has something to copy

    monkeypatch.setenv("PGPASSWORD", pg_cluster.password)
    target = pg_cluster.new_database(empty=True)
    result = migrate(target)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for table in TABLES:  # each table printed with both counts
        assert any(line.split()[:3] == [table, f"{before[table]:,}", f"{before[table]:,}"]
                   for line in lines), (table, result.output)
    assert "every count matches" in lines[-1] and "[store] url" in lines[-1]

    moved = dataclasses.replace(settings, store_url=target)
    with Store(moved.store_location) as store:
        assert store.table_counts() == before
        assert {s.id: s for s in store.subscribers()} == sqlite_people  # ids and every field
        with store.write() as db:  # the identities continue after the copied ids
            new_id = store.insert_subscriber(db, email="later@example.com",
                                             email_key="later@example.com", name="",
                                             categories=(), status="active", source="test")
        assert new_id == erased + 1 and erased > max(sqlite_people)
        assert store.bounce_counts(1)["hard"] == 1

    again = migrate(target)  # the target is not empty any more
    assert again.exit_code == 2
    assert again.stderr.startswith("Error: ") and "not empty" in again.stderr
    assert len(again.stderr.splitlines()) == 1

    rest = deliver(moved, week)  # the send resumes from PostgreSQL
    assert first.sent + rest.sent == PEOPLE - 1 and rest.skipped == 1  # m59 bounced
    received = collections.Counter(rcpt for rcpt, _ in handler.messages)
    assert set(received) == {f"m{n}@example.com" for n in range(PEOPLE - 1)}
    assert max(received.values()) == 1


def test_migrate_usage_errors(settings: Settings, site: Path, pg_cluster: Any) -> None:
    with_password = migrate("postgresql://newsletter:secret@127.0.0.1:5/db")
    assert with_password.exit_code == 2 and "PGPASSWORD" in with_password.stderr
    assert "secret" not in with_password.stderr
    assert migrate("mysql://x@y/z").exit_code == 2
    missing = migrate(pg_cluster.url("postgres"))  # no SQLite store yet
    assert missing.exit_code == 2 and "no SQLite store" in missing.stderr
    config = site / "newsletter.toml"
    config.write_text(config.read_text().replace(
        'path = "subscribers/test.db"', f'url = "{pg_cluster.url("x")}"'), encoding="utf-8")
    already = migrate(pg_cluster.url("y"))
    assert already.exit_code == 2 and "already PostgreSQL" in already.stderr
    assert load_settings(config).store_url
