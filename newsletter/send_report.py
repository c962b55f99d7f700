"""What a send is asked to do and what it tells: options, progress events, the report.

Plain data: a program drives a send with these and words the outcome itself (the CLI's
wording lives in `send_job.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from newsletter.config import Settings


@dataclass(frozen=True)
class SendOptions:
    concurrency: int = 4
    rate: float = 0.0
    per_hour: int = 0
    max_attempts: int = 5
    max_per_connection: int = 1000
    retry_delay: float = 1.0
    circuit_breaker: int = 5  # consecutive server-level failures that stop the run
    smtputf8: bool = False
    limit: int | None = None
    claim_timeout: float = 60.0  # seconds without a heartbeat before a claim is taken over

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> SendOptions:
        s = settings.send
        values: dict[str, object] = {
            "concurrency": s.concurrency, "rate": s.rate, "per_hour": s.per_hour,
            "max_attempts": s.max_attempts, "max_per_connection": s.max_per_connection,
            "retry_delay": s.retry_delay, "circuit_breaker": s.circuit_breaker,
            "smtputf8": s.smtputf8, "claim_timeout": s.claim_timeout}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


@dataclass
class SendReport:
    """What a run did, as data; the CLI words it."""

    edition_id: int
    sent: int = 0  # accepted by the server (including `unrecorded`)
    deferred: int = 0
    failed: int = 0
    skipped: int = 0
    bounced: int = 0  # failed deliveries whose subscriber was marked bounced
    retargeted: int = 0
    interrupted: bool = False
    last_error: str = ""
    halted: str = ""  # why the circuit breaker stopped the run
    journal_error: str = ""  # the journal could not be written: the run stopped at once
    unrecorded: list[str] = field(default_factory=list)  # accepted, not journaled
    refused: dict[str, list[str]] = field(default_factory=dict)  # domain -> policy replies
    started: float = field(default_factory=time.monotonic)
    fatal: str = ""  # a worker could not send at all (e.g. the SMTP login failed)
    workers_lost: int = 0  # worker processes that ended without a report (killed)

    @classmethod
    def combine(cls, edition_id: int, reports: list[SendReport]) -> SendReport:
        """The reports of several workers of one run as one."""
        total = cls(edition_id, started=min((r.started for r in reports),
                                            default=time.monotonic()))
        for report in reports:
            for name in ("sent", "deferred", "failed", "skipped", "bounced", "retargeted"):
                setattr(total, name, getattr(total, name) + getattr(report, name))
            total.interrupted = total.interrupted or report.interrupted
            for name in ("last_error", "halted", "journal_error", "fatal"):
                setattr(total, name, getattr(total, name) or getattr(report, name))
            total.unrecorded += report.unrecorded
            for domain, replies in report.refused.items():
                total.refused.setdefault(domain, []).extend(replies)
        return total

    @property
    def done(self) -> int:
        return self.sent + self.deferred + self.failed + self.skipped

    @property
    def stopped(self) -> bool:
        return self.interrupted or bool(self.halted or self.journal_error or
                                        self.workers_lost)


@dataclass(frozen=True)
class Settled:
    """One delivery ended in this run: sent, deferred, failed or skipped."""

    email: str
    status: str
    reply: str


@dataclass(frozen=True)
class Waiting:
    """The hourly cap holds the run for `seconds` (a stop still ends it at once)."""

    seconds: float


@dataclass(frozen=True)
class Stopping:
    """The run stops early: `cause` is 'breaker' or 'journal'; `reason` says why."""

    cause: str
    reason: str


SendEvent = Settled | Waiting | Stopping
OnEvent = Callable[[SendEvent, SendReport], None]
