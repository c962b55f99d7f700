"""Send an edition to N subscribers into Postfix's smtp-sink, beside two references.

In one script, into the same sink, with the same message count, size and connections:
  ours       `newsletter send` (snapshot, personalization, rate limiter, journal)
  bare       a bare aiosmtplib loop over N connections sending one pre-built message
  smtp-source Postfix's own load generator (`smtp-source -d`)
Prints the three rates, our ratio to each, CPU seconds per 1,000 messages, and our peak
memory (max RSS) at 20,000 and 100,000 subscribers. Then our send with DKIM signing
(RSA-2048, Ed25519) against the same send without, interleaved over --dkim-rounds rounds:
medians, ranges and the ratios.

    python bench/send.py [--count 20000] [--large 100000] [--connections 10] [--dkim-rounds 3]

Needs Postfix's smtp-sink and smtp-source (`apt-get install postfix`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def free_port() -> int:
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        with socket.socket() as probe:  # smtp-sink does not refuse a busy port: check
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise SystemExit("no free loopback port")


def start_sink(port: int) -> subprocess.Popen[bytes]:
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    sink = subprocess.Popen(["smtp-sink", *user, f"127.0.0.1:{port}", "1024"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return sink
        time.sleep(0.05)
    sink.kill()
    raise SystemExit("smtp-sink did not start")


def run_child(args: list[str]) -> dict[str, float]:
    """Run a measured phase in a child process; it prints its own JSON measurements."""
    done = subprocess.run([sys.executable, str(HERE), "--child", *args], capture_output=True,
                          text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- children

def make_site(folder: Path, port: int, count: int, connections: int, dkim: str = "") -> None:
    (folder / "content").mkdir(parents=True)
    signing = ""
    if dkim:
        from newsletter.dkim import generate_key

        (folder / "dkim.pem").write_bytes(generate_key(dkim)[0])
        signing = '[dkim]\ndomain = "example.com"\nselector = "bench"\nkey_file = "dkim.pem"\n'
    (folder / "newsletter.toml").write_text(signing + f"""
[newsletter]
name = "Bench Weekly"
from = "weekly@example.com"
base_url = "https://example.com"
timezone = "UTC"
[smtp]
host = "127.0.0.1"
port = {port}
tls = "none"
[send]
concurrency = {connections}
max_per_connection = 1000000
""", encoding="utf-8")
    items = "".join(f"{n}. [Story {n} about a model release - Source](https://news.example/{n})"
                    f"\n\n   {'A summary sentence of realistic length. ' * 9}\n\n"
                    for n in range(1, 8))
    (folder / "content" / "d.md").write_text(
        f"---\ntitle: Digest\ndate: 2025-12-16T10:00:00Z\n---\n{items}", encoding="utf-8")
    with (folder / "people.csv").open("w", encoding="utf-8") as out:
        out.write("email,name\n")
        for n in range(count):
            out.write(f"reader{n}@example.net,Reader {n}\n")


def child_ours(folder: str) -> None:
    """Import, snapshot (not timed), then the timed send."""
    os.chdir(folder)
    os.environ["NEWSLETTER_SECRET_KEY"] = "bench-secret"
    from newsletter.config import load_settings
    from newsletter.message import MessageFactory, Recipient
    from newsletter.send_job import SendJob
    from newsletter.store import Store
    from newsletter.subscribers import import_csv
    from newsletter.window import resolve_window

    settings = load_settings("newsletter.toml")
    with Store(settings.store_path) as store:
        import_csv(store, settings, Path("people.csv"))
    window = resolve_window(tz=settings.timezone, week="2025-W51")
    with SendJob(settings, window) as job:
        from newsletter.send import store_snapshot

        assert job.plan is not None
        job.snapshot = store_snapshot(job.store, job.plan)
        factory = MessageFactory(settings, job.plan.variants[0], job.renderer, job.tokens)
        size = len(factory.build(Recipient("reader12345@example.net", "Reader 12345", 12345)))
        started, cpu = time.perf_counter(), cpu_now()
        report = job.run()
        seconds, cpu = time.perf_counter() - started, cpu_now() - cpu
    print(json.dumps({"seconds": seconds, "cpu": cpu, "sent": report.sent,
                      "failed": report.failed + report.deferred, "peak_mb": peak_mb(),
                      "message_bytes": size}))


def child_bare(port: str, count: str, connections: str, size: str) -> None:
    import aiosmtplib

    head = "From: weekly@example.com\r\nTo: reader@example.net\r\nSubject: bench\r\n\r\n"
    lines, rest = divmod(int(size) - len(head), 78)
    message = (head + ("x" * 76 + "\r\n") * lines + "x" * rest).encode()

    async def worker(share: int) -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=int(port), start_tls=False)
        await client.connect()
        for n in range(share):
            await client.sendmail("weekly@example.com", [f"reader{n}@example.net"], message)
        await client.quit()

    async def main() -> None:
        n, k = int(count), int(connections)
        await asyncio.gather(*(worker(n // k + (i < n % k)) for i in range(k)))

    started, cpu = time.perf_counter(), cpu_now()
    asyncio.run(main())
    print(json.dumps({"seconds": time.perf_counter() - started, "cpu": cpu_now() - cpu,
                      "peak_mb": peak_mb()}))


def run_smtp_source(port: int, count: int, connections: int, size: int) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(["smtp-source", "-d", "-s", str(connections), "-m", str(count), "-l",
                    str(size), "-f", "weekly@example.com", "-t", "reader@example.net",
                    f"127.0.0.1:{port}"], check=True, timeout=3600)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"seconds": seconds, "cpu": cpu}


# ---------------------------------------------------------------- main

def measure_ours(port: int, count: int, connections: int, dkim: str = "") -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        make_site(Path(tmp), port, count, connections, dkim)
        result = run_child(["ours", tmp])
    if result["sent"] != count:
        raise SystemExit(f"ours sent {result['sent']} of {count}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--dkim-rounds", type=int, default=3)
    parser.add_argument("--child", nargs="+")
    args = parser.parse_args()
    if args.child:
        {"ours": child_ours, "bare": child_bare}[args.child[0]](*args.child[1:])
        return
    for tool in ("smtp-sink", "smtp-source"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install postfix")
    n, k = args.count, args.connections
    port = free_port()
    sink = start_sink(port)
    try:
        ours = measure_ours(port, n, k)
        size = int(ours["message_bytes"])
        bare = run_child(["bare", str(port), str(n), str(k), str(size)])
        source = run_smtp_source(port, n, k, size)
        large = measure_ours(port, args.large, k) if args.large else None
        signed: dict[str, list[float]] = {"none": [], "rsa": [], "ed25519": []}
        sender_cpu: dict[str, list[float]] = {kind: [] for kind in signed}
        for _ in range(args.dkim_rounds):  # interleaved: none rsa ed25519, none rsa ...
            for kind in signed:
                result = measure_ours(port, n, k, "" if kind == "none" else kind)
                signed[kind].append(n / result["seconds"])
                sender_cpu[kind].append(result["cpu"] / n * 1000)
    finally:
        sink.terminate()
        sink.wait(timeout=10)
    rate = {name: n / r["seconds"] for name, r in
            (("ours", ours), ("bare aiosmtplib", bare), ("smtp-source", source))}
    print(f"{n:,} messages of {size:,} bytes (ours, measured; the references send the same "
          f"size) over {k} connections into smtp-sink")
    for name, value in rate.items():
        cpu = {"ours": ours, "bare aiosmtplib": bare, "smtp-source": source}[name]["cpu"]
        print(f"  {name:16} {value:8,.0f} msg/s   {cpu / n * 1000:6.2f} CPU s per 1,000")
    print(f"ratio ours / bare aiosmtplib: {rate['ours'] / rate['bare aiosmtplib']:.2f} "
          "(target >= 0.8)")
    print(f"ratio ours / smtp-source:     {rate['ours'] / rate['smtp-source']:.2f}")
    print(f"peak memory, ours: {ours['peak_mb']:.0f} MB at {n:,} subscribers", end="")
    if large is not None:
        print(f", {large['peak_mb']:.0f} MB at {args.large:,} "
              f"(ratio {large['peak_mb'] / ours['peak_mb']:.2f}, target <= 1.25); "
              f"{args.large / large['seconds']:,.0f} msg/s")
    else:
        print()
    if args.dkim_rounds:
        print(f"DKIM signing, {args.dkim_rounds} interleaved rounds of {n:,} messages "
              "(median msg/s, range):")
        base = statistics.median(signed["none"])
        for kind, label in (("none", "no signature"), ("rsa", "RSA-2048"),
                            ("ed25519", "Ed25519")):
            rates = signed[kind]
            median = statistics.median(rates)
            cpu = statistics.median(sender_cpu[kind])
            print(f"  {label:13} {median:8,.0f} msg/s  ({min(rates):,.0f}-{max(rates):,.0f})"
                  f"  ratio {median / base:.2f}" + ("  (target >= 0.7)" if kind == "rsa"
                                                   else "")
                  + f"; sender CPU {cpu:.2f} ms/msg (the RSA helper process not included)")


if __name__ == "__main__":
    main()
