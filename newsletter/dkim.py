"""DKIM signatures (RFC 6376; Ed25519 per RFC 8463), relaxed/relaxed, with `cryptography`.

One `Signer` per run: the key is loaded once; per message only the body hash, the
canonical form of the signed headers and one signature are computed. The signed header
list covers what receivers judge and what RFC 8058 asks for (List-Unsubscribe and
List-Unsubscribe-Post); the headers a forwarder could add to mislead (From, Subject,
List-Unsubscribe*) are listed once more than they occur, so a second copy breaks it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from newsletter.config import DKIM_KEY_ENV, DkimSettings
from newsletter.errors import ConfigError

SIGNED = ("from", "to", "subject", "date", "message-id", "reply-to", "list-id",
          "list-unsubscribe", "list-unsubscribe-post", "feedback-id", "mime-version",
          "content-type", "content-language", "content-transfer-encoding")
OVERSIGNED = ("from", "subject", "list-unsubscribe", "list-unsubscribe-post")
_SIGNED_BYTES = tuple(n.encode() for n in SIGNED)
_OVERSIGNED_BYTES = tuple(n.encode() for n in OVERSIGNED)
_WSP = re.compile(rb"[ \t]+")
_TRAILING_WSP = re.compile(rb"[ \t]+\r\n")
_FIELD = re.compile(rb"^(?=[^ \t])", re.MULTILINE)

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def relaxed_body(body: bytes) -> bytes:
    # Substring tests are memchr-fast; our own bodies (base64 lines) never need the regexes.
    if b"\t" in body or b"  " in body or b" \r\n" in body:
        body = _TRAILING_WSP.sub(b"\r\n", _WSP.sub(b" ", body))
    if body.endswith(b"\r\n") and not body.endswith(b"\r\n\r\n"):
        return body
    body = body.rstrip(b"\r\n")
    return body + b"\r\n" if body else b""


def relaxed_header(field: bytes) -> tuple[bytes, bytes]:
    """(lowercased name, `name:value` canonical form without the line end)."""
    name, _, value = field.partition(b":")
    value = _WSP.sub(b" ", value.replace(b"\r\n", b"")).strip(b" ")
    name = name.strip(b" \t").lower()
    return name, name + b":" + value


def load_key(dkim: DkimSettings) -> PrivateKey:
    if dkim.key_file is not None:
        where = str(dkim.key_file)
        try:
            pem = dkim.key_file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read the DKIM key ([dkim] key_file): "
                              f"{exc.strerror or exc}") from exc
    else:
        where = DKIM_KEY_ENV
        pem = os.environ.get(DKIM_KEY_ENV, "").replace("\\n", "\n").encode()
        if not pem.strip():
            raise ConfigError(f"[dkim] is configured but neither key_file nor {DKIM_KEY_ENV} "
                              "is set (create a key with `newsletter dkim-key`)")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{where}: not an unencrypted PEM private key "
                          "(create one with `newsletter dkim-key`)") from exc
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 1024:
            raise ConfigError(f"{where}: RSA key of {key.key_size} bits; receivers want "
                              "2048 (`newsletter dkim-key`)")
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise ConfigError(f"{where}: DKIM keys are RSA or Ed25519, not {type(key).__name__}")


@dataclass
class Signer:
    domain: str
    selector: str
    key: PrivateKey
    _static: dict[bytes, dict[bytes, bytes]] = field(default_factory=dict, repr=False)

    @property
    def slow(self) -> bool:
        """RSA signing (~0.4 ms) is worth a thread; Ed25519 (~0.08 ms) is not."""
        return isinstance(self.key, rsa.RSAPrivateKey)

    @property
    def algorithm(self) -> str:
        return "rsa-sha256" if isinstance(self.key, rsa.RSAPrivateKey) else "ed25519-sha256"

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return self.key.sign(hashlib.sha256(data).digest())  # RFC 8463: sign the hash

    def _fields(self, head: bytes) -> dict[bytes, bytes]:
        """Signed header name -> canonical `name:value`, the last instance of each."""
        canonical: dict[bytes, bytes] = {}
        for raw in reversed([f for f in _FIELD.split(head) if f]):
            name, text = relaxed_header(raw.rstrip(b"\r\n"))
            if name.decode("ascii", "replace") in SIGNED:
                canonical.setdefault(name, text)
        return canonical

    def prepare(self, head: bytes, body: bytes, *, static: bytes = b"",
                canonical_body: bool = False, now: int | None = None) -> tuple[bytes, bytes]:
        """(the `DKIM-Signature:` field up to `b=`, the data to sign) for a message whose
        header block (fields ending in CRLF, no blank line) is `static + head`. The
        static part, the same for many messages, is canonicalized once; a body known to
        be in canonical form already (ours: base64 lines) is hashed as it is."""
        fixed = self._static.get(static)
        if fixed is None:
            if len(self._static) > 32:
                self._static.clear()
            fixed = self._static[static] = self._fields(static)
        canonical = {**fixed, **self._fields(head)} if head else fixed
        names = [n for n in _SIGNED_BYTES if n in canonical]
        listed = names + [n for n in _OVERSIGNED_BYTES if n in canonical]
        digest = hashlib.sha256(body if canonical_body else relaxed_body(body)).digest()
        stamp = int(time.time()) if now is None else now
        header = (f"DKIM-Signature: v=1; a={self.algorithm}; c=relaxed/relaxed; "
                  f"d={self.domain}; s={self.selector}; t={stamp};\r\n"
                  f"\th={b':'.join(listed).decode()};\r\n"
                  f"\tbh={base64.b64encode(digest).decode()};\r\n\tb=").encode()
        data = b"\r\n".join(canonical[n] for n in names) + b"\r\n"
        return header, data + relaxed_header(header)[1]

    @staticmethod
    def finish(field: bytes, signature: bytes) -> bytes:
        return field + base64.b64encode(signature) + b"\r\n"

    def signature(self, head: bytes, body: bytes, *, now: int | None = None) -> bytes:
        """The `DKIM-Signature:` field, with its CRLF, to put before the header block."""
        field, data = self.prepare(head, body, now=now)
        return self.finish(field, self.sign(data))


@functools.lru_cache(maxsize=8)
def _cached_signer(dkim: DkimSettings, env_key: str) -> Signer:
    return Signer(dkim.domain, dkim.selector, load_key(dkim))


def signer_for(dkim: DkimSettings | None) -> Signer | None:
    """The configured signer, loaded once per process (and again if the key changes)."""
    if dkim is None:
        return None
    return _cached_signer(dkim, os.environ.get(DKIM_KEY_ENV, ""))


# ---------------------------------------------------------------- keys and DNS records

def generate_key(kind: str = "rsa", bits: int = 2048) -> tuple[bytes, str]:
    """A new private key (PEM) and the value of its DNS TXT record."""
    key: PrivateKey
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    elif kind == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ConfigError(f"unknown key type {kind!r} (rsa or ed25519)")
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return pem, txt_record(key)


def txt_record(key: PrivateKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        der = key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"


def zone_line(selector: str, domain: str, value: str) -> str:
    """The record as a zone-file line: TXT strings are at most 255 characters each."""
    chunks = " ".join(f'"{value[i:i + 255]}"' for i in range(0, len(value), 255))
    return f"{selector}._domainkey.{domain}. IN TXT ( {chunks} )"


def write_key(path: Path, pem: bytes) -> None:
    """Create the key file readable by its owner only; never overwrite a key."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise ConfigError(f"{path}: already exists; choose another --out (a published "
                          "key must not be overwritten)") from exc
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
