"""Signed, purpose-bound tokens for per-subscriber links (no address in any URL).

A token is `subscriber id . timestamp . signature` (itsdangerous' timestamp signer) with a
key derived once per purpose, so a preferences token never works as an unsubscribe or
confirmation token, and signing costs one HMAC (it runs once or twice per message).

The secret may be a comma-separated list of keys: the first signs, every one verifies, so
a key can be rotated without breaking the links already in people's mailboxes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from itsdangerous import BadData, TimestampSigner

PREFERENCES = "preferences"
UNSUBSCRIBE = "unsubscribe"
CONFIRM = "confirm"
FORM = "form"  # the anti-forgery value of a web form
PURPOSES = (PREFERENCES, UNSUBSCRIBE, CONFIRM, FORM)


def secret_keys(secret: str) -> list[str]:
    """The keys of a comma-separated secret, newest first."""
    return [key.strip() for key in secret.split(",") if key.strip()]


class Tokens:
    def __init__(self, secret: str) -> None:
        keys = secret_keys(secret) or [secret]
        self._secret = keys[0].encode()  # the newest key derives keys for other uses
        # itsdangerous signs with the last key of its list and verifies with all of them
        self._signers = {
            purpose: TimestampSigner(
                [hmac.new(key.encode(), f"newsletter-{purpose}".encode(),
                          hashlib.sha256).digest() for key in reversed(keys)],
                key_derivation="none", digest_method=hashlib.sha256)
            for purpose in PURPOSES}
        # the same signature, made without the signer's per-call setup (twice a message)
        self._macs = {purpose: hmac.new(signer.secret_keys[-1], digestmod=hashlib.sha256)
                      for purpose, signer in self._signers.items()}
        self._stamp = (-1, b"")

    def derive(self, purpose: str) -> bytes:
        """A key for one purpose outside these tokens (e.g. VERP envelope senders)."""
        return hmac.new(self._secret, f"newsletter-{purpose}".encode(), hashlib.sha256).digest()

    def make(self, purpose: str, subscriber_id: int, *, now: int | None = None) -> str:
        """What the purpose's `TimestampSigner.sign` gives: `id.time.signature`, the time
        and the signature URL-safe base64 without padding."""
        second = int(time.time()) if now is None else now
        if second != self._stamp[0]:
            self._stamp = (second, base64.urlsafe_b64encode(
                second.to_bytes(8, "big").lstrip(b"\x00")).rstrip(b"="))
        value = b"%d.%s" % (subscriber_id, self._stamp[1])
        mac = self._macs[purpose].copy()
        mac.update(value)
        signature = base64.urlsafe_b64encode(mac.digest()).rstrip(b"=")
        return (value + b"." + signature).decode("ascii")

    def read(self, purpose: str, token: str, max_age: int | None = None) -> int | None:
        """The subscriber id, or None for a forged, altered, expired or wrong-purpose token."""
        try:
            value = self._signers[purpose].unsign(token, max_age=max_age)
        except (BadData, ValueError, TypeError):
            return None
        text = value.decode("ascii", "replace")
        return int(text) if text.isdigit() and len(text) < 19 else None
