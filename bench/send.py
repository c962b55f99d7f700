"""Send an edition to N subscribers into Postfix's smtp-sink, beside two references.

In one script, into the same sink, with the same message count, size and connections,
interleaved over several rounds (A B A B), medians and ranges:
  ours         the library's send path (snapshot, personalization, limiter, claims, journal)
  ours, 2 workers   the same edition shared by two worker processes (`send --workers 2`)
  bare         a bare aiosmtplib loop over the same connections sending one pre-built message
  smtp-source  Postfix's own load generator (`smtp-source -d`)
Ours is timed for the send phase and end to end (the snapshot included), with the delay
of its first message. Then our send with DKIM signing (RSA-2048, Ed25519) against the same
send without, interleaved over --dkim-rounds rounds: medians, ranges and the ratios.

--large N (its own flag: the import alone takes a minute at 1,000,000) adds runs at
20,000 and at N subscribers, alternating over --large-rounds: the first message's delay
and the peak memory (max RSS of the sending process) at N against 20,000; each sends
--large-send messages and leaves the rest pending.

    python bench/send.py [--count 20000] [--rounds 3] [--connections 10] [--dkim-rounds 3]
                         [--large 1000000] [--large-rounds 1] [--large-send 20000]

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
sys.path.insert(0, str(HERE.parent.parent))  # the project, not an installed copy


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


def sink_cpu(pid: int) -> float:
    """CPU seconds smtp-sink has used so far (it shares the machine's cores with us)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_child(args: list[str]) -> dict[str, float]:
    """Run a measured phase in a child process; it prints its own JSON measurements."""
    done = subprocess.run([sys.executable, str(HERE), "--child", *args], capture_output=True,
                          text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def cpu_now() -> float:
    """CPU seconds of this process and its finished children (the workers)."""
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- children

def make_site(folder: Path, port: int, count: int, connections: int, dkim: str = "",
              store: str = "") -> None:
    """The bench site: one digest of 7 stories, `count` readers, SMTP to the sink; the
    store at `store` (a PostgreSQL URL) or in the site's SQLite file."""
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
[store]
{f'url = "{store}"' if store else 'path = "subscribers/newsletter.db"'}
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


def child_ours(folder: str, workers: str = "1", limit: str = "0") -> None:
    """Import (not timed), then the timed snapshot and send: the send phase alone, end to
    end, and when the first message was accepted."""
    os.chdir(folder)
    os.environ["NEWSLETTER_SECRET_KEY"] = "bench-secret"
    from newsletter.config import load_settings
    from newsletter.message import MessageFactory, Recipient
    from newsletter.send import store_snapshot
    from newsletter.send_job import SendJob
    from newsletter.send_report import SendReport, Settled
    from newsletter.send_workers import deliver, run_workers
    from newsletter.window import resolve_window

    settings = load_settings("newsletter.toml")
    # the import runs in its own process, as `subscribers import` does: this one's peak
    # memory is the send's
    subprocess.run([sys.executable, str(HERE), "--child", "import", folder], check=True,
                   timeout=3600)
    window = resolve_window(tz=settings.timezone, week="2025-W51")
    with SendJob(settings, window, limit=int(limit) or None) as job:
        assert job.plan is not None
        factory = MessageFactory(settings, job.plan.variants[0], job.renderer, job.tokens)
        size = len(factory.build(Recipient("reader12345@example.net", "Reader 12345", 12345)))
        first: list[float] = []

        def note(event: object, report: SendReport) -> None:
            if not first and isinstance(event, Settled):
                first.append(time.perf_counter())

        cpu = cpu_now()
        started = time.perf_counter()
        snapshot = store_snapshot(job.store, job.plan)
        stored = time.perf_counter()
        if int(workers) > 1:
            report = run_workers(settings, snapshot.edition_id, job.options, int(workers),
                                 tokens=job.tokens)
        else:
            report = asyncio.run(deliver(settings, snapshot.edition_id, job.options,
                                         tokens=job.tokens, renderer=job.renderer,
                                         store=job.store, started=time.time(),
                                         observer=note))
        ended = time.perf_counter()
    print(json.dumps({"seconds": ended - stored, "end_to_end": ended - started,
                      "snapshot": stored - started,
                      "first": (first[0] - started) if first else -1.0,
                      "cpu": cpu_now() - cpu, "sent": report.sent,
                      "failed": report.failed + report.deferred, "peak_mb": peak_mb(),
                      "message_bytes": size}))


def child_import(folder: str) -> None:
    os.chdir(folder)
    from newsletter.config import load_settings
    from newsletter.store import Store
    from newsletter.subscribers import import_csv

    settings = load_settings("newsletter.toml")
    with Store(settings.store_location) as store:
        import_csv(store, settings, Path("people.csv"))


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

def measure_ours(port: int, count: int, connections: int, workers: int = 1,
                 limit: int = 0, dkim: str = "") -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        make_site(Path(tmp), port, count, connections, dkim)
        result = run_child(["ours", tmp, str(workers), str(limit)])
    if result["sent"] != (limit or count):
        raise SystemExit(f"ours sent {result['sent']} of {limit or count}")
    return result


def spread(values: list[float], fmt: str = ",.0f") -> str:
    """The median and the range of a few runs."""
    return (f"{statistics.median(values):{fmt}} ({min(values):{fmt}}–{max(values):{fmt}})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--large", type=int, default=0,
                        help="subscribers for the first-message and memory figures (0: skip)")
    parser.add_argument("--large-rounds", type=int, default=1)
    parser.add_argument("--large-send", type=int, default=20_000,
                        help="messages actually sent at --large (the rest stay pending)")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dkim-rounds", type=int, default=3)
    parser.add_argument("--child", nargs="+")
    args = parser.parse_args()
    if args.rounds < 3:
        parser.error("--rounds: at least 3 (medians and ranges need them)")
    if args.child:
        children = {"ours": child_ours, "bare": child_bare, "import": child_import}
        children[args.child[0]](*args.child[1:])
        return
    for tool in ("smtp-sink", "smtp-source"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install postfix")
    n, k = args.count, args.connections
    load = os.getloadavg()[0]  # the machine is shared: say how busy it was
    port = free_port()
    sink = start_sink(port)
    runs: dict[str, list[dict[str, float]]] = {"ours": [], "ours, 2 workers": [],
                                               "bare aiosmtplib": [], "smtp-source": []}
    try:
        size = int(measure_ours(port, 200, k)["message_bytes"])  # warm-up; the size
        for _ in range(args.rounds):  # A B A B: the machine's drift hits every side alike
            for name, run in (
                    ("ours", lambda: measure_ours(port, n, k)),
                    ("bare aiosmtplib", lambda: run_child(["bare", str(port), str(n), str(k),
                                                           str(size)])),
                    ("ours, 2 workers", lambda: measure_ours(port, n, k, workers=2)),
                    ("smtp-source", lambda: run_smtp_source(port, n, k, size))):
                before = sink_cpu(sink.pid)
                runs[name].append(run())
                runs[name][-1]["sink"] = sink_cpu(sink.pid) - before
        small: list[dict[str, float]] = []
        large: list[dict[str, float]] = []
        for _ in range(args.large_rounds if args.large else 0):  # 20,000 N 20,000 N ...
            small.append(measure_ours(port, 20_000, k, limit=min(args.large_send, 20_000)))
            large.append(measure_ours(port, args.large, k,
                                      limit=min(args.large_send, args.large)))
        signed: dict[str, list[float]] = {"none": [], "rsa": [], "ed25519": []}
        sender_cpu: dict[str, list[float]] = {kind: [] for kind in signed}
        for _ in range(args.dkim_rounds):  # interleaved: none rsa ed25519, none rsa ...
            for kind in signed:
                result = measure_ours(port, n, k, dkim="" if kind == "none" else kind)
                signed[kind].append(n / result["seconds"])
                sender_cpu[kind].append(result["cpu"] / n * 1000)
    finally:
        sink.terminate()
        sink.wait(timeout=10)
    rates = {name: [n / r["seconds"] for r in rs] for name, rs in runs.items()}
    print(f"{n:,} messages of {size:,} bytes over {k} connections into smtp-sink, "
          f"{args.rounds} rounds interleaved; median (range); load average {load:.2f} at "
          f"the start, {os.getloadavg()[0]:.2f} at the end ({os.cpu_count()} cores)")
    for name, values in rates.items():
        cpu = [r["cpu"] / n * 1000 for r in runs[name]]
        sink = [r["sink"] / n * 1000 for r in runs[name]]
        cores = [(r["cpu"] + r["sink"]) / r["seconds"] for r in runs[name]]
        print(f"  {name:16} {spread(values)} msg/s   {spread(cpu, '.2f')} CPU s per 1,000"
              f" (smtp-sink {spread(sink, '.2f')}); cores used {spread(cores, '.2f')}")
    ends = [n / r["end_to_end"] for r in runs["ours"]]
    print(f"  ours end to end (snapshot included): {spread(ends)} msg/s; snapshot "
          f"{spread([r['snapshot'] for r in runs['ours']], '.2f')} s")

    def ratio(a: str, b: str) -> str:
        return spread([x / y for x, y in zip(rates[a], rates[b], strict=True)], ".2f")

    print(f"ratio ours / bare aiosmtplib (send phase): {ratio('ours', 'bare aiosmtplib')}"
          " (target >= 0.8)")
    print("ratio ours / bare aiosmtplib (end to end): " + spread(
        [e / b for e, b in zip(ends, rates["bare aiosmtplib"], strict=True)], ".2f"))
    print(f"ratio ours / smtp-source:                  {ratio('ours', 'smtp-source')}")
    print(f"ratio 2 workers / 1 worker:                {ratio('ours, 2 workers', 'ours')}"
          " (target >= 1.4; it needs two free cores: see cores used)")
    print(f"first message (ours, snapshot included): "
          f"{spread([r['first'] for r in runs['ours']], '.2f')} s at {n:,} subscribers")
    if large:
        def column(results: list[dict[str, float]], key: str, fmt: str = ".2f") -> str:
            return spread([r[key] for r in results], fmt)

        rss = [b["peak_mb"] / a["peak_mb"] for a, b in zip(small, large, strict=True)]
        print(f"{args.large:,} against 20,000 subscribers, {args.large_rounds} rounds "
              f"alternating, {args.large_send:,} messages sent in each:")
        print(f"  first message: {column(large, 'first')} s at {args.large:,} (target < 3 s "
              f"at 1M; snapshot {column(large, 'snapshot')} s), {column(small, 'first')} s "
              "at 20,000")
        print(f"  peak RSS: {column(large, 'peak_mb', '.0f')} MB at {args.large:,}, "
              f"{column(small, 'peak_mb', '.0f')} MB at 20,000; ratio {spread(rss, '.2f')} "
              "(target <= 1.25)")
        print("  send rate: " + spread([r["sent"] / r["seconds"] for r in large]) +
              f" msg/s at {args.large:,}, " +
              spread([r["sent"] / r["seconds"] for r in small]) + " msg/s at 20,000")
    if args.dkim_rounds:
        print(f"DKIM signing, {args.dkim_rounds} interleaved rounds of {n:,} messages "
              "(median msg/s, range):")
        base = statistics.median(signed["none"])
        for kind, label in (("none", "no signature"), ("rsa", "RSA-2048"),
                            ("ed25519", "Ed25519")):
            values = signed[kind]
            median = statistics.median(values)
            cpu = statistics.median(sender_cpu[kind])
            print(f"  {label:13} {median:8,.0f} msg/s  ({min(values):,.0f}-{max(values):,.0f})"
                  f"  ratio {median / base:.2f}" + ("  (target >= 0.7)" if kind == "rsa"
                                                   else "")
                  + f"; sender CPU {cpu:.2f} ms/msg (ended helpers counted)")


if __name__ == "__main__":
    main()
