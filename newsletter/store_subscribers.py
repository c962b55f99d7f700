"""The store's subscriber rows (mixed into `Store`): look-ups, inserts and updates, the
import's scratch table, erasure and counts."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, NamedTuple

from newsletter.rows import Subscriber, join_categories, now_iso, split_categories
from newsletter.store_backend import Connection

STATUSES = ("pending", "active", "unsubscribed", "bounced", "complained")
# subscribers read per query when listing: enough to amortize a round trip, few enough
# to keep memory flat at any list size
PAGE = 1000
INSERT = ("INSERT INTO subscribers (email, email_key, name, categories, status, source, "
          "created_at, confirmed_at, updated_at, unsubscribed_at) "
          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


class NewSubscriber(NamedTuple):
    email: str
    email_key: str
    name: str
    categories: tuple[str, ...]
    status: str
    source: str
    created_at: str | None = None


class SubscriberChange(NamedTuple):
    """What to change of one subscriber (None: leave it)."""
    id: int
    name: str | None = None
    categories: tuple[str, ...] | None = None
    status: str | None = None


def _insert_values(new: NewSubscriber) -> tuple[Any, ...]:
    stamp = now_iso()
    return (new.email, new.email_key, new.name, join_categories(new.categories), new.status,
            new.source, new.created_at or stamp, stamp if new.status == "active" else None,
            stamp, stamp if new.status == "unsubscribed" else None)


def _update(change: SubscriberChange) -> tuple[str, tuple[Any, ...]]:
    """The UPDATE statement for a change (and its time stamps), and its arguments."""
    fields: dict[str, Any] = {"updated_at": now_iso()}
    if change.name is not None:
        fields["name"] = change.name
    if change.categories is not None:
        fields["categories"] = join_categories(change.categories)
    if change.status is not None:
        fields["status"] = change.status
        if change.status == "active":
            fields["confirmed_at"] = fields["updated_at"]
            fields["unsubscribed_at"] = None
        if change.status == "unsubscribed":
            fields["unsubscribed_at"] = fields["updated_at"]
    assignments = ", ".join(f"{k} = ?" for k in fields)
    return (f"UPDATE subscribers SET {assignments} WHERE id = ?",
            (*fields.values(), change.id))


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


class SubscriberStore:
    db: Connection

    def write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def subscriber(self, email_key: str) -> Subscriber | None:
        row = self.db.execute("SELECT * FROM subscribers WHERE email_key = ?",
                              (email_key,)).fetchone()
        return Subscriber.from_row(row) if row else None

    def subscriber_by_id(self, subscriber_id: int) -> Subscriber | None:
        row = self.db.execute("SELECT * FROM subscribers WHERE id = ?",
                              (subscriber_id,)).fetchone()
        return Subscriber.from_row(row) if row else None

    def insert_subscriber(self, db: Connection, *, email: str, email_key: str,
                          name: str, categories: tuple[str, ...], status: str, source: str,
                          created_at: str | None = None) -> int:
        cursor = db.execute(INSERT, _insert_values(NewSubscriber(
            email, email_key, name, categories, status, source, created_at)))
        return int(cursor.lastrowid or 0)

    def insert_subscribers(self, db: Connection, people: Iterable[NewSubscriber]) -> None:
        """Many inserts as one batch (one statement on PostgreSQL, not a round trip each)."""
        db.executemany(INSERT, [_insert_values(new) for new in people])

    def update_subscriber(self, db: Connection, subscriber_id: int, *,
                          name: str | None = None, categories: tuple[str, ...] | None = None,
                          status: str | None = None) -> None:
        db.execute(*_update(SubscriberChange(subscriber_id, name, categories, status)))

    def update_subscribers(self, db: Connection, changes: Iterable[SubscriberChange]) -> None:
        """Many updates in one batch per set of columns changed (pipelined on PostgreSQL)."""
        batches: dict[str, list[tuple[Any, ...]]] = {}
        for change in changes:
            sql, args = _update(change)
            batches.setdefault(sql, []).append(args)
        for sql, many in batches.items():
            db.executemany(sql, many)

    def set_status(self, subscriber_id: int, status: str) -> None:
        """Change the status (and its time stamps) only when it differs."""
        with self.write() as db:
            current = db.execute("SELECT status FROM subscribers WHERE id = ?",
                                 (subscriber_id,)).fetchone()
            if current is not None and current["status"] != status:
                self.update_subscriber(db, subscriber_id, status=status)

    def start_import(self, db: Connection) -> None:
        """A scratch table of the addresses one import has seen, to report duplicates."""
        db.execute("CREATE TEMP TABLE IF NOT EXISTS import_seen "
                   "(email_key TEXT PRIMARY KEY, line INTEGER)")
        db.execute("DELETE FROM import_seen")

    def seen_in_import(self, db: Connection, keys: Sequence[str]) -> dict[str, int]:
        """The line where the import had each of these addresses before (those it had)."""
        return {row[0]: int(row[1]) for row in db.execute(
            f"SELECT email_key, line FROM import_seen WHERE email_key IN ({_marks(keys)})",
            tuple(keys))} if keys else {}

    def remember_in_import(self, db: Connection, lines: dict[str, int]) -> None:
        """Addresses the import has now seen, with their lines (none seen before)."""
        db.executemany("INSERT INTO import_seen VALUES (?, ?)", list(lines.items()))

    def subscribers_by_key(self, db: Connection, keys: Sequence[str]) -> dict[str, Subscriber]:
        """The subscribers with these keys (those there are), in one query."""
        return {row["email_key"]: Subscriber.from_row(row) for row in db.execute(
            f"SELECT * FROM subscribers WHERE email_key IN ({_marks(keys)})",
            tuple(keys))} if keys else {}

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
        """In id order, a page at a time: memory stays bounded on both backends (psycopg
        would hold a whole result in memory), and no cursor stays open between pages, so
        the caller may use the store while it iterates. Inside `Store.snapshot()` every
        page sees the same moment."""
        clauses, args = ["id > ?"], []
        if status:
            clauses.append("status = ?")
            args.append(status)
        if category:
            clauses.append("(categories = '' OR ';' || categories || ';' LIKE ?)")
            args.append(f"%;{category};%")
        sql = (f"SELECT * FROM subscribers WHERE {' AND '.join(clauses)} "
               "ORDER BY id LIMIT ?")
        last = 0  # ids start at 1 on both backends
        while True:
            page = self.db.execute(sql, (last, *args, PAGE)).fetchall()
            for row in page:
                yield Subscriber.from_row(row)
            if len(page) < PAGE:
                return
            last = page[-1]["id"]

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
