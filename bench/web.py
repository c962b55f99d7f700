"""Requests per second and latency (p50, p99) for GET and POST of the preferences page
under concurrency (loopback, bounded).

Runs `newsletter serve` as a child process on a free loopback port and sends a fixed number
of requests over a few concurrent connections, in rounds that interleave the reference and
the pages (A B C A B C); prints medians and ranges over the rounds. The reference, on the
same server in the same run, is a 404 for an unknown path: what the server and the client
cost with no page, no token and no database.

    python bench/web.py [REQUESTS] [ROUNDS]
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

CONCURRENCY = 8
CONFIG = """
[newsletter]
name = "Bench Weekly"
timezone = "UTC"
[web]
url = "http://127.0.0.1:{port}"
{allow_http}
[[categories]]
name = "models"
[[categories]]
name = "robots"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Run:
    rate: float  # requests per second
    p50: float  # milliseconds
    p99: float


async def hammer(requests: list[tuple[str, str, dict[str, object] | None]], ok: int,
                 headers: dict[str, str]) -> Run:
    async with httpx.AsyncClient(timeout=30, headers=headers) as client:
        queue = list(reversed(requests))
        statuses: list[int] = []
        latencies: list[float] = []

        async def worker() -> None:
            while queue:
                method, url, data = queue.pop()
                started = time.perf_counter()
                response = await client.request(method, url, data=data)  # type: ignore[arg-type]
                latencies.append(time.perf_counter() - started)
                statuses.append(response.status_code)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        seconds = time.perf_counter() - started
    bad = [s for s in statuses if s != ok]
    assert not bad, f"{len(bad)} answers other than {ok}: {sorted(set(bad))}"
    latencies.sort()
    return Run(len(requests) / seconds, latencies[len(latencies) // 2] * 1000,
               latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000)


def allow_http_key() -> str:
    """`allow_http` where the code under test knows it (so the bench also runs on older
    code for a before/after comparison)."""
    try:
        from newsletter.config import WebSettings  # noqa: F401
    except ImportError:
        return ""
    return "allow_http = true"


def summary(label: str, runs: list[Run], reference: list[Run] | None) -> str:
    def spread(values: list[float], fmt: str) -> str:
        return (f"{format(statistics.median(values), fmt)} "
                f"[{format(min(values), fmt)}–{format(max(values), fmt)}]")

    line = (f"  {label:<18} {spread([r.rate for r in runs], ',.0f')} req/s   "
            f"p50 {spread([r.p50 for r in runs], '.1f')} ms   "
            f"p99 {spread([r.p99 for r in runs], '.1f')} ms")
    if reference:
        ratio = statistics.median(r.rate / ref.rate for r, ref in zip(runs, reference, strict=True))
        line += f"   ({ratio:.2f} of the reference)"
    return line


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    port = free_port()
    secret = "bench-secret"
    results: dict[str, list[Run]] = {"reference": [], "get": [], "post": []}
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp)
        (site / "newsletter.toml").write_text(
            CONFIG.format(port=port, allow_http=allow_http_key()), encoding="utf-8")
        env = {**os.environ, "NEWSLETTER_SECRET_KEY": secret}
        subprocess.run([sys.executable, "-m", "newsletter", "subscribers", "add",
                        "reader@example.net"], cwd=site, env=env, check=True,
                       capture_output=True)
        server = subprocess.Popen([sys.executable, "-m", "newsletter", "serve", "--port",
                                   str(port)], cwd=site, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(200):  # bounded wait for the server
                try:
                    httpx.get(f"{base}/subscribe", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            from newsletter.tokens import FORM, PREFERENCES, Tokens

            tokens = Tokens(secret)
            page = f"{base}/preferences/{tokens.make(PREFERENCES, 1)}"
            form = {"form_token": tokens.make(FORM, 1), "name": "Reader"}
            choices = [["models"], ["robots"], ["models", "robots"]]
            origin = {"origin": base}  # a form post from our own page
            for _ in range(rounds):  # interleaved: A B C A B C
                results["reference"].append(asyncio.run(hammer(
                    [("GET", f"{base}/nowhere", None)] * count, 404, origin)))
                results["get"].append(asyncio.run(hammer([("GET", page, None)] * count, 200,
                                                         origin)))
                results["post"].append(asyncio.run(hammer(
                    [("POST", page, {**form, "categories": choices[n % 3]})
                     for n in range(count)], 200, origin)))
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(f"{count:,} requests each over {CONCURRENCY} connections, loopback, {rounds} "
          "interleaved rounds: median [range]")
    print(summary("reference 404", results["reference"], None))
    print(summary("GET  preferences", results["get"], results["reference"]))
    print(summary("POST preferences", results["post"], results["reference"]))


if __name__ == "__main__":
    main()
