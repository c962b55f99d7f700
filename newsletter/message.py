"""RFC 5322 message bytes, built per recipient from a per-variant template.

Everything that is the same for a variant (From, Subject, List-Id, MIME structure) is
encoded once; per recipient only the slots, four headers and the base64 of the two parts
are produced, so building a message costs far less than sending it.
"""

from __future__ import annotations

import base64
import contextlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime, formataddr

from markupsafe import escape

from newsletter.config import Settings
from newsletter.dkim import signer_for
from newsletter.dkim_pool import sign_elsewhere
from newsletter.render import RenderedVariant, Renderer, Slots
from newsletter.tokens import PREFERENCES, UNSUBSCRIBE, Tokens

CRLF = "\r\n"


@dataclass(frozen=True)
class Recipient:
    email: str
    name: str = ""
    subscriber_id: int = 0


def one_line(value: str) -> str:
    """Header values never carry CR, LF or other control characters."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())


def encode_header(name: str, value: str) -> str:
    value = one_line(value)
    if value.isascii() and len(name) + len(value) < 900:
        return f"{name}: {value}"
    return f"{name}: " + Header(value, "utf-8", header_name=name).encode(linesep=CRLF)


def ascii_address(email: str) -> str:
    """The address as it goes on the wire: an IDN domain in its ASCII (punycode) form.
    (A non-ASCII local part would need SMTPUTF8; the subscriber list accepts it, the
    server decides.)"""
    local, _, domain = one_line(email).rpartition("@")
    with contextlib.suppress(UnicodeError):
        domain = domain.encode("idna").decode("ascii")
    return f"{local}@{domain}"


def address(name: str, email: str) -> str:
    """`Name <address>`; a non-ASCII name RFC 2047-encoded and folded (no line over 998)."""
    name, email = one_line(name), ascii_address(email)
    if name.isascii():
        return formataddr((name, email))
    encoded = Header(name, "utf-8", header_name="To").encode(linesep=CRLF)
    return f"{encoded} <{email}>"


LINE_BYTES = 57  # raw bytes per 76-character base64 line


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


class Base64Part:
    """A part's text with slots, base64-encoded ahead of time in whole lines.

    Per message only each slot's value (with the few raw bytes before it) is encoded; it is
    padded with spaces where spaces are harmless (after an attribute's closing quote, or in
    text), so the static text after it starts on a line boundary and its lines are reused.
    """

    def __init__(self, text: str, slots: dict[str, str]) -> None:
        pieces = re.split("(" + "|".join(re.escape(s) for s in slots) + ")", text)
        self.static: list[bytes] = []  # whole encoded lines of each static piece
        self.tails: list[bytes] = []  # its raw remainder, encoded with the next value
        self.names: list[str] = []  # the slot after each static piece
        self.quotes: list[bytes] = []  # a closing quote moved before the padding
        for n in range(0, len(pieces), 2):
            raw = pieces[n].encode("utf-8")
            if n and raw.startswith(b'"'):
                self.quotes.append(b'"')
                raw = raw[1:]
            elif n:
                self.quotes.append(b"")
            whole = len(raw) - len(raw) % LINE_BYTES
            self.static.append(_b64(raw[:whole]) if whole else b"")
            self.tails.append(raw[whole:])
            if n + 1 < len(pieces):
                self.names.append(slots[pieces[n + 1]])

    def encode(self, values: dict[str, bytes]) -> bytes:
        out = [self.static[0]]
        for k, name in enumerate(self.names):
            chunk = self.tails[k] + values[name] + self.quotes[k]
            chunk += b" " * (-len(chunk) % LINE_BYTES)
            out += (_b64(chunk), self.static[k + 1])
        if self.tails[-1]:
            out.append(_b64(self.tails[-1]))
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
        phrase = f'"{name}"' if name.isascii() else Header(name, "utf-8").encode()
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
            headers.insert(1, f"Reply-To: {one_line(settings.reply_to)}")
        if settings.feedback_id:  # Gmail's feedback loop groups complaints by it
            headers.append(encode_header("Feedback-ID", settings.feedback_id))
        self.static_headers = CRLF.join(headers)
        self.static_head = f"{self.static_headers}{CRLF}".encode("ascii")
        slots = Slots(variant.nonce)
        names = {getattr(slots, n): n for n in ("greeting", "preferences_url", "unsubscribe_url")}
        self.html_part = Base64Part(variant.html, names)
        self.text_part = Base64Part(variant.text, names)
        b = self.boundary
        self.text_head = (f"--{b}{CRLF}Content-Type: text/plain; charset=\"utf-8\"{CRLF}"
                          f"Content-Transfer-Encoding: base64{CRLF}{CRLF}").encode("ascii")
        self.html_head = (f"--{b}{CRLF}Content-Type: text/html; charset=\"utf-8\"{CRLF}"
                          f"Content-Transfer-Encoding: base64{CRLF}{CRLF}").encode("ascii")
        self.end = f"--{b}--{CRLF}".encode("ascii")
        self.signer = signer_for(settings.dkim)

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
        text_values = {"greeting": greeting, "preferences_url": preferences_url,
                       "unsubscribe_url": unsubscribe_url}
        html_values = {k: str(escape(v)).encode("utf-8") for k, v in text_values.items()}
        unsubscribe = f"<{unsubscribe_url}>"
        if self.settings.unsubscribe_mailto:
            mailto = one_line(self.settings.unsubscribe_mailto)
            unsubscribe += f", <mailto:{mailto}?subject=unsubscribe>"
        mid = message_id or f"{uuid.uuid4().hex}@{self.domain}"
        personal = CRLF.join([
            f"To: {address(recipient.name, recipient.email)}",
            f"Date: {format_datetime(date or datetime.now(UTC))}",
            f"Message-ID: <{one_line(mid)}>",
            f"List-Unsubscribe: {unsubscribe}",
        ])
        text = self.text_part.encode({k: v.encode("utf-8") for k, v in text_values.items()})
        body = b"".join((self.text_head, text, self.html_head,
                         self.html_part.encode(html_values), self.end))
        return f"{personal}{CRLF}".encode("ascii"), body

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
