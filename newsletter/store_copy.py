"""Whole tables out of one store and into another (`store migrate`); mixed into `Store`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from newsletter.store_backend import Backend, Connection

# parents before children (foreign keys); every one with an `id` identity but variants
TABLES = ("subscribers", "editions", "variants", "deliveries", "signups", "bounces")


class Copying:
    """The store's side of a migration (mixed into `Store`): whole tables out and in."""

    db: Connection
    backend: Backend

    def table_counts(self) -> dict[str, int]:
        return {table: int(self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                for table in TABLES}

    @contextmanager
    def reading(self) -> Iterator[None]:
        """One consistent snapshot for several reads (SQLite: a deferred transaction)."""
        self.db.execute("BEGIN")
        try:
            yield
        finally:
            self.db.execute("COMMIT")

    def rows_of(self, table: str) -> tuple[list[str], Iterator[Any]]:
        """A table's column names and its rows in id order (as stored, nothing converted)."""
        cursor = self.db.execute(f"SELECT * FROM {table} ORDER BY rowid")  # SQLite only
        return [column[0] for column in cursor.description], iter(cursor)

    def copy_in(self, table: str, columns: list[str], rows: Iterator[Any]) -> None:
        """Append rows (ids included) in one PostgreSQL COPY; inside `write()`."""
        from newsletter.store_pg import PgBackend

        assert isinstance(self.backend, PgBackend)
        self.backend.copy_in(f"COPY {table} ({', '.join(columns)}) FROM STDIN", rows)

    def last_ids(self) -> dict[str, int]:
        """The highest id each table ever gave (SQLite's AUTOINCREMENT never gives an
        erased subscriber's id again: neither may the copy, or old links would open a
        new person's page)."""
        return {str(row[0]): int(row[1]) for row in self.db.execute(
            "SELECT name, seq FROM sqlite_sequence")}

    def reset_identities(self, last_ids: dict[str, int]) -> None:
        """Each identity continues after the highest id the source ever gave."""
        for table in TABLES:
            if table != "variants":
                self.db.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                f"GREATEST(COALESCE((SELECT MAX(id) FROM {table}), 0), ?) "
                                "+ 1, false)", (last_ids.get(table, 0),))
