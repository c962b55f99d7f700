"""Signed, purpose-bound tokens for per-subscriber links (no address in any URL)."""

from __future__ import annotations

from itsdangerous import BadData, URLSafeTimedSerializer

PREFERENCES = "preferences"
UNSUBSCRIBE = "unsubscribe"
CONFIRM = "confirm"
FORM = "form"  # the anti-forgery value of a web form
PURPOSES = (PREFERENCES, UNSUBSCRIBE, CONFIRM, FORM)


class Tokens:
    def __init__(self, secret: str) -> None:
        self._serializers = {p: URLSafeTimedSerializer(secret, salt=f"newsletter-{p}")
                             for p in PURPOSES}

    def make(self, purpose: str, subscriber_id: int) -> str:
        return str(self._serializers[purpose].dumps(subscriber_id))

    def read(self, purpose: str, token: str, max_age: int | None = None) -> int | None:
        """The subscriber id, or None for a forged, altered, expired or wrong-purpose token."""
        try:
            value = self._serializers[purpose].loads(token, max_age=max_age)
        except (BadData, ValueError, TypeError):
            return None
        return value if isinstance(value, int) and not isinstance(value, bool) else None
