"""One `newsletter send` run: plan or resume the window's edition, confirm, deliver, report.

The CLI stays a few lines: this module owns the words it prints and the one
`asyncio.run()` with its signal handlers.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from newsletter.compose import compose_window
from newsletter.config import Settings, secret_key
from newsletter.dkim import signer_for
from newsletter.errors import NewsletterError
from newsletter.message import MessageFactory, Recipient, ascii_address, needs_utf8
from newsletter.render import Renderer
from newsletter.send import (
    Sender,
    SendOptions,
    SendReport,
    find_snapshot,
    load_snapshot,
    plan_edition,
    store_snapshot,
)
from newsletter.send_report import SendEvent, Settled, Waiting
from newsletter.send_workers import run_workers
from newsletter.snapshot import check_overlap
from newsletter.store import Store
from newsletter.subscribers import normalize_email, parse_categories
from newsletter.tokens import Tokens
from newsletter.transport import describe, make_transport, send_one
from newsletter.verp import Envelope
from newsletter.window import Window


def signing_tokens(settings: Settings) -> Tokens:
    """Real sends need NEWSLETTER_SECRET_KEY; the local Maildir outbox may do without."""
    return Tokens(secret_key(development=settings.smtp is None))


class SendJob:
    def __init__(self, settings: Settings, window: Window, *, limit: int | None = None,
                 concurrency: int | None = None, rate: float | None = None,
                 intro_file: Path | None = None, retry_failed: bool = False,
                 allow_overlap: bool = False, workers: int = 1, join: bool = False) -> None:
        self.settings, self.window = settings, window
        self.retry_failed, self.workers = retry_failed, workers
        self.options = SendOptions.from_settings(settings, limit=limit,
                                                 concurrency=concurrency, rate=rate)
        self.tokens = signing_tokens(settings)
        signer_for(settings.dkim)  # a bad DKIM key stops the run before the edition is stored
        self.store = Store(settings.store_location)
        self.renderer = Renderer(settings)
        self.via = describe(settings)
        self.snapshot = find_snapshot(self.store, window)
        if self.snapshot is None and join:
            self.store.close()
            raise NewsletterError(f"no edition of {window.label()} is stored to join; start "
                                  "it with `newsletter send` and this window first")
        if self.snapshot is None and not allow_overlap:
            check_overlap(self.store, window)
        self.plan = None if self.snapshot else plan_edition(self.store, settings, window,
                                                            self.renderer, intro_file)

    def __enter__(self) -> SendJob:
        return self

    def __exit__(self, *exc: object) -> None:
        self.store.close()

    def todo(self) -> int:
        if self.snapshot is not None:
            again = self.snapshot.counts["failed"] if self.retry_failed else 0
            return self.snapshot.todo + again
        assert self.plan is not None
        return sum(self.plan.recipients.values())

    def describe(self) -> str:
        lines = []
        if self.snapshot is not None:
            snap = self.snapshot
            counts = ", ".join(f"{k} {v}" for k, v in snap.counts.items())
            lines.append(f"Edition {snap.number} ({self.window.label()}) was stored before: "
                         f"resuming it. {snap.subject}")
            lines.append(f"  deliveries: {counts}")
            variants = snap.variants
        else:
            assert self.plan is not None
            for problem in self.plan.problems:
                lines.append(f"warning: {problem}")
            first = self.plan.variants[0].subject if self.plan.variants else ""
            lines.append(f"Edition {self.plan.edition.number} ({self.window.label()}): "
                         f"{len(self.plan.edition.stories)} stories. {first}")
            variants = self.plan.recipients
            for key, count in self.plan.empty.items():
                lines.append(f"  {key}: no stories this week; its {count} subscribers get "
                             "nothing")
        for key, count in variants.items():
            lines.append(f"  variant {key}: {count} recipients")
        workers = f" by {self.workers} worker processes" if self.workers > 1 else ""
        lines.append(f"Delivery: {self.via}; {self.todo()} messages to send{workers}.")
        return "\n".join(lines)

    def done_message(self) -> str:
        if self.snapshot is not None:
            return f"Edition {self.snapshot.number} is fully sent; nothing to do."
        return "No active subscriber gets any story in this window; nothing to send."

    def run(self, *, progress: bool = False) -> SendReport:
        if self.snapshot is None:
            assert self.plan is not None
            self.snapshot = store_snapshot(self.store, self.plan)
        elif self.retry_failed:
            self.store.requeue_failed(self.snapshot.edition_id)
            self.snapshot = find_snapshot(self.store, self.window)
            assert self.snapshot is not None
        total = self.snapshot.todo if self.options.limit is None else min(
            self.snapshot.todo, self.options.limit)
        if self.workers > 1:
            started = time.monotonic()
            return run_workers(self.settings, self.snapshot.edition_id, self.options,
                               self.workers, tokens=self.tokens,
                               progress=_progress_line(total, started) if progress else None)
        return asyncio.run(self._run(total, progress))

    async def _run(self, total: int, progress: bool) -> SendReport:
        assert self.snapshot is not None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        shown = [0.0, 0.0]  # last progress line, last notice of a wait

        def show(event: SendEvent, report: SendReport) -> None:
            now = time.monotonic()
            if isinstance(event, Waiting):
                if event.seconds >= 5 and now - shown[1] > 60:
                    shown[1] = now
                    sys.stderr.write(f"\nHourly cap ([send] per_hour) reached: waiting "
                                     f"{event.seconds:,.0f}s (Ctrl+C stops; resume later).\n")
                return
            if not isinstance(event, Settled):
                return
            if progress and (now - shown[0] > 0.25 or report.done == total):
                shown[0] = now
                rate = report.done / max(now - report.started, 1e-6)
                eta = (total - report.done) / rate if rate else 0
                sys.stderr.write(f"\r{_bar(report.done, total)} {report.done}/{total} "
                                 f"{rate:,.0f} msg/s ETA {eta:,.0f}s ")
                sys.stderr.flush()

        sender = Sender(self.store, self.settings, self.snapshot.edition_id,
                        make_transport(self.settings), self.options, renderer=self.renderer,
                        tokens=self.tokens, stop=stop, on_event=show)
        try:
            return await sender.run()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            if progress:
                sys.stderr.write("\n")

    def summary(self, report: SendReport) -> str:
        assert self.snapshot is not None
        seconds = time.monotonic() - report.started
        number = self.snapshot.number
        lines = [f"Edition {number}: sent {report.sent}, deferred {report.deferred}, failed "
                 f"{report.failed} ({report.bounced} bounced), skipped {report.skipped} "
                 f"in {seconds:.1f}s."]
        again = "newsletter send " + _window_args(self.window)
        if report.workers_lost:
            lines.append(f"{report.workers_lost} worker processes ended without a report "
                         "(killed?); the others took over what they had claimed.")
        if report.journal_error:
            lines.append(f"Stopped: {report.journal_error}.")
            if report.unrecorded:
                lines.append(f"{len(report.unrecorded)} messages were accepted by the server "
                             "but could not be recorded; a resume sends them again: "
                             + ", ".join(report.unrecorded))
            else:
                lines.append("Every message the server accepted is recorded.")
            lines.append(f"Fix the cause (disk space, a process holding the database), then "
                         f"resume with `{again}`.")
            return "\n".join(lines)
        for domain, replies in sorted(report.refused.items()):
            lines.append(f"Refused at {domain}: {len(replies)} (not bounced; {replies[-1]})")
        stored = find_snapshot(self.store, self.window)
        left = stored.todo if stored else 0
        if report.halted:
            lines.append(f"Stopped after {self.options.circuit_breaker} failures in a row: "
                         f"{report.halted}")
            lines.append(f"{left} messages remain; fix the server or its settings, then "
                         f"resume with `{again}`.")
        elif report.interrupted:
            lines.append(f"Interrupted: every result so far is recorded. {left} messages "
                         f"remain; resume with `{again}`.")
        elif left:
            lines.append(f"{left} messages remain (deferred or over --limit); run `{again}` "
                         "again later to resume.")
        if report.failed:
            lines.append(f"Failures: `newsletter editions show {number}`; after fixing the "
                         f"cause, `{again} --retry-failed` sends them again.")
        if not left and not report.stopped:
            lines.append(f"Edition {number} is fully sent. Next: "
                         "`newsletter editions` to see every edition.")
        return "\n".join(lines)


def _progress_line(total: int, started: float) -> Callable[[int], None]:
    shown = [0.0]

    def show(done: int) -> None:
        now = time.monotonic()
        if now - shown[0] > 0.25 or done == total:
            shown[0] = now
            rate = done / max(now - started, 1e-6)
            eta = (total - done) / rate if rate else 0
            sys.stderr.write(f"\r{_bar(done, total)} {done}/{total} {rate:,.0f} msg/s "
                             f"ETA {eta:,.0f}s ")
            sys.stderr.flush()
    return show


def _bar(done: int, total: int, width: int = 24) -> str:
    filled = width * done // max(total, 1)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _window_args(window: Window) -> str:
    return f"--since {window.start.isoformat()} --until {window.end.isoformat()}"


def test_copy(settings: Settings, window: Window, to: str, categories: str | None,
              intro_file: Path | None = None) -> str:
    """Send one copy of a variant to one address; the journal is not touched."""
    email, key = normalize_email(to)
    renderer = Renderer(settings)
    recipient = Recipient(email)
    chosen: tuple[str, ...] = ()
    with Store(settings.store_location) as store:
        known = store.subscriber(key)
        if known is not None:
            recipient = Recipient(known.email, known.name, known.id)
            chosen = known.categories
        edition, _ = compose_window(settings, window, store.edition_number(window), intro_file)
    if categories is not None:
        chosen = parse_categories(categories, settings)
    plan = edition.plan(chosen)
    if not plan.stories:
        raise NewsletterError(f"variant {plan.key} has no stories in {window.label()}; "
                              "nothing to send")
    variant = renderer.render(edition, plan)
    tokens = signing_tokens(settings)
    factory = MessageFactory(settings, variant, renderer, tokens)
    reply = asyncio.run(send_one(make_transport(settings), Envelope(settings, tokens).sender(0, 0),
                                 ascii_address(email), factory.build(recipient),
                                 utf8=needs_utf8(email)))
    return (f"Sent one copy of variant {variant.key} ({variant.subject}) to {email} via "
            f"{describe(settings)}: {reply}")


def edition_lines(settings: Settings) -> list[str]:
    with Store(settings.store_location) as store:
        rows = store.editions()
    if not rows:
        return ["No editions yet. Send one with `newsletter send`."]
    lines = []
    for row, n in rows:
        lines.append(f"#{row.number:<4} {row.window_start[:10]} – {row.window_end[:10]}"
                     f"  recipients {n['recipients']}, sent {n['sent']}, "
                     f"pending {n['pending']}, deferred {n['deferred']}, "
                     f"failed {n['failed']}, skipped {n['skipped']}")
    return lines


def edition_detail(settings: Settings, number: int) -> list[str]:
    with Store(settings.store_location) as store:
        row = store.edition(number=number)
        if row is None:
            raise NewsletterError(f"no edition {number} (see `newsletter editions`)")
        snap = load_snapshot(store, row)
        failures = store.failures(snap.edition_id)
        bounced = store.bounce_counts(snap.edition_id)
    lines = [f"Edition {number}: {row.window_start} – {row.window_end}",
             f"Subject: {snap.subject}",
             "Deliveries: " + ", ".join(f"{k} {v}" for k, v in snap.counts.items())]
    lines += [f"  variant {k}: {v} recipients" for k, v in snap.variants.items()]
    lines.append(f"Bounces: hard {bounced['hard']}, soft {bounced['soft']}, "
                 f"complaints {bounced['complaint']} (`newsletter bounces` reads them)")
    if failures:
        lines.append("Failed or deferred:")
        lines += [f"  {f.email}  {f.status} after {f.attempts} attempts: {f.reply}"
                  for f in failures]
    return lines
