"""The editor's note of an edition: a short Markdown file shown above the stories.

It is found next to the content folder as `editions/2025-W51.md` (the ISO week of the
window's first day) or `editions/2025-12-15.md` (that day), or given with `--intro FILE`.
"""

from __future__ import annotations

from pathlib import Path

from newsletter.config import Settings
from newsletter.errors import NewsletterError
from newsletter.window import Window

MAX_INTRO_BYTES = 20_000


def intro_candidates(settings: Settings, window: Window) -> list[Path]:
    start = window.start.astimezone(settings.timezone).date()
    year, week, _ = start.isocalendar()
    folder = settings.content_dir.parent / "editions"
    return [folder / f"{year}-W{week:02d}.md", folder / f"{start.isoformat()}.md"]


def read_intro(path: Path) -> str:
    """The note's Markdown; a bad file is a one-line error naming it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NewsletterError(f"{path}: cannot read the editor's note ({exc.strerror})") from exc
    if len(data) > MAX_INTRO_BYTES:
        raise NewsletterError(f"{path}: the editor's note is over {MAX_INTRO_BYTES:,} bytes; "
                              "shorten it")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise NewsletterError(f"{path}: the editor's note is not UTF-8; save it as UTF-8") \
            from exc


def find_intro(settings: Settings, window: Window, explicit: Path | None = None) -> str:
    """`--intro FILE` wins; else the first `editions/` file that exists; else no note."""
    if explicit is not None:
        return read_intro(explicit)
    for path in intro_candidates(settings, window):
        if path.is_file():
            return read_intro(path)
    return ""
