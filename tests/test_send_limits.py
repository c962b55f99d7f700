"""Rate limits that hold: per-second pacing, the retry backoff, the hourly cap counted from
the journal, and a stop that interrupts every wait. Each test fails if its mechanism is
switched off."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from newsletter.config import Settings
from newsletter.render import Renderer
from newsletter.send import (
    Sender,
    SendOptions,
    SendReport,
    find_snapshot,
    plan_edition,
    store_snapshot,
)
from newsletter.store import Store
from newsletter.tokens import Tokens
from newsletter.transport import make_transport
from newsletter.window import resolve_window
from tests.conftest import WritePost, smtp_settings
from tests.test_send import POST, add, week  # noqa: F401


def timed_run(settings: Settings, window: Any, *, stop_after_results: int | None = None,
              stop_after_seconds: float | None = None,
              **overrides: Any) -> tuple[SendReport, float]:
    with Store(settings.store_path) as store:
        renderer = Renderer(settings)
        snap = find_snapshot(store, window) or store_snapshot(
            store, plan_edition(store, settings, window, renderer))

        async def go() -> SendReport:
            stop = asyncio.Event()
            if stop_after_seconds is not None:
                asyncio.get_running_loop().call_later(stop_after_seconds, stop.set)

            def watch(event: object, report: SendReport) -> None:
                if stop_after_results is not None and report.done >= stop_after_results:
                    stop.set()

            sender = Sender(store, settings, snap.edition_id, make_transport(settings),
                            SendOptions.from_settings(settings, **overrides),
                            renderer=renderer, tokens=Tokens("test-secret-key"), stop=stop,
                            on_event=watch)
            return await asyncio.wait_for(sender.run(), 60)

        started = time.monotonic()
        report = asyncio.run(go())
        return report, time.monotonic() - started


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
