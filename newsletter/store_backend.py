"""The two databases under `Store`: SQLite (a file, the embedded default) and PostgreSQL
(a URL, when several hosts share one store; `store_pg.py`, imported only then).

`Store` writes its SQL once, in SQLite's words, against the `Connection` protocol here;
SQLite's own connection is used as it is. Both backends give the store the same few
things: a write transaction (writers queue), the schema version and the tables present.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from newsletter.store_pg import PgBackend

URL_SCHEMES = ("postgresql", "postgres")


class PgError(Exception):
    """A PostgreSQL error (psycopg's, re-raised at the connection's edge), so callers
    catch one tuple without importing psycopg."""


class PgIntegrityError(PgError):
    """A constraint PostgreSQL refused (a unique key taken)."""


# what callers catch, whichever database the store is on
DB_ERRORS = (sqlite3.Error, PgError)
INTEGRITY_ERRORS = (sqlite3.IntegrityError, PgIntegrityError)


class Row(Protocol):
    """A result row by position or by column name (sqlite3.Row, or `PgRow`)."""

    def __getitem__(self, key: Any, /) -> Any: ...

    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    @property
    def lastrowid(self) -> int | None: ...

    @property
    def description(self) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What `Store` asks of a connection: sqlite3.Connection has it, `PgConnection` too."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> object: ...


def is_url(location: Path | str) -> bool:
    return isinstance(location, str) and location.split(":", 1)[0] in URL_SCHEMES


def url_problem(url: str) -> str | None:
    """Why `[store] url` cannot be used, or None."""
    parts = urlsplit(url)
    if parts.scheme not in URL_SCHEMES:
        return "must start with postgresql:// (for SQLite set [store] path instead)"
    if parts.password is not None:
        return ("must not contain a password; put it in the PGPASSWORD environment "
                "variable (or ~/.pgpass)")
    if not parts.path.strip("/"):
        return "must name a database, like postgresql://newsletter@db.example:5432/newsletter"
    return None


def redacted(url: str) -> str:
    """The URL without a password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}@{host}"))


# ------------------------------------------------------------ SQLite

class SqliteBackend:
    dialect = "sqlite"
    fresh = True  # a new connection: check the schema

    def __init__(self, path: Path, timeout: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=timeout, isolation_level=None,
                                  check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.execute("PRAGMA foreign_keys = ON")

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction; writers queue on the lock instead of failing."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        try:
            self.db.execute("COMMIT")
        except sqlite3.Error:
            if self.db.in_transaction:  # a failed COMMIT may leave it open: later writes
                self.db.execute("ROLLBACK")  # would join it and vanish with it
            raise

    def transaction(self) -> AbstractContextManager[Connection]:
        return self.write()  # SQLite has one kind of write transaction

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """One read transaction: every query in it sees the store as of its first read
        (WAL), whatever other processes commit meanwhile."""
        self.db.execute("BEGIN")
        try:
            yield self.db
        finally:
            self.db.execute("COMMIT")

    def version(self, db: Connection) -> int:
        return int(db.execute("PRAGMA user_version").fetchone()[0])

    def set_version(self, db: Connection, version: int) -> None:
        db.execute(f"PRAGMA user_version = {int(version)}")

    def tables(self) -> list[str]:
        return [row[0] for row in self.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name")]

    def migrated(self) -> None:
        pass

    def close(self) -> None:
        self.db.close()


Backend: TypeAlias = "SqliteBackend | PgBackend"


def open_backend(location: Path | str, timeout: float, *,
                 pooled: bool = False) -> SqliteBackend | PgBackend:
    if is_url(location):
        from newsletter.store_pg import PgBackend

        return PgBackend(str(location), timeout, pooled=pooled)
    return SqliteBackend(Path(location), timeout)
