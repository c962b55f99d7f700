"""Web signup: who is asking (client network), what they may write (the name), and the
confirmation emails, queued in the store and sent outside the request.

The request only records the signup (one store transaction, the same work whatever the
address's state), so its answer and its timing say nothing about the address. A task of
the server drains the queue; several `serve` processes share it through the store.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import logging
import re
import secrets
import time
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid

from jinja2 import Environment

from newsletter.config import Settings
from newsletter.message import CRLF, address, ascii_address, encode_header
from newsletter.store import Store
from newsletter.store_backend import Row
from newsletter.tokens import CONFIRM, Tokens
from newsletter.transport import PermanentFailure, TransientFailure, make_transport, send_one

log = logging.getLogger("newsletter.web")

NAME_MAX = 40
MAX_ATTEMPTS = 3
LEASE = 300.0  # seconds a claimed confirmation stays claimed
POLL = 2.0  # seconds between looks at the queue when nobody wakes the task
# A web address or a domain inside a name: the name would carry an advert to any inbox.
_LINKISH = re.compile(r"://|www\.|\w\.[a-z]{2,}\b|\w\s*\.\s*(com|net|org|io|cn|ru)\b",
                      re.IGNORECASE)
_BREAKS = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]")


def clean_signup_name(text: str) -> str | None:
    """The name as stored, or None when it is too long or carries `@`, a URL or a line
    break (a confirmation email must not relay anyone's text)."""
    if _BREAKS.search(text):
        return None
    name = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    if len(name) > NAME_MAX or "@" in name or "＠" in name or _LINKISH.search(name):
        return None
    return name


def client_network(peer: str, forwarded_for: str, trusted: tuple[str, ...]) -> str:
    """The network a request comes from (IPv4 /24, IPv6 /64). `X-Forwarded-For` counts only
    when the peer is a trusted proxy; then the nearest address no trusted proxy added."""
    proxies = [ipaddress.ip_network(p, strict=False) for p in trusted]

    def parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        try:
            ip = ipaddress.ip_address(text.strip())
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        return ip

    def is_proxy(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(ip in net for net in proxies)

    client = parse(peer)
    if client is not None and is_proxy(client):
        for hop in reversed(forwarded_for.split(",") if forwarded_for else []):
            ip = parse(hop)
            if ip is None:
                break  # garbage from the client's side: stay with the last good hop
            client = ip
            if not is_proxy(ip):
                break
    if client is None:
        return peer or "unknown"
    bits = 24 if client.version == 4 else 64
    return str(ipaddress.ip_network(f"{client}/{bits}", strict=False))


class Confirmations:
    """The queue of confirmation emails and the task that sends them."""

    def __init__(self, settings: Settings, tokens: Tokens, env: Environment,
                 subject: str) -> None:
        self.settings, self.tokens, self.env, self.subject = settings, tokens, env, subject
        self.wake = asyncio.Event()

    def message(self, signup_id: int, name: str, email: str) -> bytes:
        s = self.settings
        confirm_url = f"{s.public_url}/confirm/{self.tokens.make(CONFIRM, signup_id)}"
        values = {"lang": s.language, "name": s.name, "subscriber_name": name,
                  "confirm_url": confirm_url, "days": s.web.pending_days,
                  "postal_address": s.postal_address, "site_url": s.base_url}
        text = self.env.get_template("confirm_email.txt.j2").render(values)
        html = self.env.get_template("confirm_email.html.j2").render(values)
        boundary = f"=_confirm_{secrets.token_hex(12)}"
        headers = [
            "From: " + address(s.from_name or s.name, s.from_address),
            "To: " + address(name, email),  # quoted or RFC 2047-encoded, never refolded
            encode_header("Subject", f"{self.subject} · {s.name}"),
            "Date: " + format_datetime(datetime.now(UTC)),
            "Message-ID: " + make_msgid(domain=s.from_address.rpartition("@")[2]),
            "Auto-Submitted: auto-generated",
            "MIME-Version: 1.0",
            f'Content-Type: multipart/alternative; boundary="{boundary}"',
        ]
        parts = [f"--{boundary}{CRLF}Content-Type: text/{kind}; charset=utf-8{CRLF}"
                 f"Content-Transfer-Encoding: base64{CRLF}{CRLF}"
                 + base64.encodebytes(body.encode("utf-8")).decode("ascii").replace("\n", CRLF)
                 for kind, body in (("plain", text), ("html", html))]
        return (CRLF.join(headers) + CRLF + CRLF + "".join(parts) + f"--{boundary}--{CRLF}"
                ).encode("ascii")

    async def run(self) -> None:
        """Send what is due, then wait to be woken (or poll, for other processes' rows)."""
        while True:
            self.wake.clear()  # before draining: a wake during the drain is not lost
            try:
                while await self.send_next():
                    pass
            except Exception:  # never let the task die: the next round tries again
                log.exception("confirmation queue: unexpected error")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), POLL)

    def _claim(self) -> Row | None:
        with Store(self.settings.store_location, pooled=True) as store:
            return store.claim_confirmation(time.time(), LEASE)

    def _finish(self, signup_id: int, state: str, reply: str, next_at: float) -> None:
        with Store(self.settings.store_location, pooled=True) as store:
            store.finish_confirmation(signup_id, state, reply, next_at)

    async def send_next(self) -> bool:
        s = self.settings
        row = await asyncio.to_thread(self._claim)
        if row is None:
            return False
        message = self.message(row["id"], row["name"], row["email"])
        state, next_at = "sent", 0.0
        try:
            reply = await send_one(make_transport(s), s.from_address,
                                   ascii_address(row["email"]), message)
        except PermanentFailure as exc:
            state, reply = "failed", exc.reply
        except Exception as exc:  # TransientFailure, or a transport that could not connect
            reply = exc.reply if isinstance(exc, TransientFailure) else \
                f"{type(exc).__name__}: {exc}"
            if row["attempts"] < MAX_ATTEMPTS:
                state, next_at = "queued", time.time() + 30.0 * row["attempts"]
            else:
                state = "failed"
        await asyncio.to_thread(self._finish, row["id"], state, reply, next_at)
        level = logging.INFO if state == "sent" else logging.WARNING
        log.log(level, "confirmation email for signup %d (attempt %d): %s: %s", row["id"],
                row["attempts"], "retry later" if state == "queued" else state, reply)
        return True
