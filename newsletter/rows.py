"""The typed rows the store returns, and the small conversions they share."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from newsletter.store_backend import Row

_now: tuple[int, str] = (-1, "")


def now_iso() -> str:
    """UTC now to the second, formatted once a second (the journal asks many times)."""
    global _now
    second = int(time.time())
    if second != _now[0]:
        _now = (second, datetime.fromtimestamp(second, UTC).isoformat())
    return _now[1]


def storable(text: str, limit: int = 500) -> str:
    """A server's reply or a bounce's detail as both databases store it: cut to `limit`,
    bytes that were not UTF-8 (kept as lone surrogates) escaped, NUL (which PostgreSQL
    refuses in text) a space."""
    cut = text[:limit]
    return cut.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", " ")


def join_categories(categories: Any) -> str:
    return ";".join(sorted(set(categories)))


def split_categories(text: str) -> tuple[str, ...]:
    return tuple(c for c in text.split(";") if c)


@dataclass(frozen=True)
class Subscriber:
    id: int
    email: str
    name: str
    categories: tuple[str, ...]  # empty: every category
    status: str
    source: str
    created_at: str
    confirmed_at: str | None
    updated_at: str
    unsubscribed_at: str | None

    @classmethod
    def from_row(cls, row: Row) -> Subscriber:
        return cls(id=row["id"], email=row["email"], name=row["name"],
                   categories=split_categories(row["categories"]), status=row["status"],
                   source=row["source"], created_at=row["created_at"],
                   confirmed_at=row["confirmed_at"], updated_at=row["updated_at"],
                   unsubscribed_at=row["unsubscribed_at"])

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["categories"] = list(self.categories)
        return data


@dataclass(frozen=True)
class EditionRow:
    id: int
    number: int
    window_start: str
    window_end: str
    created_at: str
    nonce: str
    payload: str

    @classmethod
    def from_row(cls, row: Row) -> EditionRow:
        return cls(row["id"], row["number"], row["window_start"], row["window_end"],
                   row["created_at"], row["nonce"], row["payload"])


@dataclass(frozen=True)
class StoredVariant:
    """A rendered variant as stored (the fields of `render.RenderedVariant`)."""

    key: str
    categories: frozenset[str]
    subject: str
    html: str
    text: str
    nonce: str
    stories: int
    dropped: int


@dataclass(frozen=True)
class PendingDelivery:
    delivery_id: int
    subscriber_id: int
    email: str
    name: str
    variant_key: str
    attempts: int


@dataclass(frozen=True)
class DeliveryRow:
    email: str
    status: str
    attempts: int
    reply: str


@dataclass(frozen=True)
class Outcome:
    """One delivery's result, as the journal records it."""

    delivery_id: int
    status: str
    attempts: int
    reply: str = ""
    bounce_subscriber: int | None = None  # a hard bounce marks this subscriber bounced
    variant_key: str | None = None  # the variant it went out as, when it moved
