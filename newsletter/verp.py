"""VERP envelope senders: `local+<token>@domain`, one per delivery.

A bounce comes back to the envelope sender; the token in it says which delivery bounced
(edition, subscriber) without trusting anything else in the bounce. It is signed with a
key derived from the secret key, so a forged bounce cannot mark anyone bounced. Compact
and case-insensitive (some relays lowercase local parts): base36 ids and a base32 MAC,
well inside the 64-octet local-part limit.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

from newsletter.config import Settings
from newsletter.message import ascii_address
from newsletter.tokens import Tokens

BOUNCE = "bounce"
MAC_CHARS = 16  # 80 bits of HMAC-SHA256
_TOKEN = re.compile(r"\+([0-9a-z]{1,13})-([0-9a-z]{1,13})-([a-z2-7]{16})@", re.IGNORECASE)
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(number: int) -> str:
    out = ""
    while True:
        number, digit = divmod(number, 36)
        out = _DIGITS[digit] + out
        if not number:
            return out


@dataclass(frozen=True)
class VerpMatch:
    edition_id: int
    subscriber_id: int
    valid: bool  # False: a token whose signature does not match (forged or altered)
    token: str


class Verp:
    def __init__(self, key: bytes) -> None:
        self.key = key

    def _mac(self, ids: str) -> str:
        digest = hmac.new(self.key, ids.encode("ascii"), hashlib.sha256).digest()
        return base64.b32encode(digest[:10]).decode("ascii").lower()

    def token(self, edition_id: int, subscriber_id: int) -> str:
        ids = f"{_base36(edition_id)}-{_base36(subscriber_id)}"
        return f"{ids}-{self._mac(ids)}"

    def read(self, text: str) -> VerpMatch | None:
        """The first VERP token in an address (or any text holding one)."""
        found = _TOKEN.search(text)
        if found is None:
            return None
        edition, subscriber, mac = (g.lower() for g in found.groups())
        ids = f"{edition}-{subscriber}"
        valid = hmac.compare_digest(self._mac(ids), mac)
        return VerpMatch(int(edition, 36), int(subscriber, 36), valid, f"{ids}-{mac}")


class Envelope:
    """The MAIL FROM of each delivery: the bounce address, in VERP form when enabled."""

    def __init__(self, settings: Settings, tokens: Tokens) -> None:
        address = ascii_address(settings.bounce_address or settings.from_address)
        self.local, _, self.domain = address.rpartition("@")
        self.address = address
        self.verp = Verp(tokens.derive(BOUNCE)) if settings.verp else None

    def sender(self, edition_id: int, subscriber_id: int) -> str:
        if self.verp is None or not edition_id:
            return self.address
        return f"{self.local}+{self.verp.token(edition_id, subscriber_id)}@{self.domain}"
