"""RFC 5322 message bytes, built per recipient from a per-variant template.

Everything that is the same for a variant (From, Subject, List-Id, MIME structure) is
encoded once; per recipient only the slots, four headers and the base64 of the two parts
are produced, so building a message costs far less than sending it.
"""

from __future__ import annotations

import binascii
import contextlib
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime, formataddr, getaddresses

from markupsafe import escape

from newsletter.config import Settings
from newsletter.dkim import signer_for
from newsletter.dkim_pool import sign_elsewhere
from newsletter.render import RenderedVariant, Renderer, Slots, wrap_line
from newsletter.tokens import PREFERENCES, UNSUBSCRIBE, Tokens

CRLF = "\r\n"


@dataclass(frozen=True)
class Recipient:
    email: str
    name: str = ""
    subscriber_id: int = 0


def one_line(value: str) -> str:
    """Header values never carry CR, LF or other control characters."""
    if not value.isprintable():
        value = "".join(ch if ch.isprintable() else " " for ch in value)
    return " ".join(value.split())


def encode_header(name: str, value: str) -> str:
    value = one_line(value)
    if value.isascii() and len(name) + len(value) < 900:
        return f"{name}: {value}"
    return f"{name}: " + Header(value, "utf-8", header_name=name).encode(linesep=CRLF)


def ascii_address(email: str) -> str:
    """The address as it goes on the wire: an IDN domain in its ASCII (punycode) form.
    A non-ASCII local part stays as it is: it needs SMTPUTF8 (see `needs_utf8`)."""
    local, _, domain = one_line(email).rpartition("@")
    if not domain.isascii():  # the codec leaves an ASCII domain as it is
        with contextlib.suppress(UnicodeError):
            domain = domain.encode("idna").decode("ascii")
    return f"{local}@{domain}"


def needs_utf8(email: str) -> bool:
    return not email.rpartition("@")[0].isascii()


def address(name: str, email: str) -> str:
    """`Name <address>`; a non-ASCII name RFC 2047-encoded and folded (no line over 998)."""
    name, email = one_line(name), ascii_address(email)
    if not name:
        return email  # formataddr refuses a non-ASCII (SMTPUTF8) address
    if name.isascii():
        return formataddr((name, email))
    encoded = Header(name, "utf-8", header_name="To").encode(linesep=CRLF)
    return f"{encoded} <{email}>"


LINE_BYTES = 57  # raw bytes per 76-character base64 line


def _b64(data: bytes) -> bytes:
    """Base64 in 76-character lines ending in CRLF (what `base64.encodebytes` gives, with
    CRLF), encoded in one call instead of one per line."""
    text = binascii.b2a_base64(data, newline=False)
    return b"".join([text[i:i + 76] + b"\r\n" for i in range(0, len(text), 76)])


class Base64Part:
    """A part's text with slots, base64-encoded ahead of time in whole lines.

    Per message only what varies is encoded: each slot's value with the raw bytes around
    it. Where spaces are harmless (HTML, right before a tag or after an attribute's
    closing quote, which moves in front of them) the value is padded with spaces so the
    static text after it starts on a line boundary and its encoded lines are reused.
    Anywhere else (a URL a template extends, the plain-text part) nothing is padded: the
    static text after the value completes the value's last line, and the lines of the
    rest are encoded once for each offset that occurs (at most 57), so the message reads
    exactly as rendered and still costs only the slots.
    """

    def __init__(self, text: str, slots: dict[str, str], *, pad: bool) -> None:
        pieces = re.split("(" + "|".join(re.escape(s) for s in slots) + ")", text)
        self.raw: list[bytes] = []  # each static piece
        self.lines: list[bytes] = []  # its whole encoded lines, when it starts aligned
        self.tails: list[bytes] = []  # its raw remainder after those lines
        self.names: list[str] = []  # the slot after each static piece
        self.pads: list[bytes | None] = []  # per slot: None, or what goes before padding
        # per static piece after an unpadded slot: raw bytes skipped -> (lines, tail)
        self.shifted: list[dict[int, tuple[bytes, bytes]]] = []
        for n in range(0, len(pieces), 2):
            raw = pieces[n].encode("utf-8")
            if n:
                if pad and raw.startswith(b'"'):
                    self.pads.append(b'"')
                    raw = raw[1:]
                elif pad and raw.startswith(b"<"):
                    self.pads.append(b"")
                else:
                    self.pads.append(None)
            whole = len(raw) - len(raw) % LINE_BYTES
            self.raw.append(raw)
            self.lines.append(_b64(raw[:whole]) if whole else b"")
            self.tails.append(raw[whole:])
            self.shifted.append({})
            if n + 1 < len(pieces):
                self.names.append(slots[pieces[n + 1]])

    def _from(self, k: int, skip: int) -> tuple[bytes, bytes]:
        """Static piece `k` after its first `skip` bytes: whole encoded lines, raw tail."""
        found = self.shifted[k].get(skip)
        if found is None:
            raw = self.raw[k][skip:]
            whole = len(raw) - len(raw) % LINE_BYTES
            found = self.shifted[k][skip] = (_b64(raw[:whole]), raw[whole:])
        return found

    def encode(self, values: dict[str, bytes]) -> bytes:
        out = [self.lines[0]]
        pending = self.tails[0]  # raw bytes not encoded yet
        for k, name in enumerate(self.names):
            pending += values[name]
            moved = self.pads[k]
            if moved is None:  # not paddable: the next static piece completes the line
                skip = -len(pending) % LINE_BYTES
                raw = self.raw[k + 1]
                if len(raw) <= skip:
                    pending += raw
                    continue
                lines, tail = self._from(k + 1, skip)
                out += (_b64(pending + raw[:skip]), lines)
                pending = tail
                continue
            pending += moved
            pending += b" " * (-len(pending) % LINE_BYTES)
            out += (_b64(pending), self.lines[k + 1])
            pending = self.tails[k + 1]
        if pending:
            out.append(_b64(pending))
        return b"".join(out)


class MessageFactory:
    """Bytes of one variant's message for any recipient."""

    def __init__(self, settings: Settings, variant: RenderedVariant, renderer: Renderer,
                 tokens: Tokens) -> None:
        self.settings, self.variant = settings, variant
        self.renderer, self.tokens = renderer, tokens
        self.domain = settings.from_address.rpartition("@")[2].lower()
        self.boundary = f"nl_{secrets.token_hex(12)}_="  # '_' never occurs in base64
        local = settings.from_address.rpartition("@")[0].lower()
        list_id = re.sub(r"[^a-z0-9-]+", "-", local).strip("-") or "newsletter"
        name = one_line(settings.name).replace('"', "'")
        phrase = (f'"{name}"' if name.isascii()
                  else Header(name, "utf-8").encode(linesep=CRLF))
        headers = [
            f"From: {address(settings.from_name or settings.name, settings.from_address)}",
            encode_header("Subject", variant.subject),
            "MIME-Version: 1.0",
            f"List-Id: {phrase} <{list_id}.{self.domain}>",
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            f"Content-Language: {one_line(settings.language)}",
            f'Content-Type: multipart/alternative; boundary="{self.boundary}"',
        ]
        if settings.reply_to:
            ((reply_name, reply_address),) = getaddresses([settings.reply_to])
            headers.insert(1, f"Reply-To: {address(reply_name, reply_address)}")
        if settings.feedback_id:  # Gmail's feedback loop groups complaints by it
            headers.append(encode_header("Feedback-ID", settings.feedback_id))
        self.static_headers = CRLF.join(headers)
        self.static_head = f"{self.static_headers}{CRLF}".encode("ascii")
        slots = Slots(variant.nonce)
        names = {getattr(slots, n): n for n in ("greeting", "preferences_url", "unsubscribe_url")}
        self.html_part = Base64Part(variant.html, names, pad=True)
        self.text_part = Base64Part(variant.text, names, pad=False)
        b = self.boundary
        self.text_head = (f"--{b}{CRLF}Content-Type: text/plain; charset=\"utf-8\"{CRLF}"
                          f"Content-Transfer-Encoding: base64{CRLF}{CRLF}").encode("ascii")
        self.html_head = (f"--{b}{CRLF}Content-Type: text/html; charset=\"utf-8\"{CRLF}"
                          f"Content-Transfer-Encoding: base64{CRLF}{CRLF}").encode("ascii")
        self.end = f"--{b}--{CRLF}".encode("ascii")
        self.signer = signer_for(settings.dkim)
        self._date = (0, "")

    def _now(self) -> str:
        """The Date header's value now, formatted once per second."""
        second = int(time.time())
        if second != self._date[0]:
            self._date = (second, format_datetime(datetime.fromtimestamp(second, UTC)))
        return self._date[1]

    def links(self, recipient: Recipient) -> tuple[str, str]:
        base = self.settings.public_url
        sid = recipient.subscriber_id
        return (f"{base}/preferences/{self.tokens.make(PREFERENCES, sid)}",
                f"{base}/unsubscribe/{self.tokens.make(UNSUBSCRIBE, sid)}")

    def parts(self, recipient: Recipient, *, message_id: str | None = None,
              date: datetime | None = None) -> tuple[bytes, bytes]:
        """This recipient's header fields (after the static ones, each ending in CRLF) and
        the body of their message."""
        preferences_url, unsubscribe_url = self.links(recipient)
        greeting = self.renderer.greeting(recipient.name)
        values = {"greeting": greeting, "preferences_url": preferences_url,
                  "unsubscribe_url": unsubscribe_url}
        html_values = {k: str(escape(v)).encode("utf-8") for k, v in values.items()}
        # the greeting has its own line in the text part: wrap it once the name is in
        text_values = {**values, "greeting": "\n".join(wrap_line(greeting))}
        unsubscribe = f"<{unsubscribe_url}>"
        if self.settings.unsubscribe_mailto:
            mailto = one_line(self.settings.unsubscribe_mailto)
            unsubscribe += f", <mailto:{mailto}?subject=unsubscribe>"
        mid = message_id or f"{uuid.uuid4().hex}@{self.domain}"
        personal = CRLF.join([
            f"To: {address(recipient.name, recipient.email)}",
            f"Date: {format_datetime(date) if date else self._now()}",
            f"Message-ID: <{one_line(mid)}>",
            f"List-Unsubscribe: {unsubscribe}",
        ])
        text = self.text_part.encode({k: v.encode("utf-8") for k, v in text_values.items()})
        body = b"".join((self.text_head, text, self.html_head,
                         self.html_part.encode(html_values), self.end))
        # ASCII except a non-ASCII local part, sent only over SMTPUTF8 (RFC 6532)
        return f"{personal}{CRLF}".encode(), body

    def _prepare(self, personal: bytes, body: bytes) -> tuple[bytes, bytes]:
        assert self.signer is not None  # our body is base64 lines: canonical already
        return self.signer.prepare(personal, body, static=self.static_head,
                                   canonical_body=True)

    def build(self, recipient: Recipient, *, message_id: str | None = None,
              date: datetime | None = None) -> bytes:
        personal, body = self.parts(recipient, message_id=message_id, date=date)
        signature = b""
        if self.signer is not None:
            header, data = self._prepare(personal, body)
            signature = self.signer.finish(header, self.signer.sign(data))
        return b"".join((signature, self.static_head, personal, b"\r\n", body))

    async def build_async(self, recipient: Recipient, *, message_id: str | None = None,
                          date: datetime | None = None) -> bytes:
        """build(), with an RSA signature made in the signing process (dkim_pool), so it
        runs on another core beside the event loop."""
        personal, body = self.parts(recipient, message_id=message_id, date=date)
        signature = b""
        if self.signer is not None:
            header, data = self._prepare(personal, body)
            signed = (await sign_elsewhere(self.signer, data) if self.signer.slow
                      else self.signer.sign(data))
            signature = self.signer.finish(header, signed)
        return b"".join((signature, self.static_head, personal, b"\r\n", body))
