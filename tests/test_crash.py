"""Kill a real `newsletter send` with SIGKILL mid-send, several times, and resume it."""

import collections
import email
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from newsletter.config import Settings
from tests.pg import both_backends  # noqa: F401 (every test on both stores)

SUBSCRIBERS = 2000
CONCURRENCY = 4
KILLS = 4


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_and_resume_sends_each_message_once(settings: Settings, site: Path,
                                                    write_post: Any, smtp_server: Any,
                                                    workers: int) -> None:
    handler, port = smtp_server
    write_post("d.md", "---\ndate: 2025-12-16T10:00:00+08:00\n---\n"
               "1. [A model story - Lab](https://news.example/1)\n\n   Text.\n")
    config = site / "newsletter.toml"
    config.write_text(config.read_text() + f'\n[smtp]\nhost = "127.0.0.1"\nport = {port}\n'
                      'tls = "none"\ntimeout = 5\n', encoding="utf-8")
    csv = site / "people.csv"
    csv.write_text("email,name\n" + "".join(f"r{n}@example.com,R {n}\n"
                                             for n in range(SUBSCRIBERS)), encoding="utf-8")
    command = [sys.executable, "-m", "newsletter", "send", "--week", "2025-W51", "--yes",
               "--concurrency", str(CONCURRENCY), "--workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    subprocess.run([sys.executable, "-m", "newsletter", "subscribers", "import", str(csv)],
                   cwd=site, env=env, check=True, capture_output=True, timeout=120)
    rng = random.Random(20251221)
    kills = 0
    for _ in range(KILLS):
        before = len(handler.messages)
        target = before + rng.randint(50, 350)
        child = subprocess.Popen(command, cwd=site, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while len(handler.messages) < target and child.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.002)
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)  # the whole machine goes: every worker
            kills += 1
        child.wait(timeout=30)
    final = subprocess.run(command, cwd=site, env=env, capture_output=True, text=True,
                           timeout=300)
    assert final.returncode == 0, final.stdout + final.stderr
    assert "fully sent" in final.stdout

    per_recipient = collections.Counter(rcpt for rcpt, _ in handler.messages)
    assert set(per_recipient) == {f"r{n}@example.com" for n in range(SUBSCRIBERS)}
    duplicates = {r: c for r, c in per_recipient.items() if c > 1}
    ids = collections.Counter(email.message_from_bytes(raw)["Message-ID"]
                              for _, raw in handler.messages)
    assert len(ids) == SUBSCRIBERS  # one Message-ID per delivery row, stable across runs
    print(f"\n{kills} kills, {len(handler.messages)} messages received, "
          f"duplicates: {sum(c - 1 for c in duplicates.values())} {sorted(duplicates)[:8]}")
    # a duplicate can only be a message in flight at a kill: at most one per connection
    assert sum(c - 1 for c in duplicates.values()) <= kills * CONCURRENCY * workers
    assert kills >= 3


def test_sigint_finishes_in_flight_records_them_and_says_how_to_resume(
        settings: Settings, site: Path, write_post: Any, smtp_server: Any) -> None:
    handler, port = smtp_server
    handler.delay = 0.02
    write_post("d.md", "---\ndate: 2025-12-16T10:00:00+08:00\n---\n"
               "1. [A story - Lab](https://news.example/1)\n\n   Text.\n")
    config = site / "newsletter.toml"
    config.write_text(config.read_text() + f'\n[smtp]\nhost = "127.0.0.1"\nport = {port}\n'
                      'tls = "none"\n', encoding="utf-8")
    (site / "people.csv").write_text("email\n" + "".join(f"s{n}@example.com\n"
                                                         for n in range(300)))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    command = [sys.executable, "-m", "newsletter"]
    subprocess.run([*command, "subscribers", "import", "people.csv"], cwd=site, env=env,
                   check=True, capture_output=True, timeout=120)
    send = [*command, "send", "--week", "2025-W51", "--yes", "--concurrency", "2"]
    child = subprocess.Popen(send, cwd=site, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(handler.messages) < 20 and time.monotonic() < deadline:
        time.sleep(0.005)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 1, out + err
    assert "Interrupted: every result so far is recorded" in out
    assert "newsletter send --since 2025-12-15T00:00:00+08:00" in out
    from newsletter.config import load_settings
    from newsletter.store import Store

    with Store(load_settings(config).store_location) as store:
        sent = store.db.execute("SELECT COUNT(*) FROM deliveries WHERE status = 'sent'")
        assert sent.fetchone()[0] == len(handler.messages) < 300  # nothing in flight lost
    done = subprocess.run(send, cwd=site, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    received = [rcpt for rcpt, _ in handler.messages]
    assert len(received) == len(set(received)) == 300
