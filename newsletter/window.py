"""Time windows: half-open `[start, end)` intervals of aware datetimes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

from newsletter.errors import WindowError

MAX_DAYS = 3660  # ten years: beyond that a window is a typo
_WEEK = re.compile(r"^(\d{4})-?W(\d{1,2})$", re.IGNORECASE)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    def __contains__(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    @property
    def last_day(self) -> date:
        """The last calendar day inside the window (for 'Dec 15–21' labels)."""
        return (self.end - timedelta(microseconds=1)).date()

    def label(self) -> str:
        return f"{self.start.isoformat()} .. {self.end.isoformat()}"


def parse_moment(text: str, tz: tzinfo, option: str) -> datetime:
    """A date (midnight in `tz`) or an ISO 8601 datetime (naive means `tz`)."""
    if not 10 <= len(text.strip()) <= 40:
        raise WindowError(f"{option} {text!r}: expected a date like 2025-12-15 "
                          "or a time like 2025-12-15T08:00")
    try:
        if len(text.strip()) == 10:
            return datetime.combine(date.fromisoformat(text.strip()), time(), tz)
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise WindowError(f"{option} {text!r}: expected a date like 2025-12-15 "
                          "or a time like 2025-12-15T08:00") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)


def iso_week(text: str, tz: tzinfo) -> Window:
    match = _WEEK.match(text.strip())
    if not match:
        raise WindowError(f"--week {text!r}: expected an ISO week like 2025-W51")
    try:
        monday = date.fromisocalendar(int(match[1]), int(match[2]), 1)
    except ValueError as exc:
        raise WindowError(f"--week {text!r}: no such ISO week") from exc
    start = datetime.combine(monday, time(), tz)
    return Window(start, datetime.combine(monday + timedelta(days=7), time(), tz))


def last_complete_week(tz: tzinfo, now: datetime | None = None) -> Window:
    today = (now or datetime.now(tz)).astimezone(tz).date()
    this_monday = today - timedelta(days=today.weekday())
    monday = this_monday - timedelta(days=7)
    return Window(datetime.combine(monday, time(), tz), datetime.combine(this_monday, time(), tz))


def resolve_window(*, tz: tzinfo, since: str | None = None, until: str | None = None,
                   week: str | None = None, days: int | None = None,
                   now: datetime | None = None) -> Window:
    """Turn the shared CLI window options into one window, or explain the conflict."""
    if week is not None and (since or until or days is not None):
        raise WindowError("--week cannot be combined with --since, --until or --days")
    if days is not None and since and until:
        raise WindowError("--days needs only one of --since and --until, not both")
    if days is not None and not 0 < days <= MAX_DAYS:
        raise WindowError(f"--days {days}: must be a number of days from 1 to {MAX_DAYS}")
    if week is not None:
        return iso_week(week, tz) if week else last_complete_week(tz, now)
    current = (now or datetime.now(tz)).astimezone(tz)
    start = parse_moment(since, tz, "--since") if since else None
    end = parse_moment(until, tz, "--until") if until else None
    try:
        return _resolve(tz, start, end, days, current, now)
    except OverflowError as exc:
        raise WindowError("the window reaches past the dates a calendar can hold; check "
                          "--since, --until and --days") from exc


def _resolve(tz: tzinfo, start: datetime | None, end: datetime | None, days: int | None,
             current: datetime, now: datetime | None) -> Window:
    if days is not None:
        if start is not None:
            end = start + timedelta(days=days)
        else:
            # ending "now" means the start of this hour, so a rerun in the same hour is the
            # same window (and resumes its edition) instead of a new, overlapping one
            end = end or current.replace(minute=0, second=0, microsecond=0)
            start = end - timedelta(days=days)
    if start is None and end is None:
        return last_complete_week(tz, now)
    if start is None:
        raise WindowError("--until needs --since or --days")
    end = end or current
    if end <= start:
        raise WindowError(f"empty window: --until ({end.isoformat()}) must be after "
                          f"--since ({start.isoformat()})")
    return Window(start, end)
