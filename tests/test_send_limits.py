"""Rate limits that hold: per-second pacing, the retry backoff, the hourly cap counted from
the journal, and a stop that interrupts every wait. Each test fails if its mechanism is
switched off."""

from __future__ import annotations

import time
from typing import Any

import newsletter.limits as limits
from newsletter.config import Settings
from newsletter.send import SendReport
from newsletter.window import resolve_window
from tests.conftest import WritePost, smtp_settings
from tests.pg import both_stores
from tests.test_send import POST, add, deliver, week  # noqa: F401


def timed_run(settings: Settings, window: Any, *, stop_after_results: int | None = None,
              **overrides: Any) -> tuple[SendReport, float]:
    """`deliver`, and how long the send itself took (the snapshot not counted)."""
    report = deliver(settings, window, stop_after=stop_after_results, **overrides)
    return report, time.monotonic() - report.started


def test_rate_paces_messages(settings: Settings, week: Any) -> None:  # noqa: F811
    add(settings, *[(f"r{n}@example.com", "", "") for n in range(30)])
    report, elapsed = timed_run(settings, week, rate=20.0, concurrency=2)
    assert report.sent == 30
    assert elapsed >= (30 - 2) / 20 * 0.9, elapsed  # a burst of 2, then 20 per second


def test_retries_back_off(settings: Settings, week: Any, smtp_server: Any) -> None:  # noqa: F811
    handler, port = smtp_server
    handler.busy["slow@example.com"] = 3  # 451 three times, then accepted
    settings = smtp_settings(settings, port, retry_delay=0.2, concurrency=1)
    add(settings, ("slow@example.com", "", ""))
    report, elapsed = timed_run(settings, week)
    assert report.sent == 1
    # waits of 0.2, 0.4 and 0.8 s, each scaled by a jitter of 0.5 to 1.5
    assert elapsed >= (0.2 + 0.4 + 0.8) * 0.5, elapsed


def test_stop_interrupts_a_limiter_wait(settings: Settings, week: Any) -> None:  # noqa: F811
    add(settings, *[(f"s{n}@example.com", "", "") for n in range(10)])
    report, elapsed = timed_run(settings, week, rate=0.5, concurrency=3,
                                stop_after_results=1)
    assert report.interrupted and report.sent == 1  # the others were waiting: not sent
    assert elapsed < 1.5, elapsed  # not the 2 s the next message had to wait
    assert len(list((settings.outbox_dir / "new").iterdir())) == 1


@both_stores
def test_hourly_cap_counts_the_journal_across_editions_and_runs(
        settings: Settings, week: Any, write_post: WritePost) -> None:  # noqa: F811
    import zoneinfo

    add(settings, *[(f"h{n}@example.com", "", "") for n in range(4)])
    first, _ = timed_run(settings, week)  # 4 accepted within this hour
    assert first.sent == 4
    write_post("w52.md", POST.replace("{n}", "5").replace("2025-12-15", "2025-12-23"))
    next_week = resolve_window(tz=zoneinfo.ZoneInfo("Asia/Shanghai"), week="2025-W52")
    add(settings, ("h4@example.com", "", ""))
    capped, elapsed = timed_run(settings, next_week, per_hour=6, stop_after_seconds=0.5)
    assert capped.sent == 2 and capped.interrupted  # 4 + 2 = the cap; then it waits
    assert elapsed < 3, elapsed  # the stop ended the wait
    resumed, _ = timed_run(settings, next_week, per_hour=6, stop_after_seconds=0.3)
    assert resumed.sent == 0  # a resume sees the same hour in the journal
    free, _ = timed_run(settings, next_week, per_hour=100)
    assert free.sent == 3


def test_stop_takes_not_one_more_message(settings: Settings, week: Any) -> None:  # noqa: F811
    add(settings, *[(f"n{n}@example.com", "", "") for n in range(40)])
    report, _ = timed_run(settings, week, concurrency=1, stop_after_results=5)
    assert report.interrupted and report.sent == 5
    assert len(list((settings.outbox_dir / "new").iterdir())) == 5


def test_hourly_cap_counts_messages_waiting_for_their_commit(
        settings: Settings, week: Any, monkeypatch: Any) -> None:  # noqa: F811
    """An accepted message stays in flight until its group commit: a journal read that
    falls in between (here: before every message) does not forget it."""
    monkeypatch.setattr(limits, "RELOAD", 0.0)
    add(settings, *[(f"h{n}@example.com", "", "") for n in range(40)])
    report = deliver(settings, week, per_hour=3, concurrency=8, stop_after_seconds=2)
    assert report.sent == 3
