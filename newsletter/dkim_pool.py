"""RSA signatures in a helper process, beside the event loop.

`cryptography` holds the GIL while it signs, and an RSA-2048 signature (~0.25 ms here)
costs about as much CPU as building and sending the message. One helper process per
key signs batches on another core: while it signs one batch, the event loop builds and
sends the next. A helper that dies fails the messages it held (they are retried) and
signing falls back to the calling process.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import struct
from multiprocessing.connection import Connection

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from newsletter.dkim import Signer
from newsletter.transport import TransientFailure

_LENGTH = struct.Struct("!I")


def _serve(conn: Connection, pem: bytes) -> None:
    """The helper: a batch of length-prefixed inputs in, their signatures out."""
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    while True:
        try:
            batch = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the sender is gone
        out, pos = [], 0
        while pos < len(batch):
            (size,) = _LENGTH.unpack_from(batch, pos)
            pos += _LENGTH.size
            out.append(key.sign(batch[pos:pos + size], padding.PKCS1v15(), hashes.SHA256()))
            pos += size
        conn.send_bytes(b"".join(out))


class SigningProcess:
    def __init__(self, signer: Signer) -> None:
        assert isinstance(signer.key, rsa.RSAPrivateKey)
        self.signer = signer  # kept alive: its id() names this helper
        self.size = (signer.key.key_size + 7) // 8  # every signature is this long
        pem = signer.key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
        context = multiprocessing.get_context("spawn")  # no inherited threads or loop
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, pem), daemon=True,
                                       name="newsletter-dkim")
        self.process.start()
        child.close()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pending: list[tuple[bytes, asyncio.Future[bytes]]] = []
        self.in_flight: list[tuple[bytes, asyncio.Future[bytes]]] = []
        self.broken = False

    async def sign(self, data: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        if loop is not self.loop:
            self._bind(loop)
        future: asyncio.Future[bytes] = loop.create_future()
        self.pending.append((data, future))
        if not self.in_flight:
            self._flush()
        return await future

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve a new event loop (each `asyncio.run` has its own)."""
        if self.in_flight:  # the reply of a batch whose loop is gone: read and drop it
            self.conn.recv_bytes()
        self.pending, self.in_flight = [], []
        if self.loop is not None and not self.loop.is_closed():
            self.loop.remove_reader(self.conn.fileno())
        loop.add_reader(self.conn.fileno(), self._on_reply)
        self.loop = loop

    def _flush(self) -> None:
        self.in_flight, self.pending = self.pending, []
        try:
            self.conn.send_bytes(b"".join(_LENGTH.pack(len(d)) + d for d, _ in self.in_flight))
        except OSError as exc:
            self._fail(exc)

    def _on_reply(self) -> None:
        try:
            reply = self.conn.recv_bytes()
        except (EOFError, OSError) as exc:
            self._fail(exc)
            return
        for n, (_, future) in enumerate(self.in_flight):
            if not future.done():
                future.set_result(reply[n * self.size:(n + 1) * self.size])
        self.in_flight = []
        if self.pending:
            self._flush()

    def _fail(self, exc: BaseException) -> None:
        self.broken = True
        if self.loop is not None and not self.loop.is_closed():
            self.loop.remove_reader(self.conn.fileno())
        for _, future in self.in_flight + self.pending:
            if not future.done():
                future.set_exception(TransientFailure(f"DKIM signing process: {exc!r}",
                                                      reconnect=False))
        self.in_flight, self.pending = [], []


_processes: dict[int, SigningProcess] = {}


async def sign_elsewhere(signer: Signer, data: bytes) -> bytes:
    """Sign `data` in the key's helper process; in this one if the helper is unavailable."""
    helper = _processes.get(id(signer))
    if helper is None:
        try:
            helper = _processes[id(signer)] = SigningProcess(signer)
        except OSError:
            return signer.sign(data)
    if helper.broken:
        return signer.sign(data)
    return await helper.sign(data)
