"""The weekly send: snapshot an edition, then deliver it, journaling every result at once.

Nothing is lost or sent twice: the edition, its rendered variants and one delivery row per
recipient are stored in one transaction before anything is sent; each server answer is
committed before the next message on that connection; a re-run resumes from the journal.
A message in flight when the process dies is the only one that can be sent again.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from newsletter.compose import (
    Edition,
    compose_window,
    edition_from_json,
    edition_to_json,
    variant_categories,
    variant_key,
)
from newsletter.config import Settings
from newsletter.content import Problem
from newsletter.dkim import signer_for
from newsletter.errors import DeliveryError
from newsletter.message import MessageFactory, Recipient, ascii_address
from newsletter.render import RenderedVariant, Renderer
from newsletter.store import Store, join_categories, now_iso, split_categories
from newsletter.tokens import Tokens
from newsletter.transport import Connection, PermanentFailure, TransientFailure, Transport
from newsletter.verp import Envelope
from newsletter.window import Window

MAX_BACKOFF = 60.0
BATCH = 500


# ---------------------------------------------------------------- snapshot

@dataclass
class Plan:
    """A composed, rendered edition not stored yet (what `send` shows before asking)."""

    edition: Edition
    variants: list[RenderedVariant]
    recipients: dict[str, int]  # variant key -> active subscribers
    empty: dict[str, int]  # variant key without stories -> subscribers who get nothing
    problems: list[Problem]


@dataclass
class Snapshot:
    edition_id: int
    number: int
    subject: str
    variants: dict[str, int]  # variant key -> recipients
    counts: dict[str, int]  # deliveries per status

    @property
    def todo(self) -> int:
        return self.counts["pending"] + self.counts["deferred"]


def plan_edition(store: Store, settings: Settings, window: Window, renderer: Renderer) -> Plan:
    """Compose the window and render one variant per category set active subscribers chose."""
    edition, loaded = compose_window(settings, window, store.edition_number(window))
    plan = Plan(edition, [], {}, {}, loaded.problems)
    for categories, count in store.variant_demand().items():
        variant_plan = edition.plan(split_categories(categories))
        if variant_plan.stories:
            plan.variants.append(renderer.render(edition, variant_plan))
            plan.recipients[variant_plan.key] = count
        else:
            plan.empty[variant_plan.key] = count
    return plan


def find_snapshot(store: Store, window: Window) -> Snapshot | None:
    row = store.edition(window=window)
    return None if row is None else load_snapshot(store, row)


def load_snapshot(store: Store, row: sqlite3.Row) -> Snapshot:
    edition_id = int(row["id"])
    variant_rows = store.variant_rows(edition_id)
    variants = {r["key"]: 0 for r in variant_rows}
    for r in store.db.execute("SELECT variant_key, COUNT(*) FROM deliveries WHERE "
                              "edition_id = ? GROUP BY variant_key", (edition_id,)):
        variants[r[0]] = r[1]
    subject = variant_rows[0]["subject"] if variant_rows else ""
    return Snapshot(edition_id, int(row["number"]), str(subject), variants,
                    store.delivery_counts(edition_id))


def store_snapshot(store: Store, plan: Plan) -> Snapshot:
    """Store the edition, its variants and one delivery row per recipient, in one
    transaction, before anything is sent. Another process may have stored the same
    window meanwhile: then that edition is the one to send."""
    window = plan.edition.window
    with store.write() as db:
        if store.edition(window=window) is None:
            cursor = db.execute(
                "INSERT INTO editions (number, window_start, window_end, created_at, nonce, "
                "payload) VALUES (?, ?, ?, ?, ?, ?)",
                (plan.edition.number, window.start.isoformat(), window.end.isoformat(),
                 now_iso(), secrets.token_hex(6), edition_to_json(plan.edition)))
            edition_id = int(cursor.lastrowid or 0)
            for variant in plan.variants:
                store.insert_variant(db, edition_id, variant)
                db.execute(
                    "INSERT INTO deliveries (edition_id, subscriber_id, email, name, variant_key) "
                    "SELECT ?, id, email, name, ? FROM subscribers "
                    "WHERE status = 'active' AND categories = ?",
                    (edition_id, variant.key, join_categories(variant.categories)))
    snapshot = find_snapshot(store, window)
    assert snapshot is not None
    return snapshot


def _variant_from_row(row: sqlite3.Row) -> RenderedVariant:
    categories = frozenset(split_categories(row["categories"]))
    return RenderedVariant(key=row["key"], categories=categories,
                           subject=row["subject"], html=row["html"], text=row["text"],
                           nonce=row["nonce"], stories=row["stories"], dropped=row["dropped"])


# ---------------------------------------------------------------- sending

@dataclass(frozen=True)
class SendOptions:
    concurrency: int = 4
    rate: float = 0.0
    per_hour: int = 0
    max_attempts: int = 5
    max_per_connection: int = 1000
    retry_delay: float = 1.0
    limit: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> SendOptions:
        s = settings.send
        values: dict[str, object] = {
            "concurrency": s.concurrency, "rate": s.rate, "per_hour": s.per_hour,
            "max_attempts": s.max_attempts, "max_per_connection": s.max_per_connection,
            "retry_delay": s.retry_delay}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


@dataclass
class SendReport:
    edition_id: int
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    skipped: int = 0
    retargeted: int = 0
    interrupted: bool = False
    last_error: str = ""
    started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        return self.sent + self.deferred + self.failed + self.skipped


class RateLimiter:
    """One token bucket for messages per second, and one for the hourly cap."""

    def __init__(self, rate: float, per_hour: int, burst: int) -> None:
        self.buckets = [(rate, float(max(1, burst)))] if rate > 0 else []
        if per_hour > 0:
            self.buckets.append((per_hour / 3600.0, float(per_hour)))
        self.tokens = [capacity for _, capacity in self.buckets]
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.buckets:
            return
        async with self.lock:
            while True:
                now = time.monotonic()
                elapsed, self.stamp = now - self.stamp, now
                delay = 0.0
                for n, (rate, capacity) in enumerate(self.buckets):
                    self.tokens[n] = min(capacity, self.tokens[n] + elapsed * rate)
                    if self.tokens[n] < 1:
                        delay = max(delay, (1 - self.tokens[n]) / rate)
                if delay <= 0:
                    self.tokens = [t - 1 for t in self.tokens]
                    return
                await asyncio.sleep(delay)


@dataclass
class _Job:
    delivery_id: int
    subscriber_id: int
    email: str
    name: str
    variant_key: str
    attempts: int  # over every run
    tries: int = 0  # in this run


class Sender:
    def __init__(self, store: Store, settings: Settings, edition_id: int,
                 transport: Transport, options: SendOptions, *, renderer: Renderer,
                 tokens: Tokens, stop: asyncio.Event | None = None,
                 on_result: Callable[[SendReport], None] | None = None) -> None:
        self.store, self.settings, self.transport = store, settings, transport
        self.options, self.renderer, self.tokens = options, renderer, tokens
        self.stop = stop or asyncio.Event()
        self.on_result = on_result or (lambda report: None)
        row = store.edition(edition_id=edition_id)
        if row is None:
            raise DeliveryError(f"edition id {edition_id} not found")
        self.edition_row = row
        self.report = SendReport(edition_id)
        self.factories: dict[str, MessageFactory | None] = {}
        self.domain = settings.from_address.rpartition("@")[2]
        self.limiter = RateLimiter(options.rate, options.per_hour, options.concurrency)
        self.fatal: DeliveryError | None = None
        self.envelope = Envelope(settings, tokens)
        signer_for(settings.dkim)  # a bad DKIM key is a config error before any message

    # -- variants, including ones a subscriber moved to after the snapshot
    def factory(self, key: str) -> MessageFactory | None:
        if key not in self.factories:
            row = self.store.db.execute("SELECT * FROM variants WHERE edition_id = ? AND "
                                        "key = ?", (self.report.edition_id, key)).fetchone()
            variant = _variant_from_row(row) if row else self._render_new(key)
            self.factories[key] = (MessageFactory(self.settings, variant, self.renderer,
                                                  self.tokens) if variant else None)
        return self.factories[key]

    def _render_new(self, key: str) -> RenderedVariant | None:
        edition = edition_from_json(self.edition_row["payload"])
        plan = edition.plan(variant_categories(key))
        if not plan.stories:
            return None
        variant = self.renderer.render(edition, plan)
        with self.store.write() as db:
            self.store.insert_variant(db, self.report.edition_id, variant)
        return variant

    async def run(self) -> SendReport:
        self.queue: asyncio.Queue[_Job | None] = asyncio.Queue(maxsize=self.options.concurrency * 4)
        self.outstanding = 0
        self.produced_all = False
        self.finished = asyncio.Event()
        self.retries: set[asyncio.Task[None]] = set()
        workers = [asyncio.create_task(self._worker()) for _ in range(self.options.concurrency)]
        producer = asyncio.create_task(self._produce())
        stop_wait = asyncio.create_task(self.stop.wait())
        await asyncio.wait([asyncio.create_task(self.finished.wait()), stop_wait],
                           return_when=asyncio.FIRST_COMPLETED)
        self.report.interrupted = self.stop.is_set() and not self.finished.is_set()
        self.stop.set()
        producer.cancel()
        for task in self.retries:
            task.cancel()
        while not self.queue.empty():
            self.queue.get_nowait()
        for _ in workers:
            await self.queue.put(None)
        await asyncio.gather(*workers, producer, *self.retries, return_exceptions=True)
        stop_wait.cancel()
        if self.fatal is not None and self.report.sent == 0:
            raise self.fatal
        if self.report.sent == 0 and self.report.deferred and not self.report.failed \
                and self.report.deferred == self.report.done:
            raise DeliveryError(f"nothing could be sent: {self.report.last_error} "
                                "(every delivery is kept; run the same send again to resume)")
        return self.report

    async def _produce(self) -> None:
        after, taken = 0, 0
        limit = self.options.limit
        while not self.stop.is_set():
            size = BATCH if limit is None else min(BATCH, limit - taken)
            rows = self.store.todo(self.report.edition_id, after, size) if size > 0 else []
            if not rows:
                break
            for row in rows:
                after = row["id"]
                taken += 1
                self.outstanding += 1
                await self.queue.put(_Job(row["id"], row["subscriber_id"], row["email"],
                                          row["name"], row["variant_key"], row["attempts"]))
        self.produced_all = True
        self._check_finished()

    def _check_finished(self) -> None:
        if self.produced_all and self.outstanding == 0:
            self.finished.set()

    def _settle(self, job: _Job, status: str, reply: str = "", *, bounce: bool = False,
                retarget: str | None = None) -> None:
        self.store.record(job.delivery_id, status, attempts=job.attempts, reply=reply,
                          bounce_subscriber=job.subscriber_id if bounce else None,
                          variant_key=retarget)
        setattr(self.report, status, getattr(self.report, status) + 1)
        if retarget:
            self.report.retargeted += 1
        self.outstanding -= 1
        self.on_result(self.report)
        self._check_finished()

    async def _requeue(self, job: _Job, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.queue.put(job)

    def _retry_or_defer(self, job: _Job, reply: str) -> None:
        self.report.last_error = reply
        if job.tries >= self.options.max_attempts or self.stop.is_set():
            self._settle(job, "deferred", reply)
            return
        delay = min(MAX_BACKOFF, self.options.retry_delay * 2 ** (job.tries - 1))
        task = asyncio.create_task(self._requeue(job, delay * random.uniform(0.5, 1.5)))
        self.retries.add(task)
        task.add_done_callback(self.retries.discard)

    def _current_target(self, job: _Job) -> tuple[str | None, MessageFactory | None]:
        """Skip a subscriber who left; follow one who changed categories."""
        row = self.store.db.execute("SELECT status, categories, name FROM subscribers "
                                    "WHERE id = ?", (job.subscriber_id,)).fetchone()
        if row is None or row["status"] != "active":
            return None, None
        key = variant_key(split_categories(row["categories"]))
        return key, self.factory(key)

    async def _worker(self) -> None:
        conn: Connection | None = None
        used = 0
        try:
            while (job := await self.queue.get()) is not None:
                if self.stop.is_set():
                    continue  # left pending in the journal for the next run
                key, factory = self._current_target(job)
                if factory is None or key is None:
                    self._settle(job, "skipped", "unsubscribed, bounced, removed or moved to "
                                 "a variant with no stories before sending")
                    continue
                await self.limiter.wait()
                job.tries += 1
                job.attempts += 1
                try:
                    if conn is None:
                        conn, used = await self.transport.connect(), 0
                    message = await factory.build_async(
                        Recipient(job.email, job.name, job.subscriber_id),
                        message_id=f"{self.edition_row['nonce']}.{job.delivery_id}@{self.domain}")
                    reply = await conn.send(
                        self.envelope.sender(self.report.edition_id, job.subscriber_id),
                        ascii_address(job.email), message)
                except TransientFailure as exc:
                    if exc.reconnect and conn is not None:
                        await conn.close()
                        conn = None
                    self._retry_or_defer(job, exc.reply)
                    continue
                except PermanentFailure as exc:
                    self._settle(job, "failed", exc.reply, bounce=exc.bounce,
                                 retarget=key if key != job.variant_key else None)
                    continue
                except DeliveryError as exc:
                    self.fatal = exc
                    self.report.last_error = str(exc)
                    self.stop.set()
                    continue
                self._settle(job, "sent", reply, retarget=key if key != job.variant_key else None)
                used += 1
                if used >= self.options.max_per_connection:
                    await conn.close()
                    conn = None
        finally:
            if conn is not None:
                await conn.close()
