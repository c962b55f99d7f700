"""Where messages go: an SMTP server (aiosmtplib) or a Maildir outbox.

A connection sends one message at a time and reports the outcome as data: `Accepted`, or
raises `TransientFailure` (try again later) or `PermanentFailure` (the server refused it
for good). The sender decides what to do with each.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import ssl
import time
from pathlib import Path
from typing import Protocol

import aiosmtplib

from newsletter.config import Settings, SmtpSettings
from newsletter.errors import DeliveryError


class TransientFailure(Exception):
    """4xx, a dropped connection or a timeout: the message may be tried again.

    `server` marks a failure of the server or the connection rather than of this recipient
    (refused connection, timeout, 421, the sender address refused): the circuit breaker
    counts those.
    """

    def __init__(self, reply: str, *, reconnect: bool = True, server: bool = False) -> None:
        super().__init__(reply)
        self.reply, self.reconnect, self.server = reply, reconnect, server


class PermanentFailure(Exception):
    """5xx: the server refused this message; `bounce` when the mailbox itself is refused
    (RFC 3463 5.1.x, 5.2.1, 5.5.x), never for a policy refusal (5.7.x)."""

    def __init__(self, reply: str, *, bounce: bool) -> None:
        super().__init__(reply)
        self.reply, self.bounce = reply, bounce


_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


def mailbox_refused(code: int, message: str) -> bool:
    """Does a 5xx reply to RCPT say the mailbox does not exist (a hard bounce)?

    With an enhanced status code only 5.1.x, 5.2.1 and 5.5.x qualify; without one, the
    basic codes 550, 551 and 553 do (servers without ENHANCEDSTATUSCODES use them for
    unknown users)."""
    if not 500 <= code < 600:
        return False
    enhanced = _ENHANCED.match(message)
    if enhanced is None:
        return code in (550, 551, 553)
    subject, detail = enhanced.group(2), enhanced.group(3)
    return subject in ("1", "5") or (subject, detail) == ("2", "1")


class Connection(Protocol):
    async def send(self, sender: str, recipient: str, message: bytes, *,
                   utf8: bool = False) -> str:
        """Deliver one message (`utf8`: the address needs SMTPUTF8); returns the reply."""
        ...

    async def close(self) -> None: ...


class Transport(Protocol):
    name: str

    async def connect(self) -> Connection: ...


# ---------------------------------------------------------------- SMTP

def _reply(exc: aiosmtplib.SMTPResponseException) -> str:
    return f"{exc.code} {exc.message}".strip()


# a plain ASCII address: aiosmtplib's parsing would give it back as it is
_PLAIN = re.compile(r"[A-Za-z0-9_+=-]+(?:\.[A-Za-z0-9_+=-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\Z")


async def _mail(client: aiosmtplib.SMTP, sender: str, options: list[str],
                encoding: str) -> None:
    """MAIL FROM. `client.mail()` parses the address with the email package first (as
    does `rcpt()`: together a twentieth of the CPU a message costs) to send the same
    `<address>` a plain address is: that one goes out at once."""
    if not _PLAIN.match(sender):
        await client.mail(sender, options=options, encoding=encoding)
        return
    response = await client.execute_command(
        b"MAIL", b"FROM:<%s>" % sender.encode("ascii"), *[o.encode("ascii") for o in options])
    if response.code != 250:
        raise aiosmtplib.SMTPSenderRefused(response.code, response.message, sender)


async def _rcpt(client: aiosmtplib.SMTP, recipient: str, encoding: str) -> None:
    """RCPT TO, a plain address at once (see `_mail`)."""
    if not _PLAIN.match(recipient):
        await client.rcpt(recipient, encoding=encoding)
        return
    response = await client.execute_command(b"RCPT", b"TO:<%s>" % recipient.encode("ascii"))
    if response.code not in (250, 251):
        raise aiosmtplib.SMTPRecipientRefused(response.code, response.message, recipient)


class SmtpConnection:
    def __init__(self, client: aiosmtplib.SMTP) -> None:
        self.client = client

    async def send(self, sender: str, recipient: str, message: bytes, *,
                   utf8: bool = False) -> str:
        try:
            reply = await self._transaction(sender, recipient, message, utf8)
        except (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPRecipientRefused) as exc:
            refused = (exc.recipients[0] if isinstance(exc, aiosmtplib.SMTPRecipientsRefused)
                       else exc)
            if 400 <= refused.code < 500:
                raise TransientFailure(_reply(refused), reconnect=False) from exc
            raise PermanentFailure(_reply(refused),
                                   bounce=mailbox_refused(refused.code, refused.message)
                                   ) from exc
        except aiosmtplib.SMTPSenderRefused as exc:  # the server refuses us, not this person
            raise TransientFailure(_reply(exc), server=True) from exc
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == 421:
                raise TransientFailure(_reply(exc), server=True) from exc
            if 400 <= exc.code < 500 or exc.code < 200:
                raise TransientFailure(_reply(exc), reconnect=False) from exc
            raise PermanentFailure(_reply(exc), bounce=False) from exc
        except aiosmtplib.SMTPNotSupported as exc:
            raise PermanentFailure(f"{exc} (needed for {recipient})", bounce=False) from exc
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            raise TransientFailure(f"{type(exc).__name__}: {exc}", server=True) from exc
        return str(reply)

    async def _transaction(self, sender: str, recipient: str, message: bytes,
                           utf8: bool) -> str:
        """MAIL, RCPT, DATA for one recipient. `sendmail` would parse both addresses
        twice and scan the whole message once more for SIZE, a fifth of the CPU a message
        costs: our messages are CRLF already, so their length is their size."""
        client = self.client
        if client.is_ehlo_or_helo_needed:
            await client.ehlo()
        if utf8 and not client.supports_extension("smtputf8"):
            raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server")
        options = ["SMTPUTF8"] if utf8 else []
        if client.supports_extension("size"):
            options.insert(0, f"SIZE={len(message)}")
        encoding = "utf-8" if utf8 else "ascii"
        try:
            await _mail(client, sender, options, encoding)
            await _rcpt(client, recipient, encoding)
            response = await client.data(message)
        except aiosmtplib.SMTPResponseException:
            with contextlib.suppress(ConnectionError, aiosmtplib.SMTPException):
                await client.rset()  # a clean envelope for the next message
            raise
        return response.message

    async def close(self) -> None:
        try:
            if self.client.is_connected:
                await asyncio.wait_for(self.client.quit(), timeout=5)
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            self.client.close()


class SmtpTransport:
    name = "smtp"

    def __init__(self, smtp: SmtpSettings, *, tls_context: ssl.SSLContext | None = None,
                 helo: str = "") -> None:
        self.smtp = smtp
        self.tls_context = tls_context
        self.helo = helo or smtp.helo or socket.getfqdn()

    async def connect(self) -> SmtpConnection:
        s = self.smtp
        client = aiosmtplib.SMTP(
            hostname=s.host, port=s.port, timeout=s.timeout, use_tls=s.tls == "implicit",
            start_tls=s.tls == "starttls", validate_certs=s.verify,
            tls_context=self.tls_context, local_hostname=self.helo)
        try:
            await client.connect()
            if s.username:
                await client.login(s.username, s.password)
        except aiosmtplib.SMTPAuthenticationError as exc:
            client.close()
            raise DeliveryError(f"SMTP login to {s.host}:{s.port} as {s.username!r} failed: "
                                f"{_reply(exc)} (check [smtp] username and "
                                "NEWSLETTER_SMTP_PASSWORD)") from exc
        except aiosmtplib.SMTPResponseException as exc:
            client.close()
            raise TransientFailure(_reply(exc), server=True) from exc
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            raise TransientFailure(f"cannot connect to {s.host}:{s.port}: "
                                   f"{exc or type(exc).__name__}", server=True) from exc
        return SmtpConnection(client)


# ---------------------------------------------------------------- Maildir

class MaildirConnection:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.host = socket.gethostname().replace("/", "_").replace(":", "_")
        self.counter = 0

    async def send(self, sender: str, recipient: str, message: bytes, *,
                   utf8: bool = False) -> str:
        """Write to tmp/, then rename into new/: a reader never sees half a message."""
        self.counter += 1
        name = f"{time.time_ns()}.P{os.getpid()}Q{self.counter}.{self.host}"
        tmp = self.root / "tmp" / name
        try:
            tmp.write_bytes(message)
            os.rename(tmp, self.root / "new" / name)
        except OSError as exc:  # e.g. a full disk: keep the delivery for the next run
            raise TransientFailure(f"cannot write {tmp}: {exc.strerror or exc}",
                                   reconnect=False) from exc
        return f"250 written to {self.root / 'new' / name}"

    async def close(self) -> None:
        return None


class MaildirTransport:
    name = "maildir"

    def __init__(self, root: Path) -> None:
        self.root = root

    async def connect(self) -> MaildirConnection:
        try:
            for sub in ("tmp", "new", "cur"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeliveryError(f"{self.root}: cannot create the Maildir outbox: "
                                f"{exc.strerror or exc}") from exc
        return MaildirConnection(self.root)


async def send_one(transport: Transport, sender: str, recipient: str, message: bytes, *,
                   utf8: bool = False) -> str:
    """One message over its own connection, outside any journal."""
    conn = await transport.connect()
    try:
        return await conn.send(sender, recipient, message, utf8=utf8)
    finally:
        await conn.close()


def helo_name(settings: Settings, fqdn: str | None = None) -> str:
    """`[smtp] helo`, else the host's FQDN when it is a real name, else the From domain:
    a receiving server reads `EHLO localhost` as a spam signal."""
    if settings.smtp is not None and settings.smtp.helo:
        return settings.smtp.helo
    name = (socket.getfqdn() if fqdn is None else fqdn).strip().lower().rstrip(".")
    if "." in name and not name.startswith("localhost") and not name.endswith(".localdomain") \
            and not name.replace(".", "").isdigit():
        return name
    domain = settings.from_address.rpartition("@")[2].lower()
    with contextlib.suppress(UnicodeError):
        domain = domain.encode("idna").decode("ascii")
    return domain


def make_transport(settings: Settings) -> SmtpTransport | MaildirTransport:
    """SMTP when [smtp] is configured, else the Maildir outbox."""
    if settings.smtp is not None:
        return SmtpTransport(settings.smtp, helo=helo_name(settings))
    return MaildirTransport(settings.outbox_dir)


def server_name(settings: Settings) -> str:
    """What the circuit breaker names when it stops a run."""
    if settings.smtp is not None:
        return f"the SMTP server {settings.smtp.host}:{settings.smtp.port}"
    return f"the Maildir outbox {settings.outbox_dir}"


def describe(settings: Settings) -> str:
    if settings.smtp is not None:
        return f"SMTP {settings.smtp.host}:{settings.smtp.port} ({settings.smtp.tls})"
    return f"Maildir outbox {settings.outbox_dir}"
