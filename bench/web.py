"""Requests per second and latency (p50, p99) for GET and POST of the preferences page
under concurrency (loopback, bounded).

Runs `newsletter serve` as a child process on a free loopback port and sends a fixed number
of requests with `ab` (Debian's apache2-utils) over a few keep-alive connections, in rounds
that interleave the reference and the pages (A B C A B C); prints medians and ranges over
the rounds. The reference, on the same server in the same run, is a 404 for an unknown
path: the ceiling of this client and server with no page, no token and no database.

    python bench/web.py [REQUESTS] [ROUNDS]
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
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


def hammer(url: str, count: int, headers: dict[str, str], ok: int,
           form: dict[str, object] | None = None) -> Run:
    """`ab` (apache2-utils), CONCURRENCY connections (keep-alive asked; uvicorn closes
    HTTP/1.0 ones): a C client that is not
    the bottleneck (a Python client tops out near the pages' own rate)."""
    command = ["ab", "-q", "-k", "-n", str(count), "-c", str(CONCURRENCY)]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    with tempfile.NamedTemporaryFile("w", suffix=".form") as body:
        if form is not None:
            body.write(urllib.parse.urlencode(form, doseq=True))
            body.flush()
            command += ["-p", body.name, "-T", "application/x-www-form-urlencoded"]
        done = subprocess.run([*command, url], capture_output=True, text=True, timeout=600,
                              check=True)
    out = done.stdout
    bad = re.search(r"Non-2xx responses:\s+(\d+)", out)
    # a page's length varies with its tokens: ab's "Length" failures are not failures
    broken = re.search(r"\(Connect: (\d+), Receive: (\d+), Length: \d+, Exceptions: (\d+)\)",
                       out)
    failed = sum(int(n) for n in broken.groups()) if broken else 0
    non_ok = int(bad.group(1)) if bad else 0
    assert (non_ok == count if ok >= 300 else non_ok == 0) and failed == 0, out
    rate = float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = float(re.search(r"\n\s+50%\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    p99 = float(re.search(r"\n\s+99%\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    return Run(rate, p50, p99)


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
            for n in range(rounds):  # interleaved: A B C A B C
                results["reference"].append(hammer(f"{base}/nowhere", count, origin, 404))
                results["get"].append(hammer(page, count, origin, 200))
                results["post"].append(hammer(page, count, origin, 200,
                                              {**form, "categories": choices[n % 3]}))
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(f"{count:,} requests each over {CONCURRENCY} connections (ab), "
          f"loopback, {rounds} interleaved rounds: median [range]; p50/p99 in whole ms (ab)")
    print(summary("reference 404", results["reference"], None) +
          "   (the ceiling of this client and server: no page, token or database)")
    print(summary("GET  preferences", results["get"], results["reference"]))
    print(summary("POST preferences", results["post"], results["reference"]))


if __name__ == "__main__":
    main()
