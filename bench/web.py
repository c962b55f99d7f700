"""Requests per second for GET and POST of the preferences page (loopback, bounded).

Runs `newsletter serve` as a child process on a free loopback port and sends a fixed number
of requests over a few concurrent connections. The reference, on the same server in the
same run, is a 404 for an unknown path: what the server and the client cost with no page,
no token and no database.

    python bench/web.py [REQUESTS]
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

CONCURRENCY = 8
CONFIG = """
[newsletter]
name = "Bench Weekly"
timezone = "UTC"
[web]
url = "http://127.0.0.1:{port}"
allow_http = true
[[categories]]
name = "models"
[[categories]]
name = "robots"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def hammer(requests: list[tuple[str, str, dict[str, object] | None]]) -> float:
    async with httpx.AsyncClient(timeout=30) as client:
        queue = list(reversed(requests))
        statuses: list[int] = []

        async def worker() -> None:
            while queue:
                method, url, data = queue.pop()
                response = await client.request(method, url, data=data)  # type: ignore[arg-type]
                statuses.append(response.status_code)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        seconds = time.perf_counter() - started
    bad = [s for s in statuses if s >= 500]
    assert not bad, f"{len(bad)} server errors"
    return len(requests) / seconds


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    port = free_port()
    secret = "bench-secret"
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp)
        (site / "newsletter.toml").write_text(CONFIG.format(port=port), encoding="utf-8")
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
            reference = asyncio.run(hammer([("GET", f"{base}/nowhere", None)] * count))
            get = asyncio.run(hammer([("GET", page, None)] * count))
            post = asyncio.run(hammer([("POST", page, {**form, "categories": choices[n % 3]})
                                       for n in range(count)]))
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(f"{count:,} requests each over {CONCURRENCY} connections, loopback")
    print(f"  reference 404       {reference:7,.0f} req/s")
    print(f"  GET  preferences    {get:7,.0f} req/s  ({get / reference:.2f} of the reference)")
    print(f"  POST preferences    {post:7,.0f} req/s  ({post / reference:.2f} of the reference)")


if __name__ == "__main__":
    main()
