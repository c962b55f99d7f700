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

from newsletter.config import Settings

SUBSCRIBERS = 2000
CONCURRENCY = 4
KILLS = 4


def test_sigkill_and_resume_sends_each_message_once(settings: Settings, site: Path,
                                                    write_post: Any, smtp_server: Any) -> None:
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
               "--concurrency", str(CONCURRENCY)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    subprocess.run([sys.executable, "-m", "newsletter", "subscribers", "import", str(csv)],
                   cwd=site, env=env, check=True, capture_output=True, timeout=120)
    rng = random.Random(20251221)
    kills = 0
    for _ in range(KILLS):
        before = len(handler.messages)
        target = before + rng.randint(50, 350)
        child = subprocess.Popen(command, cwd=site, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while len(handler.messages) < target and child.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.002)
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
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
    assert sum(c - 1 for c in duplicates.values()) <= kills * CONCURRENCY
    assert kills >= 3
