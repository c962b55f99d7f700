"""Several senders on one edition: claims keep every subscriber at exactly one message."""

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from newsletter.config import Settings, load_settings
from newsletter.render import Renderer
from newsletter.send import Sender, SendOptions, plan_edition, store_snapshot
from newsletter.store import Store
from newsletter.tokens import Tokens
from newsletter.transport import make_transport
from tests.pg import both_backends  # noqa: F401 (every test on both stores)

REPO = Path(__file__).resolve().parent.parent


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}  # with the site fixture's secret key


SEND = [sys.executable, "-m", "newsletter", "send", "--week", "2025-W51", "--yes"]


def prepare(site: Path, write_post: Any, port: int, count: int, send: str = "") -> list[str]:
    write_post("d.md", "---\ndate: 2025-12-16T10:00:00+08:00\n---\n"
               "1. [A model story - Lab](https://news.example/1)\n\n   Text.\n")
    config = site / "newsletter.toml"
    config.write_text(config.read_text().replace("[send]\n", f"[send]\n{send}\n") +
                      f'\n[smtp]\nhost = "127.0.0.1"\nport = {port}\ntls = "none"\n'
                      'timeout = 5\n', encoding="utf-8")
    people = [f"p{n}@example.com" for n in range(count)]
    (site / "people.csv").write_text("email\n" + "\n".join(people) + "\n", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "newsletter", "subscribers", "import", "people.csv"],
                   cwd=site, env=env(), check=True, capture_output=True, timeout=120)
    return people


def once_each(handler: Any, people: list[str]) -> None:
    received = collections.Counter(rcpt for rcpt, _ in handler.messages)
    twice = {r: c for r, c in received.items() if c > 1}
    assert not twice, f"{len(twice)} duplicates, e.g. {sorted(twice)[:5]}"
    assert set(received) == set(people)


def test_two_send_processes_started_together_send_each_message_once(
        site: Path, write_post: Any, smtp_server: Any) -> None:
    handler, port = smtp_server
    handler.delay = 0.004  # long enough that a process starting late still finds work
    people = prepare(site, write_post, port, 3000)
    runs = [subprocess.Popen(SEND, cwd=site, env=env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, (out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, out + err
        assert "fully sent" in out
    once_each(handler, people)
    sent = [int(out.split("sent ", 1)[1].split(",")[0]) for out, _ in outputs]
    assert sum(sent) == 3000 and min(sent) > 0, sent  # both did a share


def test_workers_share_the_edition_and_report_together(
        site: Path, write_post: Any, smtp_server: Any) -> None:
    handler, port = smtp_server
    people = prepare(site, write_post, port, 3000)
    done = subprocess.run([*SEND, "--workers", "2"], cwd=site, env=env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "by 2 worker processes" in done.stdout
    assert "sent 3000, deferred 0, failed 0" in done.stdout
    assert "fully sent" in done.stdout
    once_each(handler, people)
    with Store(load_settings(site / "newsletter.toml").store_location) as store:
        assert store.claimants(1) == {}  # nothing left claimed


def test_a_joined_sender_takes_a_share_of_a_running_edition(
        site: Path, write_post: Any, smtp_server: Any) -> None:
    handler, port = smtp_server
    handler.delay = 0.002
    people = prepare(site, write_post, port, 2000)
    first = subprocess.Popen([*SEND, "--concurrency", "2"], cwd=site, env=env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(handler.messages) < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    joined = subprocess.run([*SEND, "--join"], cwd=site, env=env(), capture_output=True,
                            text=True, timeout=300)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, out + err
    assert joined.returncode == 0, joined.stdout + joined.stderr
    assert "resuming it" in joined.stdout
    assert "sent 0," not in joined.stdout  # it did send a share
    once_each(handler, people)


def test_join_without_a_stored_edition_is_a_clear_error(
        site: Path, write_post: Any, smtp_server: Any) -> None:
    _, port = smtp_server
    prepare(site, write_post, port, 3)
    joined = subprocess.run([*SEND, "--join"], cwd=site, env=env(), capture_output=True,
                            text=True, timeout=120)
    assert joined.returncode != 0
    assert "no edition of" in joined.stderr and "to join" in joined.stderr
    assert "Traceback" not in joined.stderr


def worker_pids(parent: int) -> list[int]:
    """The forked workers: children with the parent's command line (not a helper)."""
    command = Path(f"/proc/{parent}/cmdline").read_bytes()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                same = (entry / "cmdline").read_bytes() == command
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent and same:
                found.append(int(entry.name))
    return found


def two_workers_sending(site: Path, handler: Any, messages: int) -> subprocess.Popen[str]:
    """`send --workers 2`, once the server has received `messages` (at most a minute)."""
    run = subprocess.Popen([*SEND, "--workers", "2", "--concurrency", "2"], cwd=site,
                           env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(handler.messages) < messages and time.monotonic() < deadline:
        time.sleep(0.01)
    return run


def test_a_killed_workers_claims_are_taken_over(
        site: Path, write_post: Any, smtp_server: Any) -> None:
    handler, port = smtp_server
    handler.delay = 0.001
    people = prepare(site, write_post, port, 2000)
    run = two_workers_sending(site, handler, 300)
    workers = worker_pids(run.pid)
    assert len(workers) == 2, workers
    os.kill(workers[0], signal.SIGKILL)
    out, err = run.communicate(timeout=300)
    assert run.returncode == 1, out + err  # a worker was lost: said, and not exit 0
    assert "1 worker processes ended without a report" in out
    assert "remain" not in out  # the other worker finished the edition
    with Store(load_settings(site / "newsletter.toml").store_location) as store:
        assert store.delivery_counts(1)["sent"] == 2000
    received = collections.Counter(rcpt for rcpt, _ in handler.messages)
    assert set(received) == set(people)
    # only a message in flight at the kill can go twice: at most one per connection
    assert sum(c - 1 for c in received.values()) <= 2


def test_claims_of_a_silent_sender_elsewhere_are_taken_over_after_the_timeout(
        settings: Settings, site: Path, write_post: Any, smtp_server: Any) -> None:
    handler, port = smtp_server
    people = prepare(site, write_post, port, 50, send="claim_timeout = 1.0")
    settings = load_settings(site / "newsletter.toml")
    renderer = Renderer(settings)
    with Store(settings.store_location) as store:
        snapshot = store_snapshot(store, plan_edition(store, settings,
                                                      _week(settings), renderer))
        # a sender on another host claimed 20 rows, then its host went quiet
        stuck = store.claim(snapshot.edition_id, "elsewhere:1:abcdef", after=0, batch=20,
                            now=time.time(), stale_before=0, started=time.time())
        assert len(stuck) == 20

        async def go() -> Any:
            sender = Sender(store, settings, snapshot.edition_id, make_transport(settings),
                            SendOptions.from_settings(settings), renderer=renderer,
                            tokens=Tokens("test-secret-key"))
            return await sender.run()

        started = time.monotonic()
        report = asyncio.run(go())
        waited = time.monotonic() - started
    assert report.sent == 50
    assert 0.9 <= waited < 15  # it waited for the claims to go stale, then took them
    once_each(handler, people)


def _week(settings: Settings) -> Any:
    from newsletter.window import resolve_window

    return resolve_window(tz=settings.timezone, week="2025-W51")


def test_sigterm_stops_every_worker_and_a_resume_finishes_once(
        site: Path, write_post: Any, smtp_server: Any) -> None:
    handler, port = smtp_server
    handler.delay = 0.002
    people = prepare(site, write_post, port, 1500)
    run = two_workers_sending(site, handler, 200)
    run.send_signal(signal.SIGTERM)  # to the parent only: it stops its workers
    out, err = run.communicate(timeout=120)
    assert run.returncode == 1, out + err
    assert "Interrupted: every result so far is recorded" in out
    assert "ended without a report" not in out  # both workers stopped cleanly
    assert len(handler.messages) < 1500
    with Store(load_settings(site / "newsletter.toml").store_location) as store:
        assert store.claimants(1) == {}  # every unsent claim given back
        assert store.delivery_counts(1)["sent"] == len(handler.messages)
    done = subprocess.run([*SEND, "--workers", "2"], cwd=site, env=env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    once_each(handler, people)
