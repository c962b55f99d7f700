"""The SQLite store: subscribers, editions and the delivery journal.

WAL and a busy timeout let the web server, a send and the CLI share one file; every write
runs in `BEGIN IMMEDIATE` so two writers queue instead of failing. The schema version is
`PRAGMA user_version`; migrations only go forward.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
from newsletter.window import Window

STATUSES = ("pending", "active", "unsubscribed", "bounced", "complained")
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
MAILING = "('queued', 'sending', 'sent', 'failed')"  # signup states that mail someone


# a delivery's result; `heartbeat` stamps when it was recorded (see claims.py)
_RECORD = ("UPDATE deliveries SET status = ?, attempts = ?, reply = ?, updated_at = ?, "
           "variant_key = COALESCE(?, variant_key), claimed_by = NULL, heartbeat = ? "
           "WHERE id = ?")


def _record_values(outcome: Outcome, stamp: str, now: float) -> tuple[object, ...]:
    return (outcome.status, outcome.attempts, outcome.reply[:500], stamp,
            outcome.variant_key, now, outcome.delivery_id)


class StoreError(NewsletterError):
    """The database file cannot be opened or is newer than this program."""


class Store(Claims):
    def __init__(self, path: Path, *, timeout: float = 60.0) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=timeout, isolation_level=None,
                                      check_same_thread=False)
            self.db.row_factory = sqlite3.Row
            self.db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            self.db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: cannot open the database: {exc}") from exc

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; writers queue on the lock instead of failing."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            tables = [row[0] for row in self.db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
            if tables:
                raise StoreError(f"{self.path}: not a newsletter database (it has other "
                                 f"tables: {', '.join(tables[:5])}); point [store] path at "
                                 "a new file")
        if version > len(_MIGRATIONS):
            raise StoreError(f"{self.path}: schema version {version} is newer than this "
                             "program; upgrade newsletter")
        for number in range(version, len(_MIGRATIONS)):
            with self.write() as db:
                if db.execute("PRAGMA user_version").fetchone()[0] != number:
                    continue  # another process migrated meanwhile
                for statement in _MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number + 1}")

    # ------------------------------------------------------------ subscribers

    def subscriber(self, email_key: str) -> Subscriber | None:
        row = self.db.execute("SELECT * FROM subscribers WHERE email_key = ?",
                              (email_key,)).fetchone()
        return Subscriber.from_row(row) if row else None

    def subscriber_by_id(self, subscriber_id: int) -> Subscriber | None:
        row = self.db.execute("SELECT * FROM subscribers WHERE id = ?",
                              (subscriber_id,)).fetchone()
        return Subscriber.from_row(row) if row else None

    def insert_subscriber(self, db: sqlite3.Connection, *, email: str, email_key: str,
                          name: str, categories: tuple[str, ...], status: str, source: str,
                          created_at: str | None = None) -> int:
        stamp = now_iso()
        cursor = db.execute(
            "INSERT INTO subscribers (email, email_key, name, categories, status, source, "
            "created_at, confirmed_at, updated_at, unsubscribed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (email, email_key, name, join_categories(categories), status, source,
             created_at or stamp, stamp if status == "active" else None, stamp,
             stamp if status == "unsubscribed" else None))
        return int(cursor.lastrowid or 0)

    def update_subscriber(self, db: sqlite3.Connection, subscriber_id: int, *,
                          name: str | None = None, categories: tuple[str, ...] | None = None,
                          status: str | None = None) -> None:
        fields: dict[str, Any] = {"updated_at": now_iso()}
        if name is not None:
            fields["name"] = name
        if categories is not None:
            fields["categories"] = join_categories(categories)
        if status is not None:
            fields["status"] = status
            if status == "active":
                fields["confirmed_at"] = fields["updated_at"]
                fields["unsubscribed_at"] = None
            if status == "unsubscribed":
                fields["unsubscribed_at"] = fields["updated_at"]
        assignments = ", ".join(f"{k} = ?" for k in fields)
        db.execute(f"UPDATE subscribers SET {assignments} WHERE id = ?",
                   (*fields.values(), subscriber_id))

    def set_status(self, subscriber_id: int, status: str) -> None:
        """Change the status (and its time stamps) only when it differs."""
        with self.write() as db:
            current = db.execute("SELECT status FROM subscribers WHERE id = ?",
                                 (subscriber_id,)).fetchone()
            if current is not None and current["status"] != status:
                self.update_subscriber(db, subscriber_id, status=status)

    def start_import(self, db: sqlite3.Connection) -> None:
        """A scratch table of the addresses one import has seen, to report duplicates."""
        db.execute("CREATE TEMP TABLE IF NOT EXISTS import_seen "
                   "(email_key TEXT PRIMARY KEY, line INTEGER)")
        db.execute("DELETE FROM import_seen")

    def seen_in_import(self, db: sqlite3.Connection, email_key: str, line: int) -> int | None:
        """The line that had this address before in the import, or None (and remember it)."""
        first = db.execute("SELECT line FROM import_seen WHERE email_key = ?",
                           (email_key,)).fetchone()
        if first is not None:
            return int(first[0])
        db.execute("INSERT INTO import_seen VALUES (?, ?)", (email_key, line))
        return None

    def erase_subscriber(self, email_key: str) -> int:
        """Delete the person everywhere: their row and every delivery row naming them."""
        with self.write() as db:
            row = db.execute("SELECT id FROM subscribers WHERE email_key = ?",
                             (email_key,)).fetchone()
            if row is None:
                return 0
            deleted = db.execute("DELETE FROM deliveries WHERE subscriber_id = ?",
                                 (row["id"],)).rowcount
            db.execute("DELETE FROM signups WHERE subscriber_id = ?", (row["id"],))
            deleted += db.execute("DELETE FROM bounces WHERE subscriber_id = ?",
                                  (row["id"],)).rowcount
            db.execute("DELETE FROM subscribers WHERE id = ?", (row["id"],))
            return 1 + deleted

    def subscribers(self, *, status: str | None = None,
                    category: str | None = None) -> Iterator[Subscriber]:
        sql, args = "SELECT * FROM subscribers", []
        clauses = []
        if status:
            clauses.append("status = ?")
            args.append(status)
        if category:
            clauses.append("(categories = '' OR ';' || categories || ';' LIKE ?)")
            args.append(f"%;{category};%")
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        for row in self.db.execute(sql + " ORDER BY id", args):
            yield Subscriber.from_row(row)

    def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """Subscribers per status, and active subscribers per chosen category ('' = all)."""
        by_status = {s: 0 for s in STATUSES}
        for row in self.db.execute("SELECT status, COUNT(*) AS n FROM subscribers "
                                   "GROUP BY status"):
            by_status[row["status"]] = row["n"]
        by_category: dict[str, int] = {}
        for row in self.db.execute("SELECT categories, COUNT(*) AS n FROM subscribers "
                                   "WHERE status = 'active' GROUP BY categories"):
            for name in split_categories(row["categories"]) or ("",):
                by_category[name] = by_category.get(name, 0) + row["n"]
        return by_status, by_category

    def variant_demand(self) -> dict[str, int]:
        """Active subscribers per category set (';'-joined, '' = all)."""
        return {row["categories"]: row["n"] for row in self.db.execute(
            "SELECT categories, COUNT(*) AS n FROM subscribers WHERE status = 'active' "
            "GROUP BY categories ORDER BY categories")}

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

    def insert_edition(self, db: sqlite3.Connection, *, number: int, window: Window,
                       nonce: str, payload: str) -> int:
        cursor = db.execute(
            "INSERT INTO editions (number, window_start, window_end, created_at, nonce, "
            "payload) VALUES (?, ?, ?, ?, ?, ?)",
            (number, window.start.isoformat(), window.end.isoformat(), now_iso(), nonce,
             payload))
        return int(cursor.lastrowid or 0)

    def insert_deliveries(self, db: sqlite3.Connection, edition_id: int,
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

    def insert_variant(self, db: sqlite3.Connection, edition_id: int, variant: Any) -> None:
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
        with self.write() as db:
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

    # ------------------------------------------------------------ web signups

    def record_signup(self, *, at: float, network: str, email: str, email_key: str, name: str,
                      categories: tuple[str, ...], since_network: float, per_network: int,
                      per_day: int) -> str | None:
        """One signup post, in one transaction so concurrent posts (several processes
        too) see each other: None when the network is over its limit, else the state of
        the new signups row: 'queued' (a confirmation to send) or 'none'."""
        with self.write() as db:
            recent = db.execute("SELECT COUNT(*) FROM signups WHERE network = ? AND at > ?",
                                (network, since_network)).fetchone()[0]
            if recent >= per_network:
                return None
            stamp = now_iso()
            db.execute("INSERT INTO subscribers (email, email_key, name, categories, status, "
                       "source, created_at, updated_at) VALUES (?, ?, ?, ?, 'pending', 'web', "
                       "?, ?) ON CONFLICT (email_key) DO NOTHING",
                       (email, email_key, name, join_categories(categories), stamp, stamp))
            found = db.execute("SELECT id, status FROM subscribers WHERE email_key = ?",
                               (email_key,)).fetchone()
            mailed = db.execute(f"SELECT COUNT(*) FROM signups WHERE email_key = ? AND at > ? "
                                f"AND state IN {MAILING}",
                                (email_key, at - 24 * 3600)).fetchone()[0]
            wants_mail = found["status"] in ("pending", "unsubscribed", "bounced")
            state = "queued" if wants_mail and mailed < per_day else "none"
            # a fresh attempt keeps a pending signup from expiring (the same statement
            # whatever the status: the same work for every address)
            db.execute("UPDATE subscribers SET updated_at = ? WHERE id = ? AND "
                       "status = 'pending'", (stamp, found["id"]))
            db.execute("INSERT INTO signups (at, network, email_key, subscriber_id, name, "
                       "categories, state) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (at, network, email_key, found["id"], name, join_categories(categories),
                        state))
            return state

    def claim_confirmation(self, now: float, lease: float) -> sqlite3.Row | None:
        """The next confirmation email due, claimed for `lease` seconds (a crashed claimer's
        rows come back when the lease ends)."""
        with self.write() as db:
            row: sqlite3.Row | None = db.execute(
                "SELECT g.id, g.name, g.attempts, s.email FROM signups g JOIN subscribers s "
                "ON s.id = g.subscriber_id WHERE g.state IN ('queued', 'sending') "
                "AND g.next_at <= ? ORDER BY g.id LIMIT 1", (now,)).fetchone()
            if row is not None:
                db.execute("UPDATE signups SET state = 'sending', next_at = ?, "
                           "attempts = attempts + 1 WHERE id = ?", (now + lease, row["id"]))
            return row

    def finish_confirmation(self, signup_id: int, state: str, reply: str,
                            next_at: float = 0.0) -> None:
        self.db.execute("UPDATE signups SET state = ?, reply = ?, next_at = ? WHERE id = ?",
                        (state, reply[:500], next_at, signup_id))

    def signup_state(self, signup_id: int) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(
            "SELECT * FROM signups WHERE id = ?", (signup_id,)).fetchone()
        return row

    def confirm_signup(self, signup_id: int) -> Subscriber | None:
        """Activate the subscriber of a signup with the name and categories chosen in it;
        None when the signup is unknown or older than the subscriber's last unsubscribe
        (an old confirmation mail never undoes a later unsubscribe)."""
        with self.write() as db:
            row = db.execute("SELECT g.at, g.name AS chosen_name, g.categories AS chosen, s.* "
                             "FROM signups g JOIN "
                             "subscribers s ON s.id = g.subscriber_id WHERE g.id = ?",
                             (signup_id,)).fetchone()
            if row is None or row["status"] not in ("pending", "active", "unsubscribed",
                                                    "bounced"):
                return None
            left = row["unsubscribed_at"]  # whole seconds: compare with the signup's second
            if left and datetime.fromisoformat(left).timestamp() > int(row["at"]):
                return None
            if row["status"] != "active":
                self.update_subscriber(db, row["id"], name=row["chosen_name"],
                                       categories=split_categories(row["chosen"]),
                                       status="active")
            return self.subscriber_by_id(row["id"])

    def prune_signups(self, *, before: str, before_at: float) -> tuple[int, int]:
        """Delete pending subscribers untouched since `before` that never confirmed, and
        signup rows older than `before_at`: (subscribers, signup rows) removed."""
        with self.write() as db:
            stale = "status = 'pending' AND confirmed_at IS NULL AND updated_at < ?"
            rows = db.execute(f"DELETE FROM signups WHERE at < ? AND state NOT IN "
                              f"('queued', 'sending') OR subscriber_id IN "
                              f"(SELECT id FROM subscribers WHERE {stale})",
                              (before_at, before)).rowcount
            people = db.execute(f"DELETE FROM subscribers WHERE {stale}", (before,)).rowcount
            return people, rows

    # ------------------------------------------------------------ bounces and complaints

    def delivery_by_id(self, delivery_id: int) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(
            "SELECT d.edition_id, d.subscriber_id, d.email, e.nonce FROM deliveries d "
            "JOIN editions e ON e.id = d.edition_id WHERE d.id = ?", (delivery_id,)).fetchone()
        return row

    def delivery_of(self, edition_id: int, subscriber_id: int) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(
            "SELECT edition_id, subscriber_id, email FROM deliveries "
            "WHERE edition_id = ? AND subscriber_id = ?", (edition_id, subscriber_id)).fetchone()
        return row

    def last_delivery_to(self, subscriber_id: int) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(
            "SELECT edition_id, subscriber_id, email FROM deliveries WHERE subscriber_id = ? "
            "AND status = 'sent' ORDER BY edition_id DESC LIMIT 1", (subscriber_id,)).fetchone()
        return row

    def bounce_known(self, message_key: str) -> bool:
        return self.db.execute("SELECT 1 FROM bounces WHERE message_key = ?",
                               (message_key,)).fetchone() is not None

    def record_bounce(self, *, message_key: str, kind: str, edition_id: int | None,
                      subscriber_id: int | None, recipient: str, status: str, detail: str,
                      received_at: str, soft_limit: int, soft_since: str) -> str | None:
        """Record one bounce mailbox message once; returns the subscriber's new status
        when this message changed it (hard -> bounced, enough soft -> bounced,
        complaint -> complained)."""
        with self.write() as db:
            inserted = db.execute(
                "INSERT OR IGNORE INTO bounces (message_key, kind, edition_id, subscriber_id, "
                "recipient, status, detail, received_at, processed_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (message_key, kind, edition_id, subscriber_id, recipient[:320], status,
                 detail[:500], received_at, now_iso())).rowcount
            if not inserted or subscriber_id is None:
                return None
            new: str | None = None
            allowed: tuple[str, ...] = ("pending", "active")
            if kind == "complaint":  # never mailed again, whatever the status was
                new, allowed = "complained", ("pending", "active", "unsubscribed", "bounced")
            elif kind == "hard":
                new = "bounced"
            elif kind == "soft":
                count = db.execute("SELECT COUNT(*) FROM bounces WHERE subscriber_id = ? AND "
                                   "kind = 'soft' AND received_at >= ?",
                                   (subscriber_id, soft_since)).fetchone()[0]
                new = "bounced" if count >= soft_limit else None
            if new is None:
                return None
            marks = ", ".join("?" for _ in allowed)
            changed = db.execute(
                f"UPDATE subscribers SET status = ?, updated_at = ? WHERE id = ? "
                f"AND status IN ({marks})", (new, now_iso(), subscriber_id, *allowed)).rowcount
            return new if changed else None

    def bounce_counts(self, edition_id: int) -> dict[str, int]:
        counts = {k: 0 for k in ("hard", "soft", "complaint")}
        for row in self.db.execute("SELECT kind, COUNT(*) FROM bounces WHERE edition_id = ? "
                                   "GROUP BY kind", (edition_id,)):
            counts[row[0]] = row[1]
        return counts
