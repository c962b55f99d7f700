"""200 concurrent preference updates while a real send runs against the same store."""

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from newsletter.config import load_settings
from newsletter.store import Store
from newsletter.tokens import FORM, PREFERENCES
from tests.conftest import REPO
from tests.pg import both_backends  # noqa: F401 (every test on both stores)
from tests.test_web import TOKENS

SUBSCRIBERS = 4000
UPDATES = 200
CHOICES = [["models"], ["robots"], ["apps"], ["models", "robots"]]


def preference_burst(bases: list[str], ids: list[int], choices: list[list[str]],
                     name: str) -> list[int]:
    """Every subscriber of `ids` saves the preference form at once (subscriber n names
    itself `{name}{n}` and picks choices[n % len]), spread round robin over the servers
    at `bases` as a load balancer would; the status codes, in order."""

    async def update(client: httpx.AsyncClient, n: int, sid: int) -> int:
        base = bases[n % len(bases)]
        response = await client.post(
            f"{base}/preferences/{TOKENS.make(PREFERENCES, sid)}",
            data={"form_token": TOKENS.make(FORM, sid), "name": f"{name}{n}",
                  "categories": choices[n % len(choices)]}, headers={"origin": base})
        return response.status_code

    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=len(ids))
        async with httpx.AsyncClient(limits=limits, timeout=120) as client:
            return await asyncio.gather(*(update(client, n, sid) for n, sid in enumerate(ids)))

    return asyncio.run(burst())


def test_concurrent_updates_during_a_send(web_site: Any, web_server: str,
                                          write_post: Any) -> None:
    site, _ = web_site
    write_post("d.md", "---\ndate: 2025-12-16\n---\n1. [model 机器人 App - S](https://a.example/1)"
               "\n\n   Text.\n")
    csv = site / "people.csv"
    csv.write_text("email\n" + "".join(f"p{n}@example.com\n" for n in range(SUBSCRIBERS)))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "newsletter"]
    subprocess.run([*command, "subscribers", "import", str(csv)], cwd=site, env=env,
                   check=True, capture_output=True, timeout=120)
    settings = load_settings(site / "newsletter.toml")
    with Store(settings.store_location) as store:
        ids = [s.id for s in store.subscribers()][-UPDATES:]  # the last ones are sent last

    sender = subprocess.Popen([*command, "send", "--week", "2025-W51", "--yes"], cwd=site,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    outbox = Path(site / "outbox" / "new")
    deadline = time.monotonic() + 60
    while (not outbox.exists() or not any(outbox.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sender.poll() is None, "the send finished before the updates started"

    codes = preference_burst([web_server], ids, CHOICES, "N")
    running_after = sender.poll() is None
    out, err = sender.communicate(timeout=300)
    assert codes == [200] * UPDATES
    assert sender.returncode == 0, out.decode() + err.decode()
    assert "locked" not in err.decode()
    with Store(settings.store_location) as store:
        for n, sid in enumerate(ids):
            found = store.subscriber_by_id(sid)
            assert found is not None and found.name == f"N{n}"
            expected = tuple(sorted(CHOICES[n % len(CHOICES)]))
            assert found.categories == expected, (sid, found.categories)
        sent = store.db.execute("SELECT COUNT(*) FROM deliveries WHERE status = 'sent'")
        assert sent.fetchone()[0] == SUBSCRIBERS
    print(f"\nsend still running after the burst: {running_after}")
