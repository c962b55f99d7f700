"""The bounce mailbox: a Maildir, an mbox file or an IMAP folder.

Each yields (label, raw bytes) and can set a processed message aside: Maildir moves it
into the `.processed` subfolder (Maildir++), IMAP flags it `\\Seen` plus a keyword and
moves it to a `processed` folder when the server has MOVE. An mbox is only read: the
store remembers what it has seen, so reading it again changes nothing.
"""

from __future__ import annotations

import contextlib
import imaplib
import mailbox
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from newsletter.config import IMAP_PASSWORD_ENV
from newsletter.errors import ConfigError, DeliveryError

PROCESSED = "processed"
KEYWORD = "$NewsletterProcessed"


class Mailbox(Protocol):
    name: str
    moves: bool  # whether done() sets messages aside

    def messages(self) -> Iterator[tuple[str, bytes]]: ...

    def done(self, label: str) -> None: ...

    def close(self) -> None: ...


class MaildirBox:
    moves = True

    def __init__(self, root: Path) -> None:
        if not (root / "new").is_dir() or not (root / "cur").is_dir():
            raise ConfigError(f"{root}: not a Maildir (no new/ and cur/ folders)")
        self.root, self.name = root, str(root)
        self.target = root / f".{PROCESSED}"

    def messages(self) -> Iterator[tuple[str, bytes]]:
        for sub in ("new", "cur"):
            for path in sorted((self.root / sub).iterdir()):
                if path.is_file() and not path.name.startswith("."):
                    yield f"{sub}/{path.name}", path.read_bytes()

    def done(self, label: str) -> None:
        for sub in ("tmp", "new", "cur"):
            (self.target / sub).mkdir(parents=True, exist_ok=True)
        (self.target / "maildirfolder").touch()
        sub, name = label.split("/", 1)
        if sub == "new" and ":2," not in name:
            name += ":2,S"  # read, as a mail client would mark it
        os.rename(self.root / label, self.target / "cur" / name)

    def close(self) -> None:
        return None


class MboxBox:
    moves = False

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise ConfigError(f"{path}: mbox file not found")
        self.path, self.name = path, str(path)
        self.box = mailbox.mbox(path, create=False)

    def messages(self) -> Iterator[tuple[str, bytes]]:
        for n, key in enumerate(self.box.iterkeys(), 1):
            yield f"#{n}", self.box.get_bytes(key)

    def done(self, label: str) -> None:
        return None

    def close(self) -> None:
        self.box.close()


class ImapBox:
    moves = True

    def __init__(self, url: str, *, password: str | None = None, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("imap", "imaps") or not parts.hostname or not parts.username:
            raise ConfigError(f"--imap {url}: expected imaps://user@host/INBOX")
        password = password if password is not None else os.environ.get(IMAP_PASSWORD_ENV)
        if not password:
            raise ConfigError(f"set {IMAP_PASSWORD_ENV} to the IMAP password of "
                              f"{unquote(parts.username)}")
        self.folder = unquote(parts.path.lstrip("/")) or "INBOX"
        self.name = f"{parts.scheme}://{parts.username}@{parts.hostname}/{self.folder}"
        port = parts.port or (993 if parts.scheme == "imaps" else 143)
        try:
            if parts.scheme == "imaps":
                self.imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(parts.hostname, port,
                                                             timeout=timeout)
            else:
                self.imap = imaplib.IMAP4(parts.hostname, port, timeout=timeout)
            self.imap.login(unquote(parts.username), password)
            status, _ = self.imap.select(self._quote(self.folder))
        except (OSError, imaplib.IMAP4.error) as exc:
            raise DeliveryError(f"{self.name}: {exc}") from exc
        if status != "OK":
            raise DeliveryError(f"{self.name}: cannot open the folder {self.folder!r}")
        self.can_move = "MOVE" in self._capabilities()
        self.target = ""

    def _capabilities(self) -> set[str]:
        """Asked again after login: servers announce MOVE only to a logged-in client."""
        status, data = self.imap.capability()
        first = data[0] if status == "OK" and data else b""
        words = first.decode("ascii", "replace").upper().split() if isinstance(
            first, bytes) else []
        return set(words) | {str(c).upper() for c in self.imap.capabilities}

    @staticmethod
    def _quote(name: str) -> str:
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'

    def messages(self) -> Iterator[tuple[str, bytes]]:
        status, data = self.imap.uid("SEARCH", "NOT", "KEYWORD", KEYWORD)
        uids = data[0].split() if status == "OK" and data and data[0] else []
        for uid in uids:
            status, fetched = self.imap.uid("FETCH", uid, "(BODY.PEEK[])")
            for item in fetched if status == "OK" else []:
                if isinstance(item, tuple):
                    yield uid.decode("ascii"), bytes(item[1])

    def _processed_folder(self) -> str:
        if not self.target:
            status, data = self.imap.list('""', '""')
            first = data[0] if status == "OK" and data else None
            found = re.search(rb'\) "(.)"', first) if isinstance(first, bytes) else None
            delimiter = found.group(1).decode() if found else "/"
            for name in (PROCESSED, f"INBOX{delimiter}{PROCESSED}"):
                with contextlib.suppress(imaplib.IMAP4.error):
                    self.imap.create(self._quote(name))
                if self.imap.select(self._quote(name), readonly=True)[0] == "OK":
                    self.target = name
                    break
            self.imap.select(self._quote(self.folder))
        return self.target

    def done(self, label: str) -> None:
        self.imap.uid("STORE", label, "+FLAGS", f"(\\Seen {KEYWORD})")
        if self.can_move and self._processed_folder():
            self.imap.uid("MOVE", label, self._quote(self.target))

    def close(self) -> None:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            self.imap.close()
            self.imap.logout()


def open_mailbox(*, maildir: Path | None, mbox: Path | None, imap: str | None) -> Mailbox:
    chosen = [x for x in (maildir, mbox, imap) if x is not None]
    if len(chosen) != 1:
        raise ConfigError("choose one mailbox: --maildir DIR, --mbox FILE or "
                          "--imap imaps://user@host/INBOX")
    if maildir is not None:
        return MaildirBox(maildir)
    if mbox is not None:
        return MboxBox(mbox)
    assert imap is not None
    return ImapBox(imap)
