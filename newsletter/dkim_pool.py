"""RSA signatures in a helper process, beside the event loop.

`cryptography` holds the GIL while it signs, and an RSA-2048 signature (~0.25 ms here)
costs about as much CPU as building and sending the message. One helper process per
key signs on another core while the event loop builds and sends other messages. A
helper that dies fails the messages it held (they are retried) and signing falls back
to the calling process.
"""

from __future__ import annotations

import asyncio
import collections
import multiprocessing
import signal
from multiprocessing.connection import Connection

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from newsletter.dkim import Signer
from newsletter.transport import TransientFailure


def _serve(conn: Connection, pem: bytes) -> None:
    """The helper: data in, its signature out, in order. Ctrl+C reaches the whole process
    group: the sender handles it; the helper ends when the sender closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the sender is gone
        conn.send_bytes(key.sign(data, padding.PKCS1v15(), hashes.SHA256()))


class SigningProcess:
    def __init__(self, signer: Signer) -> None:
        self.signer = signer  # kept alive: its id() names this helper
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
        self.waiting: collections.deque[asyncio.Future[bytes]] = collections.deque()
        self.broken = False

    async def sign(self, data: bytes) -> bytes:
        """Each request goes out at once (one small write); replies come back in order,
        each as soon as it is signed, so a message waits for its own signature only."""
        loop = asyncio.get_running_loop()
        if loop is not self.loop:
            self._bind(loop)
        future: asyncio.Future[bytes] = loop.create_future()
        try:
            self.conn.send_bytes(data)
        except OSError as exc:
            self._fail(exc)
            raise TransientFailure(f"DKIM signing process: {exc!r}", reconnect=False) from exc
        self.waiting.append(future)
        return await future

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve a new event loop (each `asyncio.run` has its own)."""
        for _ in range(len(self.waiting)):  # replies for a loop that is gone: drop them
            self.conn.recv_bytes()
        self.waiting.clear()
        if self.loop is not None and not self.loop.is_closed():
            self.loop.remove_reader(self.conn.fileno())
        loop.add_reader(self.conn.fileno(), self._on_reply)
        self.loop = loop

    def _on_reply(self) -> None:
        """Every reply that is ready, in one wake-up."""
        try:
            while self.waiting:
                signature = self.conn.recv_bytes()
                future = self.waiting.popleft()
                if not future.done():
                    future.set_result(signature)
                if not self.conn.poll(0):
                    break
        except (EOFError, OSError) as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        self.broken = True
        if self.loop is not None and not self.loop.is_closed():
            self.loop.remove_reader(self.conn.fileno())
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(TransientFailure(f"DKIM signing process: {exc!r}",
                                                      reconnect=False))


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
