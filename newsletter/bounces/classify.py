"""What one message in the bounce mailbox says: a hard or soft bounce, a complaint, or
nothing we understand. Pure parsing: no store, no mailbox.

RFC 3463: 5.1.x is about the address and 5.2.1 about a disabled mailbox, so those are
hard; other 5.x.x (policy 5.7.x, a full mailbox 5.2.2, a system problem 5.3.x) and every
4.x.x are soft: counted, and only repeated ones retire an address.
"""

from __future__ import annotations

import email
import email.parser
import email.policy
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

HARD, SOFT, COMPLAINT, OTHER = "hard", "soft", "complaint", "other"

_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_BASIC = re.compile(r"(?<!\d)([45][0-5]\d)[ -]")
_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
_MESSAGE_ID = re.compile(r"^Message-ID:\s*<([^>\s]+)>", re.IGNORECASE | re.MULTILINE)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery (status|fail)|returned mail|failure notice|mail delivery|"
    r"non-?delivery|could not be delivered|delivery problem", re.IGNORECASE)
_DAEMON = re.compile(r"mailer-daemon|postmaster", re.IGNORECASE)
# Where the envelope sender we chose (with its VERP token) shows up in a returned message.
_ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")


@dataclass
class Finding:
    kind: str  # hard | soft | complaint | other
    key: str  # sha256 of the raw message: the same message is never counted twice
    status: str = ""  # enhanced status code, e.g. 5.1.1
    recipient: str = ""  # the address that bounced or complained
    message_id: str = ""  # Message-ID of our original message, when returned
    envelope: list[str] = field(default_factory=list)  # where a VERP token may be
    detail: str = ""  # diagnostic text, or why it is not understood
    subject: str = ""
    date: datetime | None = None


def severity(status: str) -> str:
    klass, subject, detail = [*status.split("."), "0", "0"][:3]
    if klass == "5" and (subject == "1" or (subject, detail) == ("2", "1")):
        return HARD
    return SOFT if klass in ("4", "5") else OTHER


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload.decode(charset, "replace")
        except LookupError:
            return payload.decode("utf-8", "replace")
    if isinstance(payload, list):  # message/*: parsed already
        return "\n\n".join(p.as_string() for p in payload if isinstance(p, Message))
    return str(payload or "")


def _blocks(part: Message) -> list[Message]:
    """The field groups of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks: list[Message] = []
        for p in payload:
            if isinstance(p, Message):  # a field group; fields after a blank line stay in
                blocks.append(p)  # its body (feedback reports are parsed as one message)
                body = p.get_payload()
                blocks += _reparse(body) if isinstance(body, str) and body.strip() else []
        return blocks
    return _reparse(_text(part))


def _reparse(text: object) -> list[Message]:
    parser = email.parser.HeaderParser()
    return [parser.parsestr(chunk.strip() + "\n") for chunk in
            re.split(r"\r?\n\s*\r?\n", str(text)) if chunk.strip()]


def _address(value: str | None) -> str:
    """`rfc822; user@example.com` or `<user@example.com>` -> the address."""
    if not value:
        return ""
    value = str(value).split(";", 1)[-1].strip()
    found = _ADDRESS.search(value)
    return found.group(0) if found else ""


def _returned_headers(msg: Message) -> Message | None:
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return inner[0]
        if ctype in ("text/rfc822-headers", "text/global-headers"):
            return email.parser.HeaderParser().parsestr(_text(part))
    return None


def _date(msg: Message) -> datetime | None:
    try:
        stamp = parsedate_to_datetime(str(msg["Date"])) if msg["Date"] else None
    except (TypeError, ValueError, IndexError):
        return None
    return stamp if stamp is None or stamp.tzinfo else None


def classify(raw: bytes) -> Finding:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    finding = Finding(OTHER, hashlib.sha256(raw).hexdigest(), subject=str(msg["Subject"] or ""),
                      date=_date(msg))
    for name in _ENVELOPE_HEADERS:
        finding.envelope += [a for _, a in getaddresses([str(v) for v in msg.get_all(name, [])])]
    returned = _returned_headers(msg)
    if returned is not None:
        found = _MESSAGE_ID.search(f"Message-ID: {returned['Message-ID'] or ''}")
        finding.message_id = found.group(1) if found else ""
        finding.envelope += [_address(str(v)) for v in returned.get_all("Return-Path", [])]
    report_type = str(msg.get_param("report-type", "") or "").lower()
    parts = {p.get_content_type(): p for p in msg.walk()}
    if "message/feedback-report" in parts or report_type == "feedback-report":
        return _complaint(finding, parts.get("message/feedback-report"), returned)
    if "message/delivery-status" in parts:
        return _dsn(finding, parts["message/delivery-status"])
    return _plain(finding, msg)


def _dsn(finding: Finding, part: Message) -> Finding:
    recipients = [b for b in _blocks(part)[1:] if b["Final-Recipient"] or b["Action"]]
    chosen = None
    for block in recipients:  # the worst recipient decides
        status = _STATUS.search(str(block["Status"] or ""))
        action = str(block["Action"] or "").strip().lower()
        if status is None or action in ("delivered", "relayed", "expanded"):
            continue
        code = ".".join(status.groups())
        if chosen is None or severity(code) == HARD:
            chosen = (block, code)
    if chosen is None:
        finding.detail = "delivery report without a failed recipient"
        return finding
    block, code = chosen
    finding.kind, finding.status = severity(code), code
    finding.recipient = (_address(block["Final-Recipient"])
                         or _address(block["Original-Recipient"]))
    finding.detail = " ".join(str(block["Diagnostic-Code"] or "").split())[:300]
    return finding


def _complaint(finding: Finding, part: Message | None, returned: Message | None) -> Finding:
    fields: dict[str, str] = {}
    for block in _blocks(part) if part is not None else []:
        fields.update({k.lower(): str(v) for k, v in block.items()})
    finding.kind = COMPLAINT
    finding.detail = fields.get("feedback-type", "abuse").strip()
    finding.envelope.append(_address(fields.get("original-mail-from")))
    finding.recipient = _address(fields.get("original-rcpt-to"))
    if not finding.recipient and returned is not None:
        finding.recipient = _address(str(returned["To"] or ""))
    return finding


def _plain(finding: Finding, msg: Message) -> Finding:
    """A bounce without a delivery-status part: trust it only when it looks like one
    (from a mailer daemon, or a bounce subject) and carries a status code."""
    sender = str(msg["From"] or "") + " " + str(msg["Return-Path"] or "")
    looks = bool(_DAEMON.search(sender) or _BOUNCE_SUBJECT.search(finding.subject)
                 or str(msg["Return-Path"] or "").strip() == "<>")
    body = "\n".join(_text(p) for p in msg.walk() if p.get_content_maintype() == "text")
    if not looks:
        finding.detail = "not a bounce or complaint"
        return finding
    if not finding.message_id:
        found = _MESSAGE_ID.search(body)
        finding.message_id = found.group(1) if found else ""
    status = _STATUS.search(body)
    if status is not None:
        code = ".".join(status.groups())
    elif (basic := _BASIC.search(body)) is not None:
        number = basic.group(1)
        code = {"550": "5.1.0", "551": "5.1.6", "553": "5.1.3", "552": "5.2.2"}.get(
            number, f"{number[0]}.0.0")
    else:
        finding.detail = "bounce without a status code"
        return finding
    finding.kind, finding.status = severity(code), code
    failed = msg.get_all("X-Failed-Recipients", [])
    candidates = [_address(str(v)) for v in failed] + _ADDRESS.findall(body)
    own = {a.lower() for a in finding.envelope}
    finding.recipient = next((a for a in candidates if a and a.lower() not in own
                              and not _DAEMON.search(a) and "+" not in a.split("@")[0]), "")
    line = next((ln for ln in body.splitlines() if status is not None
                 and status.group(0) in ln), "")
    finding.detail = " ".join(line.split())[:300]
    return finding
