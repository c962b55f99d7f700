"""Subscriber validation, the subscriber commands' library side, CSV import and export."""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from newsletter.config import Settings
from newsletter.errors import SubscriberError
from newsletter.store import STATUSES, Store, Subscriber
from newsletter.store_backend import INTEGRITY_ERRORS, Connection
from newsletter.store_subscribers import NewSubscriber, SubscriberChange

LEFT = ("unsubscribed", "bounced", "complained")  # statuses an import never raises
EXPORT_COLUMNS = ("email", "name", "categories", "status", "created", "source")
# import rows looked up and written together: a few round trips a chunk instead of a few
# a row (PostgreSQL), and a chunk's rows are all the import holds in memory; its look-ups
# name at most CHUNK addresses (older SQLite takes at most 999 parameters)
CHUNK = 500
CHUNK_CHARACTERS = 4_000_000  # …or fewer rows when they are wide (cells of up to 128K)
# Column names of other tools' exports (Mailchimp, listmonk) mapped to ours.
_COLUMN_ALIASES = {
    "email": "email", "email address": "email", "e-mail": "email", "mail": "email",
    "name": "name", "full name": "name", "first name": "first_name", "last name": "last_name",
    "categories": "categories", "category": "categories",
    "status": "status", "created": "created", "created_at": "created", "optin_time": "created",
    "source": "source",
}
_STATUS_ALIASES = {
    "active": "active", "enabled": "active", "subscribed": "active", "confirmed": "active",
    "pending": "pending", "unconfirmed": "pending",
    "unsubscribed": "unsubscribed", "disabled": "unsubscribed", "blocklisted": "unsubscribed",
    "blacklisted": "unsubscribed",
    "bounced": "bounced", "cleaned": "bounced", "complained": "complained",
}


def normalize_email(text: str, *, utf8: bool = True,
                    special_use: bool = True) -> tuple[str, str]:
    """(address as stored, key compared case-insensitively); IDN domains normalized.
    A non-ASCII local part needs SMTPUTF8: refused unless `utf8` ([send] smtputf8);
    special-use domains (.test, .local, .invalid) are refused unless `special_use`."""
    try:
        email = _validated(text.strip(), special_use)
    except EmailNotValidError as exc:
        raise SubscriberError(f"invalid email address {text.strip()!r}: {exc}") from exc
    if not utf8 and not email.rpartition("@")[0].isascii():
        raise SubscriberError(f"{email}: a non-ASCII local part needs SMTPUTF8; set [send] "
                              "smtputf8 = true if your SMTP server offers it")
    return email, email.casefold()


def _validated(text: str, special_use: bool) -> str:
    try:
        return str(validate_email(text, check_deliverability=False,
                                  test_environment=special_use).normalized)
    except EmailNotValidError as exc:
        # the validator lets only .test through; check the others as if they were .test
        local, _, domain = text.rpartition("@")
        stem, dot, tld = domain.rpartition(".")
        if not special_use or not dot or tld.lower() not in SPECIAL_USE_DOMAIN_NAMES:
            raise
        checked = str(validate_email(f"{local}@{stem}.test", check_deliverability=False,
                                     test_environment=True).normalized)
        if not checked.endswith(".test"):
            raise exc from None
        return checked[: -len(".test")] + "." + tld.lower()


def new_address(text: str, settings: Settings) -> tuple[str, str]:
    """An address to add (CLI, import, signup): the settings decide what is allowed."""
    return normalize_email(text, utf8=settings.send.smtputf8,
                           special_use=settings.special_use_domains)


def parse_categories(text: str | Iterable[str] | None, settings: Settings) -> tuple[str, ...]:
    """'a;b', 'a|b' or 'a,b' into configured category names (empty means every category)."""
    if text is None:
        return ()
    if isinstance(text, str):
        for sep in "|,":
            text = text.replace(sep, ";")
        names = [n.strip() for n in text.split(";")]
    else:
        names = [n.strip() for n in text]
    names = [n for n in names if n]
    valid = settings.category_names
    for name in names:
        if name not in valid:
            listed = ", ".join(valid) or "(none configured)"
            raise SubscriberError(f"unknown category {name!r} (valid: {listed})")
    return tuple(sorted(set(names)))


def parse_status(text: str) -> str:
    status = _STATUS_ALIASES.get(text.strip().casefold())
    if status is None:
        raise SubscriberError(f"unknown status {text!r} (valid: {', '.join(STATUSES)})")
    return status


def clean_name(text: str) -> str:
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())[:200]


class Subscribers:
    """The subscriber list as the CLI and the web pages use it."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store, self.settings = store, settings

    def get(self, email: str) -> Subscriber:
        _, key = normalize_email(email)
        found = self.store.subscriber(key)
        if found is None:
            raise SubscriberError(f"{email}: no such subscriber "
                                  "(see `newsletter subscribers list`)")
        return found

    def add(self, email: str, *, name: str = "", categories: str | None = None,
            status: str = "active", source: str = "cli") -> Subscriber:
        address, key = new_address(email, self.settings)
        cats = parse_categories(categories, self.settings)
        status = parse_status(status)
        with self.store.write() as db:
            try:
                new_id = self.store.insert_subscriber(
                    db, email=address, email_key=key, name=clean_name(name), categories=cats,
                    status=status, source=source)
            except INTEGRITY_ERRORS as exc:
                raise SubscriberError(f"{address}: already subscribed (change it with "
                                      "`newsletter subscribers set`)") from exc
        found = self.store.subscriber_by_id(new_id)
        assert found is not None
        return found

    def set(self, email: str, *, name: str | None = None, categories: str | None = None,
            status: str | None = None) -> Subscriber:
        current = self.get(email)
        cats = parse_categories(categories, self.settings) if categories is not None else None
        with self.store.write() as db:
            self.store.update_subscriber(
                db, current.id, name=clean_name(name) if name is not None else None,
                categories=cats, status=parse_status(status) if status else None)
        found = self.store.subscriber_by_id(current.id)
        assert found is not None
        return found

    def remove(self, email: str) -> int:
        _, key = normalize_email(email)
        removed = self.store.erase_subscriber(key)
        if not removed:
            raise SubscriberError(f"{email}: no such subscriber")
        return removed

    def prune(self, *, now: datetime | None = None) -> tuple[int, int]:
        """Remove signups never confirmed within `[web] pending_days`, and the web signup
        records past that age: (pending subscribers, signup records) removed."""
        cutoff = (now or datetime.now(UTC)) - timedelta(days=self.settings.web.pending_days)
        return self.store.prune_signups(before=cutoff.isoformat(timespec="seconds"),
                                        before_at=cutoff.timestamp())


# ---------------------------------------------------------------- CSV

@dataclass
class RowProblem:
    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0  # existing addresses left untouched (no --update)
    problems: list[RowProblem] = field(default_factory=list)
    kept_out: list[RowProblem] = field(default_factory=list)  # left; not re-activated
    written: bool = False


def _open_csv(handle: IO[str], label: str) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows as dicts keyed by our column names; `,` `;` or tab separated."""
    first = handle.readline()
    delimiter = max(",;\t", key=first.count)
    reader = csv.reader(itertools.chain([first], handle), delimiter=delimiter)
    header = next(reader, None)
    if not header:
        raise SubscriberError("empty file: expected a header row with an 'email' column")
    columns = [_COLUMN_ALIASES.get(h.strip().casefold(), "") for h in header]
    if "email" not in columns:
        raise SubscriberError(f"no 'email' column in the header ({', '.join(header)})")
    end = reader.line_num
    for row in reader:
        start, end = end + 1, reader.line_num
        if any("\n" in cell or "\r" in cell for cell in row):
            # no subscriber field spans lines: a quote was left open and swallowed rows
            raise SubscriberError(f"{label}:{start}: a quote (\") opened on this line is not "
                                  f"closed before line {end}; fix the quoting")
        if not any(cell.strip() for cell in row):
            continue
        values: dict[str, str] = {}
        for name, cell in zip(columns, row, strict=False):
            if name and name not in values:
                values[name] = unescape_cell(cell)
        if "name" not in values and ("first_name" in values or "last_name" in values):
            values["name"] = f"{values.get('first_name', '')} {values.get('last_name', '')}"
        yield reader.line_num, values


def import_csv(store: Store, settings: Settings, path: Path, *, dry_run: bool = False,
               skip_invalid: bool = False, update: bool = False) -> ImportReport:
    """Stream a CSV into the store in one transaction; any bad row (unless skipped) or a
    dry run writes nothing."""
    report = ImportReport()
    label = str(path)
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise SubscriberError(f"{path}: cannot open: {exc.strerror or exc}") from exc
    try:
        with handle, store.write() as db:
            store.start_import(db)
            for chunk in _chunks(_open_csv(handle, label)):
                _import_chunk(store, settings, db, chunk, label, update, report)
            if dry_run or (report.problems and not skip_invalid):
                raise _Discard
            report.written = True
    except _Discard:
        pass
    except UnicodeDecodeError as exc:
        raise SubscriberError(f"{path}: not UTF-8; save it as CSV UTF-8") from exc
    except csv.Error as exc:
        raise SubscriberError(f"{path}: not a readable CSV file: {exc}") from exc
    return report


class _Discard(Exception):
    """Roll the import's transaction back (dry run, or bad rows without --skip-invalid)."""


def _chunks(rows: Iterable[tuple[int, dict[str, str]]]
            ) -> Iterator[list[tuple[int, dict[str, str]]]]:
    chunk: list[tuple[int, dict[str, str]]] = []
    size = 0
    for line, row in rows:
        chunk.append((line, row))
        size += sum(len(value or "") for value in row.values())
        if len(chunk) == CHUNK or size >= CHUNK_CHARACTERS:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


@dataclass
class _Chunk:
    """What one chunk of rows found in the store, and what it will write."""
    seen: dict[str, int]  # key -> the line that had it, in an earlier chunk
    existing: dict[str, Subscriber]
    fresh: dict[str, int] = field(default_factory=dict)  # key -> line, in this chunk
    adds: list[NewSubscriber] = field(default_factory=list)
    changes: list[SubscriberChange] = field(default_factory=list)


def _import_chunk(store: Store, settings: Settings, db: Connection,
                  rows: list[tuple[int, dict[str, str]]], label: str, update: bool,
                  report: ImportReport) -> None:
    """Rows in file order against two look-ups (addresses earlier lines had, subscribers
    already there), then the chunk's writes in batches: a few round trips a chunk."""
    addresses: list[tuple[str, str] | SubscriberError] = []
    for _, row in rows:
        try:
            addresses.append(new_address(row.get("email", ""), settings))
        except SubscriberError as exc:
            addresses.append(exc)
    keys = list(dict.fromkeys(found[1] for found in addresses if isinstance(found, tuple)))
    chunk = _Chunk(store.seen_in_import(db, keys), store.subscribers_by_key(db, keys))
    for (line, row), found in zip(rows, addresses, strict=True):
        try:
            if isinstance(found, SubscriberError):
                raise found  # reported in its line's turn, as every other row problem
            _import_row(chunk, settings, row, found, (label, line), update, report)
        except SubscriberError as exc:
            report.problems.append(RowProblem(label, line, str(exc)))
    store.remember_in_import(db, chunk.fresh)
    store.insert_subscribers(db, chunk.adds)
    store.update_subscribers(db, chunk.changes)


def _import_row(chunk: _Chunk, settings: Settings, row: dict[str, str],
                found: tuple[str, str], where: tuple[str, int], update: bool,
                report: ImportReport) -> None:
    address, key = found
    first = chunk.seen.get(key, chunk.fresh.get(key))
    if first is not None:
        raise SubscriberError(f"duplicate of line {first} ({address})")
    chunk.fresh[key] = where[1]
    categories = parse_categories(row.get("categories"), settings)
    status = parse_status(row["status"]) if row.get("status", "").strip() else None
    name = clean_name(row.get("name", ""))
    existing = chunk.existing.get(key)
    if existing is None:
        chunk.adds.append(NewSubscriber(
            email=address, email_key=key, name=name, categories=categories,
            # printable text only: a NUL is refused by PostgreSQL, stored by SQLite
            status=status or "active", source=clean_name(row.get("source", "")) or "import",
            created_at=clean_name(row.get("created", "")) or None))
        report.added += 1
    elif update:
        if existing.status in LEFT and status in ("active", "pending"):
            report.kept_out.append(RowProblem(
                *where, f"{address} is {existing.status}: an import never "
                "subscribes them again (they can sign up themselves)"))
            status = None
        # only the columns the file has: a file without `categories` keeps them
        chunk.changes.append(SubscriberChange(
            existing.id, name=name if "name" in row else None,
            categories=categories if "categories" in row else None, status=status))
        report.updated += 1
    else:
        report.unchanged += 1


FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def escape_cell(value: str) -> str:
    """A cell a spreadsheet would run as a formula (`=HYPERLINK(…)`, `@SUM`, `-2+3`) gets
    a leading `'`; so does one that starts with `'`, so `unescape_cell` is exact."""
    return "'" + value if value.startswith(FORMULA_START) else value


def unescape_cell(value: str) -> str:
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_START) \
        else value


def export_csv(store: Store, out: IO[str]) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    with store.snapshot():  # one moment's list, however long the export takes
        for sub in store.subscribers():
            writer.writerow([escape_cell(v) for v in (
                sub.email, sub.name, ";".join(sub.categories), sub.status, sub.created_at,
                sub.source)])
            count += 1
    return count


def json_listing(found: Iterable[Subscriber], counts: dict[str, Any]) -> Iterator[str]:
    """`{"subscribers": […], "counts": {…}}` exactly as `json.dumps(indent=2)` writes it,
    a subscriber at a time: a list of any length in bounded memory."""
    yield '{\n  "subscribers": ['
    separator = "\n"
    for sub in found:
        yield separator + _indented(sub.to_dict(), "    ")
        separator = ",\n"
    yield ("]" if separator == "\n" else "\n  ]") + ',\n  "counts": ' \
        + _indented(counts, "  ").lstrip() + "\n}"


def _indented(value: Any, prefix: str) -> str:
    # JSON escapes every newline inside strings: each "\n" left starts a line of its own
    # (unlike textwrap, which also breaks at U+2028 in a value)
    return prefix + json.dumps(value, ensure_ascii=False, indent=2).replace("\n", "\n" + prefix)


def subscriber_line(sub: Subscriber) -> str:
    cats = ";".join(sub.categories) or "(all)"
    return f"{sub.email}\t{sub.name or '-'}\t{cats}\t{sub.status}"
