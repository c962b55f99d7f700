"""Match each bounce-mailbox message to its delivery and record it.

Matching, most trusted first: the VERP token of the envelope sender (signed: a token
with a wrong signature makes the message `forged`, ignored and reported), then our
Message-ID in the returned headers (`<edition nonce>.<delivery id>@domain`), then the
Final-Recipient against the list. What matches is recorded and set aside; what does not
stays in the mailbox and is listed.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from newsletter.bounces.classify import COMPLAINT, HARD, OTHER, SOFT, Finding, classify
from newsletter.bounces.mailboxes import Mailbox
from newsletter.config import Settings, secret_key
from newsletter.errors import NewsletterError
from newsletter.store import Store
from newsletter.subscribers import normalize_email
from newsletter.tokens import Tokens
from newsletter.verp import BOUNCE, Verp

_OUR_ID = re.compile(r"^[0-9a-f]+\.(\d+)@")


@dataclass
class Match:
    edition_id: int | None = None
    subscriber_id: int | None = None
    how: str = ""  # verp | message-id | recipient
    forged: bool = False


@dataclass
class BounceReport:
    mailbox: str
    read: int = 0
    seen_before: int = 0
    set_aside: int = 0
    per_edition: dict[int, Counter[str]] = field(default_factory=dict)  # number -> kinds
    changed: list[tuple[str, str]] = field(default_factory=list)  # (email, new status)
    unmatched: list[str] = field(default_factory=list)  # "label: why", kept in the mailbox
    forged: list[str] = field(default_factory=list)


class BounceProcessor:
    def __init__(self, settings: Settings, store: Store, tokens: Tokens) -> None:
        self.settings, self.store = settings, store
        self.verp = Verp(tokens.derive(BOUNCE))
        self.numbers: dict[int, int] = {}

    def match(self, finding: Finding) -> Match:
        for address in finding.envelope:
            token = self.verp.read(address) if address else None
            if token is None:
                continue
            if not token.valid:
                return Match(forged=True, how="verp")
            row = self.store.delivery_of(token.edition_id, token.subscriber_id)
            if row is not None:
                return Match(token.edition_id, token.subscriber_id, "verp")
        found = _OUR_ID.match(finding.message_id)
        if found:
            row = self.store.delivery_by_id(int(found.group(1)))
            if row is not None and finding.message_id.startswith(f"{row['nonce']}."):
                return Match(row["edition_id"], row["subscriber_id"], "message-id")
        if finding.recipient:
            try:
                _, key = normalize_email(finding.recipient)
            except NewsletterError:
                return Match()
            sub = self.store.subscriber(key)
            if sub is not None:
                last = self.store.last_delivery_to(sub.id)
                return Match(last["edition_id"] if last else None, sub.id, "recipient")
        return Match()

    def edition_number(self, edition_id: int | None) -> int:
        if edition_id is None:
            return 0
        if edition_id not in self.numbers:
            row = self.store.edition(edition_id=edition_id)
            self.numbers[edition_id] = row.number if row else 0
        return self.numbers[edition_id]

    def run(self, box: Mailbox) -> BounceReport:
        report = BounceReport(box.name)
        now = datetime.now(UTC)
        soft_since = (now - timedelta(days=self.settings.bounces.soft_days)).isoformat(
            timespec="seconds")
        for label, raw in list(box.messages()):
            report.read += 1
            finding = classify(raw)
            known = self.store.bounce_known(finding.key)
            match = self.match(finding) if finding.kind != OTHER else Match()
            kind = finding.kind
            where = f"{label}: {finding.subject[:80]!r}"
            if match.forged:
                kind = "forged"
                report.forged.append(f"{where}: VERP token with a bad signature, ignored")
            elif kind == OTHER:
                kind = "other"
                report.unmatched.append(f"{where}: {finding.detail}")
            elif match.subscriber_id is None:
                kind = "unmatched"
                report.unmatched.append(f"{where}: {finding.kind} {finding.status} for "
                                        f"{finding.recipient or 'an unknown recipient'} "
                                        "matches no delivery")
            received = (finding.date or now).astimezone(UTC).isoformat(timespec="seconds")
            new = self.store.record_bounce(
                message_key=finding.key, kind=kind, edition_id=match.edition_id,
                subscriber_id=match.subscriber_id, recipient=finding.recipient,
                status=finding.status, detail=finding.detail or match.how,
                received_at=received, soft_limit=self.settings.bounces.soft_limit,
                soft_since=soft_since)
            if known:
                report.seen_before += 1
            elif kind in (HARD, SOFT, COMPLAINT):
                counts = report.per_edition.setdefault(self.edition_number(match.edition_id),
                                                       Counter())
                counts[kind] += 1
            if new is not None and match.subscriber_id is not None:
                sub = self.store.subscriber_by_id(match.subscriber_id)
                report.changed.append((sub.email if sub else finding.recipient, new))
            if kind in (HARD, SOFT, COMPLAINT) and box.moves:
                box.done(label)
                report.set_aside += 1
        return report


def process_mailbox(settings: Settings, box: Mailbox) -> BounceReport:
    tokens = Tokens(secret_key(development=settings.smtp is None))
    with Store(settings.store_location) as store:
        try:
            return BounceProcessor(settings, store, tokens).run(box)
        finally:
            box.close()


def report_lines(report: BounceReport) -> list[str]:
    lines = [f"{report.mailbox}: {report.read} messages read, {report.seen_before} seen "
             f"before, {report.set_aside} set aside as processed."]
    for number, counts in sorted(report.per_edition.items()):
        name = f"Edition {number}" if number else "No edition"
        lines.append(f"  {name}: hard {counts[HARD]}, soft {counts[SOFT]}, "
                     f"complaints {counts[COMPLAINT]}")
    for email_address, status in report.changed:
        lines.append(f"  {email_address}: now {status}")
    if report.forged:
        lines.append(f"Forged ({len(report.forged)}, ignored and kept):")
        lines += [f"  {line}" for line in report.forged]
    if report.unmatched:
        lines.append(f"Unmatched ({len(report.unmatched)}, kept in the mailbox):")
        lines += [f"  {line}" for line in report.unmatched]
    return lines
