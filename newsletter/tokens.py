"""Signed, purpose-bound tokens for per-subscriber links (no address in any URL).

A token is `subscriber id . timestamp . signature` (itsdangerous' timestamp signer) with a
key derived once per purpose, so a preferences token never works as an unsubscribe or
confirmation token, and signing costs one HMAC (it runs once or twice per message).

The secret may be a comma-separated list of keys: the first signs, every one verifies, so
a key can be rotated without breaking the links already in people's mailboxes.
"""

from __future__ import annotations

import hashlib
import hmac

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

    def derive(self, purpose: str) -> bytes:
        """A key for one purpose outside these tokens (e.g. VERP envelope senders)."""
        return hmac.new(self._secret, f"newsletter-{purpose}".encode(), hashlib.sha256).digest()

    def make(self, purpose: str, subscriber_id: int) -> str:
        return self._signers[purpose].sign(str(subscriber_id)).decode("ascii")

    def read(self, purpose: str, token: str, max_age: int | None = None) -> int | None:
        """The subscriber id, or None for a forged, altered, expired or wrong-purpose token."""
        try:
            value = self._signers[purpose].unsign(token, max_age=max_age)
        except (BadData, ValueError, TypeError):
            return None
        text = value.decode("ascii", "replace")
        return int(text) if text.isdigit() and len(text) < 19 else None
