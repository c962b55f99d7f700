"""Delivering a stored edition, journaling every result at once.

Nothing is lost or sent twice: the snapshot (`snapshot.py`) stored one delivery row per
recipient before anything is sent; each server answer is committed before the next
message on that connection (answers that come in together share one transaction); a
re-run resumes from the journal. A message in flight when the process dies is the only
one that can be sent again. Every failure is data: a job ends sent, deferred, failed or
skipped with its reason, and a run always ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass

from newsletter.claims import sender_id
from newsletter.compose import edition_from_json, variant_categories, variant_key
from newsletter.config import Settings
from newsletter.dkim import signer_for
from newsletter.errors import DeliveryError
from newsletter.limits import Limits
from newsletter.message import MessageFactory, Recipient, ascii_address, needs_utf8
from newsletter.render import RenderedVariant, Renderer
from newsletter.send_report import OnEvent, SendEvent, Settled, Stopping, Waiting
from newsletter.send_report import SendOptions as SendOptions
from newsletter.send_report import SendReport as SendReport
from newsletter.snapshot import Plan as Plan
from newsletter.snapshot import Snapshot as Snapshot
from newsletter.snapshot import find_snapshot as find_snapshot
from newsletter.snapshot import load_snapshot as load_snapshot
from newsletter.snapshot import plan_edition as plan_edition
from newsletter.snapshot import store_snapshot as store_snapshot
from newsletter.store import Outcome, PendingDelivery, Store
from newsletter.store_backend import DB_ERRORS
from newsletter.tokens import Tokens
from newsletter.transport import (
    Connection,
    PermanentFailure,
    TransientFailure,
    Transport,
    server_name,
)
from newsletter.verp import Envelope

MAX_BACKOFF = 60.0
# deliveries claimed at a time: small enough that senders sharing an edition finish
# within a fraction of a second of each other (a claim costs one short transaction)
BATCH = 100
# turns of the event loop a result waits for others to share its commit: on an idle loop
# a few microseconds; on a busy one, the answers of the connections meanwhile
TURNS = 2
WAIT = 0.1  # seconds between looks at other senders' claims when nothing is left to claim


# ---------------------------------------------------------------- sending

class JournalError(Exception):
    """A delivery result could not be written to the journal."""


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
                 on_event: OnEvent | None = None, started: float | None = None) -> None:
        self.store, self.settings, self.transport = store, settings, transport
        self.options, self.renderer, self.tokens = options, renderer, tokens
        self.stop = stop or asyncio.Event()
        self.observer: OnEvent = on_event or (lambda event, report: None)
        row = store.edition(edition_id=edition_id)
        if row is None:
            raise DeliveryError(f"edition id {edition_id} not found")
        self.edition = row
        self.report = SendReport(edition_id)
        self.factories: dict[str, MessageFactory | None] = {}
        self.domain = settings.from_address.rpartition("@")[2]
        self.limits = Limits(store, rate=options.rate, per_hour=options.per_hour,
                             burst=options.concurrency, stop=self.stop,
                             on_wait=lambda s: self.on_event(Waiting(s)))
        self.fatal: DeliveryError | None = None
        self.server_failures = 0  # consecutive; any answer about a recipient resets it
        self.unrecorded: list[tuple[_Job, str]] = []
        self.journal: list[tuple[_Job, Outcome]] = []  # results waiting for their commit
        self.journaled: asyncio.Future[None] | None = None  # resolved by that commit
        self.owner = sender_id()
        # rows deferred by any sender of this run (workers share it) wait for a later run
        self.started = started or time.time()
        self.verp = Envelope(settings, tokens)
        signer_for(settings.dkim)  # a bad DKIM key is a config error before any message

    def on_event(self, event: SendEvent) -> None:
        """Tell the observer; an observer that fails never changes a delivery's outcome."""
        with contextlib.suppress(Exception):
            self.observer(event, self.report)

    # -- variants, including ones a subscriber moved to after the snapshot
    def factory(self, key: str) -> MessageFactory | None:
        if key not in self.factories:
            stored = self.store.variant(self.report.edition_id, key)
            variant = RenderedVariant(**vars(stored)) if stored else self._render_new(key)
            self.factories[key] = (MessageFactory(self.settings, variant, self.renderer,
                                                  self.tokens) if variant else None)
        return self.factories[key]

    def _render_new(self, key: str) -> RenderedVariant | None:
        edition = edition_from_json(self.edition.payload)
        plan = edition.plan(variant_categories(key))
        if not plan.stories:
            return None
        variant = self.renderer.render(edition, plan)
        with self.store.write() as db:
            self.store.insert_variant(db, self.report.edition_id, variant)
        return variant

    async def run(self) -> SendReport:
        """Deliver every pending or deferred delivery; always ends, with a report."""
        self.queue: asyncio.Queue[_Job | None] = asyncio.Queue(maxsize=self.options.concurrency * 4)
        self.outstanding = 0
        self.produced_all = False
        self.finished = asyncio.Event()
        self.retries: set[asyncio.Task[None]] = set()
        workers = [asyncio.create_task(self._worker()) for _ in range(self.options.concurrency)]
        producer = asyncio.create_task(self._produce())
        beat = asyncio.create_task(self._heartbeat())
        for task in (*workers, producer):
            task.add_done_callback(self._task_ended)
        stop_wait = asyncio.create_task(self.stop.wait())
        finish_wait = asyncio.create_task(self.finished.wait())
        await asyncio.wait([finish_wait, stop_wait], return_when=asyncio.FIRST_COMPLETED)
        finish_wait.cancel()
        self.report.interrupted = (self.stop.is_set() and not self.finished.is_set()
                                   and not self.report.halted and not self.report.journal_error
                                   and self.fatal is None)
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
        if self.journal:
            self._flush()
        self._record_unrecorded()
        beat.cancel()
        with contextlib.suppress(*DB_ERRORS):
            self.store.release(self.owner)  # what this run claimed but did not send
        if self.fatal is not None and self.report.sent == 0:
            raise self.fatal
        return self.report

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        """A worker or the producer that dies stops the run instead of hanging it."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        self.report.journal_error = self.report.journal_error or f"{type(exc).__name__}: {exc}"
        self.stop.set()

    async def _produce(self) -> None:
        """Claim batches until nothing is left; then wait while other live senders hold
        claims, taking over those of a sender that died."""
        edition_id = self.report.edition_id
        taken, limit = 0, self.options.limit
        self.store.release_dead(edition_id)
        start = after = self.store.first_unsent(edition_id)
        while not self.stop.is_set():
            size = BATCH if limit is None else min(BATCH, limit - taken)
            if size <= 0:
                break
            rows = self._claim(after, size)
            if not rows and after > start:
                # one more look from the first unsent row: claims released meanwhile
                start = after = self.store.first_unsent(edition_id)
                continue
            if not rows:
                if self.store.release_dead(edition_id):
                    start = after = self.store.first_unsent(edition_id)
                    continue  # a sender on this host died: its claims are free now
                if not self._others_busy():
                    break
                await asyncio.sleep(WAIT)
                continue
            for row in rows:
                after = row.delivery_id
                taken += 1
                self.outstanding += 1
                await self.queue.put(_Job(row.delivery_id, row.subscriber_id, row.email,
                                          row.name, row.variant_key, row.attempts))
        self.produced_all = True
        self._check_finished()

    def _claim(self, after: int, size: int) -> list[PendingDelivery]:
        now = time.time()
        try:
            return self.store.claim(self.report.edition_id, self.owner, after=after,
                                    batch=size, now=now,
                                    stale_before=now - self.options.claim_timeout,
                                    started=self.started)
        except DB_ERRORS as exc:
            raise JournalError(f"cannot claim deliveries in the journal {self.store.path}: "
                               f"{exc}") from exc

    def _others_busy(self) -> bool:
        """Whether another live sender still holds claims on this edition."""
        fresh = time.time() - self.options.claim_timeout
        return any(owner != self.owner and beat >= fresh for owner, (_, beat)
                   in self.store.claimants(self.report.edition_id).items())

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.options.claim_timeout / 4)
            with contextlib.suppress(*DB_ERRORS):  # a missed beat only risks a takeover
                self.store.heartbeat(self.owner, time.time())

    def _check_finished(self) -> None:
        if self.produced_all and self.outstanding == 0:
            self.finished.set()

    def _settle(self, job: _Job, status: str, reply: str = "", *, bounce: bool = False,
                retarget: str | None = None) -> None:
        """Queue one result for the journal. The results that come in together are
        committed in one transaction a few turns of the loop later (`_flush`), and a
        connection sends its next message only once its last result is committed
        (`_deliver`): a crash can still resend only a message in flight."""
        if not self.journal:
            loop = asyncio.get_running_loop()
            self.journaled = loop.create_future()
            loop.call_soon(self._flush, TURNS)
        self.journal.append((job, Outcome(job.delivery_id, status, job.attempts, reply,
                                          job.subscriber_id if bounce else None, retarget)))

    def _flush(self, turns: int = 0) -> None:
        """Commit the queued results after `turns` more turns of the loop (answers that
        come in meanwhile join them), then count them. A journal that cannot be written
        stops the run at once: an accepted message not recorded would be sent again by a
        resume."""
        if turns > 0:
            asyncio.get_running_loop().call_soon(self._flush, turns - 1)
            return
        batch, self.journal = self.journal, []
        if not batch:
            return  # flushed already, at the end of the run
        error = None
        try:
            self.store.record_many([outcome for _, outcome in batch])
        except Exception as exc:  # a locked or full database, or a value it refuses:
            error = exc  # whatever it is, the results below are counted and the run stops
        for job, outcome in batch:
            status = outcome.status
            if status == "sent":  # the hourly cap now reads it from the journal
                self.limits.settle(accepted=True)
            setattr(self.report, status, getattr(self.report, status) + 1)
            self.outstanding -= 1
            if error is not None:
                if status == "sent":
                    self.unrecorded.append((job, outcome.reply))
                    self.report.unrecorded.append(job.email)
                continue
            if outcome.bounce_subscriber is not None:
                self.report.bounced += 1
            if outcome.variant_key:
                self.report.retargeted += 1
            self.on_event(Settled(job.email, status, outcome.reply))
        if error is not None:
            if not self.report.journal_error:
                self.report.journal_error = (f"cannot write the delivery journal "
                                             f"{self.store.path}: {error}")
                self.on_event(Stopping("journal", self.report.journal_error))
            self.stop.set()
        if self.journaled is not None and not self.journaled.done():
            self.journaled.set_result(None)
        self._check_finished()

    def _record_unrecorded(self) -> None:
        """One more try for accepted messages the journal missed (a lock may be gone)."""
        for job, reply in list(self.unrecorded):
            try:
                self.store.record(job.delivery_id, "sent", attempts=job.attempts, reply=reply)
            except (*DB_ERRORS, OSError):
                continue
            self.unrecorded.remove((job, reply))
            self.report.unrecorded.remove(job.email)

    async def _requeue(self, job: _Job, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.queue.put(job)

    def _retry_or_defer(self, job: _Job, reply: str, *, retry: bool = True) -> None:
        self.report.last_error = reply
        if not retry or job.tries >= self.options.max_attempts or self.stop.is_set():
            self._settle(job, "deferred", reply)
            return
        delay = min(MAX_BACKOFF, self.options.retry_delay * 2 ** (job.tries - 1))
        task = asyncio.create_task(self._requeue(job, delay * random.uniform(0.5, 1.5)))
        self.retries.add(task)
        task.add_done_callback(self.retries.discard)

    def _server_failed(self, job: _Job, reply: str) -> None:
        """A failure of the server or the connection, not of this recipient: after
        `circuit_breaker` in a row the run stops, leaving everything to a later resume."""
        self.server_failures += 1
        if self.server_failures >= self.options.circuit_breaker and not self.report.halted:
            self.report.halted = f"{server_name(self.settings)}: {reply}"
            self.on_event(Stopping("breaker", self.report.halted))
            self.stop.set()
        self._retry_or_defer(job, reply)

    def _current_target(self, job: _Job) -> tuple[str | None, MessageFactory | None]:
        """Skip a subscriber who left; follow one who changed categories."""
        categories = self.store.target(job.subscriber_id)
        if categories is None:
            return None, None
        key = variant_key(categories)
        return key, self.factory(key)

    async def _worker(self) -> None:
        conn: Connection | None = None
        used = 0
        while (job := await self.queue.get()) is not None:
            if self.stop.is_set():
                continue  # left pending in the journal for the next run
            try:
                conn, used = await self._deliver(job, conn, used)
            except Exception as exc:  # every failure is data: the job is deferred with it
                conn = await _close(conn)
                self._retry_or_defer(job, f"{type(exc).__name__}: {exc}", retry=False)
        await _close(conn)

    async def envelope(self, job: _Job, factory: MessageFactory) -> tuple[str, bytes]:
        """The envelope sender (VERP when configured) and the message bytes, DKIM-signed
        when configured, for one job."""
        message = await factory.build_async(
            Recipient(job.email, job.name, job.subscriber_id),
            message_id=f"{self.edition.nonce}.{job.delivery_id}@{self.domain}")
        return self.verp.sender(self.report.edition_id, job.subscriber_id), message

    async def _deliver(self, job: _Job, conn: Connection | None,
                       used: int) -> tuple[Connection | None, int]:
        """One attempt at one job; returns the connection to reuse."""
        key, factory = self._current_target(job)
        if factory is None or key is None:
            self._settle(job, "skipped", "unsubscribed, bounced, removed or moved to "
                         "a variant with no stories before sending")
            return conn, used
        retarget = key if key != job.variant_key else None
        utf8 = needs_utf8(job.email)
        if utf8 and not self.options.smtputf8:
            self._settle(job, "failed", "the address has a non-ASCII local part: set "
                         "[send] smtputf8 = true if your SMTP server offers SMTPUTF8",
                         retarget=retarget)
            return conn, used
        try:
            sender, message = await self.envelope(job, factory)
        except TransientFailure as exc:  # the signing helper went away: later, in-process
            self._retry_or_defer(job, exc.reply)
            return conn, used
        if self.journaled is not None and not self.journaled.done():
            await self.journaled  # the connection's last result is committed before this
            if self.stop.is_set():
                return conn, used  # e.g. the journal failed: left for the next run
        if not await self.limits.acquire():
            return conn, used  # stopped while waiting: left for the next run
        job.tries += 1
        job.attempts += 1
        accepted = False
        try:
            if conn is None:
                conn, used = await self.transport.connect(), 0
            reply = await conn.send(sender, ascii_address(job.email), message, utf8=utf8)
            accepted = True
        except TransientFailure as exc:
            if exc.reconnect:
                conn = await _close(conn)
            if exc.server:
                self._server_failed(job, exc.reply)
            else:
                self.server_failures = 0
                self._retry_or_defer(job, exc.reply)
            return conn, used
        except PermanentFailure as exc:
            self.server_failures = 0
            if not exc.bounce:
                domain = job.email.rpartition("@")[2].lower()
                self.report.refused.setdefault(domain, []).append(exc.reply)
            self._settle(job, "failed", exc.reply, bounce=exc.bounce, retarget=retarget)
            return conn, used
        except DeliveryError as exc:  # e.g. the SMTP login failed: nothing can be sent
            self.fatal = exc
            self.report.last_error = str(exc)
            self.stop.set()
            return conn, used
        except Exception as exc:  # e.g. a port out of range: still the server's side
            conn = await _close(conn)
            self._server_failed(job, f"{type(exc).__name__}: {exc}")
            return conn, used
        finally:
            if not accepted:  # an accepted message stays in flight until it is journaled
                self.limits.settle(accepted=False)
        self.server_failures = 0
        self._settle(job, "sent", reply, retarget=retarget)
        used += 1
        if used >= self.options.max_per_connection:
            conn = await _close(conn)
        return conn, used


async def _close(conn: Connection | None) -> Connection | None:
    """Close a connection, whatever state it is in; returns None to replace it with."""
    if conn is not None:
        with contextlib.suppress(Exception):
            await conn.close()
    return None
