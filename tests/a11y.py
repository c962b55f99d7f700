"""Checks a person would make on a page, run inside Chromium from computed styles:
horizontal overflow, WCAG AA contrast of every visible text node against its effective
background, and the height of touch targets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHECK = (Path(__file__).parent / "a11y.js").read_text(encoding="utf-8")

WIDTHS = (320, 375, 600, 1024)
SCHEMES = ("light", "dark")
TARGETS = "footer a, .footer a, button, .button, .pre a"


def check_page(page: Any, width: int) -> list[str]:
    """Problems on the page as shown (targets only on phone widths)."""
    problems: list[str] = page.evaluate(CHECK, TARGETS if width < 600 else "")
    return problems
