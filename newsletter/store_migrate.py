"""`newsletter store migrate --to postgresql://…`: copy the SQLite store into an empty
PostgreSQL database, ids kept, then compare the row counts of every table.

The copy reads one SQLite snapshot and writes in one PostgreSQL transaction: a failed run
leaves the target empty (only the schema), so it can simply be run again. Stop senders and
`serve` first: what they write to SQLite meanwhile would not be copied.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from newsletter.config import Settings
from newsletter.errors import ConfigError, NewsletterError
from newsletter.store import Store, StoreError
from newsletter.store_backend import DB_ERRORS, redacted, url_problem
from newsletter.store_copy import TABLES


class MigrateError(NewsletterError):
    """The copy ran but the target does not hold what the source does."""

    exit_code = 1


@dataclass
class MigrateReport:
    source: str
    target: str
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # table -> (from, to)

    @property
    def matches(self) -> bool:
        return all(a == b for a, b in self.counts.values())


def migrate_store(settings: Settings, target: str) -> MigrateReport:
    """Copy the configured SQLite store into the empty PostgreSQL database `target`."""
    problem = url_problem(target)
    if problem:
        raise ConfigError(f"--to: {problem}")
    if settings.store_url:
        raise ConfigError(f"[store] url is set ({redacted(settings.store_url)}): the store is "
                          "already PostgreSQL; `store migrate` copies the SQLite file of "
                          "[store] path")
    if not settings.store_path.exists():
        raise ConfigError(f"{settings.store_path}: no SQLite store to migrate (check "
                          "[store] path)")
    report = MigrateReport(str(settings.store_path), redacted(target))
    with Store(settings.store_path) as source, Store(target) as into:
        present = {t: n for t, n in into.table_counts().items() if n}
        if present:
            held = ", ".join(f"{n} {t}" for t, n in present.items())
            raise StoreError(f"{report.target}: not empty ({held}); migrate into a new, "
                             "empty database")
        try:
            with source.reading(), into.write():
                for table in TABLES:
                    columns, rows = source.rows_of(table)
                    into.copy_in(table, columns, rows)
                into.reset_identities(source.last_ids())
                before, after = source.table_counts(), into.table_counts()
                report.counts = {table: (before[table], after[table]) for table in TABLES}
                if not report.matches:  # raised inside: the copy is rolled back
                    raise MigrateError(f"{report.target}: the copy does not match: " +
                                       ", ".join(f"{t} {a} -> {b}" for t, (a, b)
                                                 in report.counts.items() if a != b))
        except DB_ERRORS as exc:
            raise StoreError(f"{report.target}: the copy failed and was rolled back: "
                             f"{exc}") from exc
    return report


def report_lines(report: MigrateReport) -> list[str]:
    lines = [f"{'table':<12} {'sqlite':>10} {'postgresql':>12}"]
    lines += [f"{table:<12} {a:>10,} {b:>12,}" for table, (a, b) in report.counts.items()]
    lines.append(f"copied {report.source} into {report.target}; every count matches. Now set "
                 f"[store] url = \"{report.target}\" and remove [store] path.")
    return lines
