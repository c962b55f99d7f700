from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from newsletter.errors import WindowError
from newsletter.window import resolve_window

TZ = ZoneInfo("Asia/Shanghai")


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=TZ)  # type: ignore[misc]


def test_iso_week_is_monday_to_monday() -> None:
    window = resolve_window(tz=TZ, week="2025-W51")
    assert (window.start, window.end) == (at(2025, 12, 15), at(2025, 12, 22))
    assert window.last_day.isoformat() == "2025-12-21"


def test_week_edges_are_half_open() -> None:
    window = resolve_window(tz=TZ, week="2025-W51")
    assert at(2025, 12, 15) in window
    assert at(2025, 12, 21, 23, 59, 59) in window
    assert at(2025, 12, 22) not in window  # exactly at the end is out
    assert at(2025, 12, 14, 23, 59) not in window
    # 2025-12-21T15:59:59Z is 23:59:59 in Shanghai: inside
    assert datetime(2025, 12, 21, 15, 59, 59, tzinfo=ZoneInfo("UTC")) in window


def test_default_is_last_complete_week() -> None:
    now = at(2025, 12, 24, 9)  # a Wednesday
    window = resolve_window(tz=TZ, now=now)
    assert (window.start, window.end) == (at(2025, 12, 15), at(2025, 12, 22))
    monday = resolve_window(tz=TZ, now=at(2025, 12, 22, 0, 0), week="")
    assert monday.end == at(2025, 12, 22)


def test_since_until_dates_mean_local_midnight() -> None:
    window = resolve_window(tz=TZ, since="2025-12-15", until="2025-12-18T12:00")
    assert (window.start, window.end) == (at(2025, 12, 15), at(2025, 12, 18, 12))
    utc = resolve_window(tz=TZ, since="2025-12-15T00:00:00Z", days=1)
    assert utc.start == datetime(2025, 12, 15, tzinfo=ZoneInfo("UTC"))


def test_days() -> None:
    now = at(2025, 12, 24, 9)
    assert resolve_window(tz=TZ, days=3, now=now).start == now - timedelta(days=3)
    # "now" is the start of the current hour: a rerun within the hour is the same window
    early = resolve_window(tz=TZ, days=7, now=at(2025, 12, 24, 9, 0, 1))
    late = resolve_window(tz=TZ, days=7, now=at(2025, 12, 24, 9, 59, 59, 999999))
    assert early == late and early.end == now
    assert resolve_window(tz=TZ, since="2025-12-01", days=2).end == at(2025, 12, 3)
    assert resolve_window(tz=TZ, until="2025-12-03", days=2).start == at(2025, 12, 1)


@pytest.mark.parametrize(("options", "message"), [
    ({"week": "2025-W51", "days": 3}, "--week cannot be combined"),
    ({"since": "2025-12-01", "until": "2025-12-05", "days": 2}, "--days needs only one"),
    ({"days": 0}, "from 1 to"),
    ({"days": 100000000}, "from 1 to"),
    ({"since": "9999-12-20", "days": 30}, "past the dates a calendar can hold"),
    ({"since": "2025-12-01" * 10}, "expected a date"),
    ({"week": "2025-51"}, "expected an ISO week"),
    ({"week": "2025-W54"}, "no such ISO week"),
    ({"since": "yesterday"}, "--since 'yesterday'"),
    ({"since": "2025-12-05", "until": "2025-12-01"}, "empty window"),
    ({"until": "2025-12-05"}, "--until needs --since or --days"),
])
def test_bad_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(WindowError, match=message):
        resolve_window(tz=TZ, **options)  # type: ignore[arg-type]
