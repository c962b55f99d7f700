"""The store: subscribers, editions and the delivery journal, in SQLite or PostgreSQL.

WAL and a busy timeout let the web server, a send and the CLI share one SQLite file;
every write runs in `BEGIN IMMEDIATE` (on PostgreSQL: under one advisory lock) so two
writers queue instead of failing. The SQL is written once; `store_backend.py` translates
it where PostgreSQL's dialect differs. Migrations only go forward.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any

from newsletter.claims import MIGRATION as CLAIMS_MIGRATION
from newsletter.claims import Claims
from newsletter.errors import NewsletterError
from newsletter.rows import DeliveryRow as DeliveryRow
from newsletter.rows import EditionRow as EditionRow
from newsletter.rows import Outcome as Outcome
from newsletter.rows import PendingDelivery as PendingDelivery
from newsletter.rows import StoredVariant as StoredVariant
from newsletter.rows import Subscriber as Subscriber
from newsletter.rows import join_categories as join_categories
from newsletter.rows import now_iso as now_iso
from newsletter.rows import split_categories as split_categories
from newsletter.rows import storable
from newsletter.store_backend import (
    DB_ERRORS,
    Connection,
    is_url,
    open_backend,
    redacted,
)
from newsletter.store_copy import Copying
from newsletter.store_signups import MAILING as MAILING
from newsletter.store_signups import SignupStore
from newsletter.store_subscribers import STATUSES as STATUSES
from newsletter.window import Window

DELIVERY_STATES = ("pending", "sent", "deferred", "failed", "skipped")

_MIGRATIONS: list[str] = [
    # 1: subscribers, editions with their rendered variants, one delivery row per recipient
    """
    CREATE TABLE subscribers (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        email TEXT NOT NULL,
        email_key TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL DEFAULT '',
        categories TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL CHECK (status IN
            ('pending', 'active', 'unsubscribed', 'bounced', 'complained')),
        source TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        confirmed_at TEXT,
        updated_at TEXT NOT NULL,
        unsubscribed_at TEXT
    );
    CREATE INDEX subscribers_status ON subscribers(status);
    CREATE TABLE editions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        number INTEGER NOT NULL,
        window_start TEXT NOT NULL,
        window_end TEXT NOT NULL,
        created_at TEXT NOT NULL,
        nonce TEXT NOT NULL,
        payload TEXT NOT NULL,
        UNIQUE (window_start, window_end)
    );
    CREATE TABLE variants (
        edition_id INTEGER NOT NULL REFERENCES editions(id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        categories TEXT NOT NULL,
        subject TEXT NOT NULL,
        html TEXT NOT NULL,
        text TEXT NOT NULL,
        nonce TEXT NOT NULL,
        stories INTEGER NOT NULL,
        dropped INTEGER NOT NULL,
        PRIMARY KEY (edition_id, key)
    );
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        edition_id INTEGER NOT NULL REFERENCES editions(id) ON DELETE CASCADE,
        subscriber_id INTEGER NOT NULL,
        email TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        variant_key TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN
            ('pending', 'sent', 'deferred', 'failed', 'skipped')),
        attempts INTEGER NOT NULL DEFAULT 0,
        reply TEXT NOT NULL DEFAULT '',
        updated_at TEXT,
        UNIQUE (edition_id, subscriber_id)
    );
    CREATE INDEX deliveries_todo ON deliveries(edition_id, status);
    """,
    # 2: web signups: the abuse limits' memory and the confirmation emails' outbox
    """
    CREATE TABLE signups (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        network TEXT NOT NULL,
        email_key TEXT NOT NULL,
        subscriber_id INTEGER NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        categories TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL CHECK (state IN ('queued', 'sending', 'sent', 'failed', 'none')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL DEFAULT 0,
        reply TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX signups_network ON signups(network, at);
    CREATE INDEX signups_address ON signups(email_key, at);
    CREATE INDEX signups_queue ON signups(state, next_at);
    """,
    # 3: every message read from the bounce mailbox, once (its sha256 is the key)
    """
    CREATE TABLE bounces (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        message_key TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL CHECK (kind IN
            ('hard', 'soft', 'complaint', 'other', 'unmatched', 'forged')),
        edition_id INTEGER REFERENCES editions(id) ON DELETE SET NULL,
        subscriber_id INTEGER,
        recipient TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT '',
        received_at TEXT NOT NULL,
        processed_at TEXT NOT NULL
    );
    CREATE INDEX bounces_subscriber ON bounces(subscriber_id, kind, received_at);
    CREATE INDEX bounces_edition ON bounces(edition_id, kind)
    """,
    # 4: claimed deliveries, so several senders share an edition (claims.py)
    CLAIMS_MIGRATION,
]


# a delivery's result; `heartbeat` stamps when it was recorded (see claims.py)
_RECORD = ("UPDATE deliveries SET status = ?, attempts = ?, reply = ?, updated_at = ?, "
           "variant_key = COALESCE(?, variant_key), claimed_by = NULL, heartbeat = ? "
           "WHERE id = ?")


def _record_values(outcome: Outcome, stamp: str, now: float) -> tuple[object, ...]:
    return (outcome.status, outcome.attempts, storable(outcome.reply), stamp,
            outcome.variant_key, now, outcome.delivery_id)


class StoreError(NewsletterError):
    """The database file cannot be opened or is newer than this program."""


class Store(SignupStore, Claims, Copying):
    """The store at `location`: an SQLite file (a Path) or a PostgreSQL URL. `pooled`
    borrows the connection from this process's pool for the URL (`serve`)."""

    def __init__(self, location: Path | str, *, timeout: float = 60.0,
                 pooled: bool = False) -> None:
        self.path = location if is_url(location) else Path(location)
        where = redacted(str(location))
        try:
            self.backend = open_backend(location, timeout, pooled=pooled)
        except DB_ERRORS as exc:
            raise StoreError(f"{where}: cannot open the database: {exc}") from exc
        self.db: Connection = self.backend.db
        self.dialect = self.backend.dialect
        try:
            if self.backend.fresh:
                self._migrate(where)
        except DB_ERRORS as exc:
            self.backend.close()
            raise StoreError(f"{where}: cannot open the database: {exc}") from exc
        except StoreError:
            self.backend.close()
            raise

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self) -> AbstractContextManager[Connection]:
        """One write transaction; writers queue on the lock instead of failing."""
        return self.backend.write()

    def snapshot(self) -> AbstractContextManager[Connection]:
        """Reads that must agree with each other (a listing and its counts, an export),
        however long they take and whatever is written meanwhile."""
        return self.backend.snapshot()

    def transaction(self) -> AbstractContextManager[Connection]:
        """A transaction for row-level writes that need no queue (journal results): on
        SQLite the write lock all the same, on PostgreSQL without the advisory lock, so
        senders and web servers do not wait for each other."""
        return self.backend.transaction()

    def _migrate(self, where: str) -> None:
        backend = self.backend
        version = backend.version(self.db)
        if version == 0:
            with backend.write():  # another process may be creating the schema right now
                version = backend.version(self.db)
                tables = backend.tables() if version == 0 else []
            if tables:
                raise StoreError(f"{where}: not a newsletter database (it has other "
                                 f"tables: {', '.join(tables[:5])}); point [store] "
                                 f"{'url' if self.dialect == 'postgresql' else 'path'} at "
                                 "a new database")
        if version > len(_MIGRATIONS):
            raise StoreError(f"{where}: schema version {version} is newer than this "
                             "program; upgrade newsletter")
        for number in range(version, len(_MIGRATIONS)):
            with backend.write() as db:
                if backend.version(db) != number:
                    continue  # another process migrated meanwhile
                for statement in _MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
                backend.set_version(db, number + 1)
        backend.migrated()

    # ------------------------------------------------------------ editions and deliveries

    def edition(self, *, edition_id: int | None = None, window: Window | None = None,
                number: int | None = None) -> EditionRow | None:
        args: tuple[object, ...]
        if edition_id is not None:
            where, args = "id = ?", (edition_id,)
        elif number is not None:
            where, args = "number = ?", (number,)
        else:
            assert window is not None
            where = "window_start = ? AND window_end = ?"
            args = (window.start.isoformat(), window.end.isoformat())
        row = self.db.execute(f"SELECT * FROM editions WHERE {where}", args).fetchone()
        return EditionRow.from_row(row) if row else None

    def editions(self) -> list[tuple[EditionRow, dict[str, int]]]:
        """Every edition with its deliveries per status (and 'recipients', their sum)."""
        result = []
        for row in self.db.execute("SELECT * FROM editions ORDER BY number").fetchall():
            counts = self.delivery_counts(row["id"])
            counts["recipients"] = sum(counts.values())
            result.append((EditionRow.from_row(row), counts))
        return result

    def editions_overlapping(self, window: Window) -> list[EditionRow]:
        """Stored editions whose window overlaps `window` (its own excluded)."""
        found = []
        for row in self.db.execute("SELECT * FROM editions ORDER BY number"):
            edition = EditionRow.from_row(row)
            start = datetime.fromisoformat(edition.window_start)
            end = datetime.fromisoformat(edition.window_end)
            if (start, end) != (window.start, window.end) and \
                    start < window.end and window.start < end:
                found.append(edition)
        return found

    def insert_edition(self, db: Connection, *, number: int, window: Window,
                       nonce: str, payload: str) -> int:
        cursor = db.execute(
            "INSERT INTO editions (number, window_start, window_end, created_at, nonce, "
            "payload) VALUES (?, ?, ?, ?, ?, ?)",
            (number, window.start.isoformat(), window.end.isoformat(), now_iso(), nonce,
             payload))
        return int(cursor.lastrowid or 0)

    def insert_deliveries(self, db: Connection, edition_id: int,
                          keys: dict[str, str]) -> int:
        """One pending delivery per active subscriber whose category set is in `keys`
        (category set -> variant key), every set in one pass over the subscribers;
        returns how many."""
        added, sets = 0, sorted(keys)
        for start in range(0, len(sets), 500):  # well inside any limit on parameters
            chunk = sets[start:start + 500]
            cases = " ".join("WHEN ? THEN ?" for _ in chunk)
            marks = ", ".join("?" for _ in chunk)
            added += db.execute(
                "INSERT INTO deliveries (edition_id, subscriber_id, email, name, variant_key) "
                f"SELECT ?, id, email, name, CASE categories {cases} END FROM subscribers "
                f"WHERE status = 'active' AND categories IN ({marks})",
                (edition_id, *[v for c in chunk for v in (c, keys[c])], *chunk)).rowcount
        return added

    def delivery_counts(self, edition_id: int) -> dict[str, int]:
        counts = {s: 0 for s in DELIVERY_STATES}
        for row in self.db.execute("SELECT status, COUNT(*) FROM deliveries "
                                   "WHERE edition_id = ? GROUP BY status", (edition_id,)):
            counts[row[0]] = row[1]
        return counts

    def recipients_per_variant(self, edition_id: int) -> dict[str, int]:
        counts = {row["key"]: 0 for row in self.db.execute(
            "SELECT key FROM variants WHERE edition_id = ? ORDER BY key", (edition_id,))}
        for row in self.db.execute("SELECT variant_key, COUNT(*) FROM deliveries WHERE "
                                   "edition_id = ? GROUP BY variant_key", (edition_id,)):
            counts[row[0]] = row[1]
        return counts

    def edition_subject(self, edition_id: int) -> str:
        row = self.db.execute("SELECT subject FROM variants WHERE edition_id = ? ORDER BY key "
                              "LIMIT 1", (edition_id,)).fetchone()
        return str(row[0]) if row else ""

    def variant(self, edition_id: int, key: str) -> StoredVariant | None:
        row = self.db.execute("SELECT * FROM variants WHERE edition_id = ? AND key = ?",
                              (edition_id, key)).fetchone()
        if row is None:
            return None
        return StoredVariant(key=row["key"],
                             categories=frozenset(split_categories(row["categories"])),
                             subject=row["subject"], html=row["html"], text=row["text"],
                             nonce=row["nonce"], stories=row["stories"],
                             dropped=row["dropped"])

    def insert_variant(self, db: Connection, edition_id: int, variant: Any) -> None:
        db.execute("INSERT OR IGNORE INTO variants VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (edition_id, variant.key, join_categories(variant.categories),
                    variant.subject, variant.html, variant.text, variant.nonce,
                    variant.stories, variant.dropped))

    def todo(self, edition_id: int, after_id: int, batch: int) -> list[PendingDelivery]:
        """The next deliveries still to send (pending, or deferred by an earlier run)."""
        return [PendingDelivery(*row) for row in self.db.execute(
            "SELECT id, subscriber_id, email, name, variant_key, attempts FROM deliveries "
            "WHERE edition_id = ? AND status IN ('pending', 'deferred') AND id > ? "
            "ORDER BY id LIMIT ?", (edition_id, after_id, batch))]

    def target(self, subscriber_id: int) -> tuple[str, ...] | None:
        """The categories of an active subscriber; None when they left or were removed."""
        row = self.db.execute("SELECT status, categories FROM subscribers WHERE id = ?",
                              (subscriber_id,)).fetchone()
        if row is None or row["status"] != "active":
            return None
        return split_categories(row["categories"])

    def record(self, delivery_id: int, status: str, *, attempts: int, reply: str = "",
               bounce_subscriber: int | None = None, variant_key: str | None = None) -> None:
        """Journal one result at once: committed before the next message on its connection."""
        outcome = Outcome(delivery_id, status, attempts, reply, bounce_subscriber, variant_key)
        if bounce_subscriber is None:
            self.db.execute(_RECORD, _record_values(outcome, now_iso(), time.time()))
            return  # one statement: its own transaction
        self.record_many([outcome])

    def record_many(self, outcomes: list[Outcome]) -> None:
        """Journal the results that came in together, in one transaction (the sender
        waits for it before the next message on each of their connections)."""
        stamp, now = now_iso(), time.time()
        # results touch their own rows: no queue on PostgreSQL, unless one marks a
        # subscriber bounced (a snapshot being taken reads subscribers, then writes)
        bounces = any(o.bounce_subscriber is not None for o in outcomes)
        with (self.write() if bounces else self.transaction()) as db:
            for outcome in outcomes:
                db.execute(_RECORD, _record_values(outcome, stamp, now))
                if outcome.bounce_subscriber is not None:
                    db.execute("UPDATE subscribers SET status = 'bounced', updated_at = ? "
                               "WHERE id = ? AND status = 'active'",
                               (stamp, outcome.bounce_subscriber))

    def sent_since(self, since: str) -> list[str]:
        """When each delivery accepted since `since` (any edition) was recorded, oldest
        first: what the hourly cap counts."""
        return [row[0] for row in self.db.execute(
            "SELECT updated_at FROM deliveries WHERE status = 'sent' AND updated_at >= ? "
            "ORDER BY updated_at", (since,))]

    def requeue_failed(self, edition_id: int) -> int:
        """Failed deliveries of an edition become deferred: the next run tries them again
        (a subscriber marked bounced meanwhile is skipped then)."""
        cursor = self.db.execute("UPDATE deliveries SET status = 'deferred', updated_at = ? "
                                 "WHERE edition_id = ? AND status = 'failed'",
                                 (now_iso(), edition_id))
        return int(cursor.rowcount)

    def failures(self, edition_id: int) -> list[DeliveryRow]:
        return [DeliveryRow(*row) for row in self.db.execute(
            "SELECT email, status, attempts, reply FROM deliveries WHERE edition_id = ? "
            "AND status IN ('failed', 'deferred') ORDER BY id", (edition_id,))]

    def edition_number(self, window: Window) -> int:
        """The number of the window's stored edition, or the one a new edition would get."""
        stored = self.edition(window=window)
        if stored is not None:
            return stored.number
        row = self.db.execute("SELECT MAX(number) FROM editions").fetchone()
        return int(row[0] or 0) + 1
