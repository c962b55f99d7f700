"""Windows resume and never overlap; the snapshot is everyone active when it is stored."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import Settings
from newsletter.render import Renderer
from newsletter.send import plan_edition, store_snapshot
from newsletter.store import Store
from newsletter.subscribers import Subscribers
from tests.conftest import WritePost, smtp_settings
from tests.pg import both_backends  # noqa: F401 (every test on both stores)
from tests.test_send import add, deliver, parsed, week  # noqa: F401


def test_days_window_resumes_instead_of_starting_a_new_edition(
        settings: Settings, write_post: WritePost) -> None:
    recent = datetime.now(settings.timezone) - timedelta(days=1)
    write_post("recent.md", f"---\ndate: {recent.isoformat(timespec='seconds')}\n---\n"
               "1. [A model story - Lab](https://news.example/1)\n\n   Text.\n")
    add(settings, *[(f"d{n}@example.com", "", "") for n in range(5)])
    while datetime.now().minute == 59 and datetime.now().second > 45:
        time.sleep(1)  # both runs inside one hour (the window ends at its start)
    runner = CliRunner()
    first = runner.invoke(cli, ["send", "--days", "7", "--yes", "--limit", "2"])
    assert first.exit_code == 0, first.output
    assert "sent 2" in first.output and "3 messages remain" in first.output
    second = runner.invoke(cli, ["send", "--days", "7", "--yes"])
    assert "was stored before: resuming it" in second.output
    assert "sent 3" in second.output and "fully sent" in second.output
    outbox = list((settings.outbox_dir / "new").iterdir())
    assert sorted(parsed(p.read_bytes())["To"] for p in outbox) == [
        f"d{n}@example.com" for n in range(5)]


def test_overlapping_window_is_refused_unless_allowed(settings: Settings,
                                                      week: Any) -> None:  # noqa: F811
    add(settings, ("a@example.com", "", ""))
    runner = CliRunner()
    assert runner.invoke(cli, ["send", "--week", "2025-W51", "--yes"]).exit_code == 0
    overlap = runner.invoke(cli, ["send", "--since", "2025-12-18", "--days", "7", "--yes"])
    assert overlap.exit_code == 2
    assert "overlaps edition 1 (2025-12-15T00:00:00+08:00 .. 2025-12-22" in overlap.output
    assert "--allow-overlap" in overlap.output
    assert len(list((settings.outbox_dir / "new").iterdir())) == 1
    allowed = runner.invoke(cli, ["send", "--since", "2025-12-18", "--days", "7", "--yes",
                                  "--allow-overlap"])
    assert allowed.exit_code == 0 and "Edition 2" in allowed.output
    # the neighbouring week touches, it does not overlap (windows are half-open)
    after = runner.invoke(cli, ["send", "--week", "2025-W52", "--dry-run"])
    assert "overlaps" not in after.output, after.output


def test_changes_while_the_prompt_is_open_are_in_the_snapshot(
        settings: Settings, week: Any, smtp_server: Any) -> None:  # noqa: F811
    handler, port = smtp_server
    settings = smtp_settings(settings, port)
    add(settings, ("all@example.com", "", ""), ("mover@example.com", "", ""))
    with Store(settings.store_location) as store:
        plan = plan_edition(store, settings, week, Renderer(settings))
        assert [v.key for v in plan.variants] == ["all"]
        # meanwhile (the y/N prompt is open): a new subscriber, a category change
        subs = Subscribers(store, settings)
        subs.add("late@example.com", categories="robots")
        subs.set("mover@example.com", categories="apps")
        snapshot = store_snapshot(store, plan)
    assert snapshot.variants == {"all": 1, "apps": 1, "robots": 1}
    report = deliver(settings, week)
    assert (report.sent, report.skipped, report.deferred) == (3, 0, 0)
    got = {rcpt: parsed(raw) for rcpt, raw in handler.messages}
    assert set(got) == {"all@example.com", "mover@example.com", "late@example.com"}
    late = got["late@example.com"].get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "news.example/robot/" in late and "news.example/model/" not in late
    mover = got["mover@example.com"].get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "news.example/app/" in mover and "news.example/robot/" not in mover
