"""One date style per language, used by the email, the archive and the preview index.

Chinese: 2025年12月15日–21日, 12月18日. Other languages: Dec 15–21, 2025, Dec 18.
"""

from __future__ import annotations

from datetime import date, datetime


def _zh(lang: str) -> bool:
    return lang.lower().startswith("zh")


def day(value: date | datetime, lang: str) -> str:
    """A day within a known year: 12月18日 / Dec 18."""
    if _zh(lang):
        return f"{value.month}月{value.day}日"
    return f"{value.strftime('%b')} {value.day}"


def full_day(value: date | datetime, lang: str) -> str:
    if _zh(lang):
        return f"{value.year}年{value.month}月{value.day}日"
    return f"{value.strftime('%b')} {value.day}, {value.year}"


def span(start: date, end: date, lang: str) -> str:
    """An inclusive range of days: 2025年12月15日–21日 / Dec 15–21, 2025."""
    if start == end:
        return full_day(start, lang)
    if _zh(lang):
        if start.year != end.year:
            return f"{full_day(start, lang)}–{full_day(end, lang)}"
        tail = f"{end.day}日" if end.month == start.month else f"{end.month}月{end.day}日"
        return f"{start.year}年{start.month}月{start.day}日–{tail}"
    if start.year != end.year:
        return f"{full_day(start, lang)} – {full_day(end, lang)}"
    tail = str(end.day) if end.month == start.month else day(end, lang)
    return f"{day(start, lang)}–{tail}, {start.year}"
