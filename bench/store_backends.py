"""The send on PostgreSQL against the same send on SQLite, into Postfix's smtp-sink.

One throwaway PostgreSQL cluster (initdb + pg_ctl on a loopback port, as the tests start
it; durability left on) and the same site twice: `[store] path` (SQLite) and
`[store] url` (a fresh database each run). Interleaved over several rounds (SQLite,
PostgreSQL, SQLite, …), each run in its own process: the snapshot and the send phase,
medians and ranges, and the PostgreSQL/SQLite rate ratio, one worker and --workers 2.
--no-fsync shows what PostgreSQL's commit flush costs (SQLite's WAL with
synchronous=NORMAL does not flush at each commit).

    python bench/store_backends.py [--count 5000] [--rounds 3] [--connections 10]
                                   [--no-fsync]

Needs Postfix's smtp-sink and PostgreSQL's binaries (Debian: postfix, postgresql).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent.parent))  # the project, not an installed copy

from bench.send import free_port, make_site, run_child, spread, start_sink  # noqa: E402


def measure(port: int, count: int, connections: int, workers: int,
            url: str = "") -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        make_site(Path(tmp), port, count, connections, store=url)
        result = run_child(["ours", tmp, str(workers)])  # bench/send.py's own send
    if result["sent"] != count:
        raise SystemExit(f"sent {result['sent']} of {count}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--no-fsync", action="store_true",
                        help="PostgreSQL without fsync and synchronous commits (what the "
                        "commit's flush costs; never for real data)")
    args = parser.parse_args()
    if shutil.which("smtp-sink") is None:
        raise SystemExit("smtp-sink not found: apt-get install postfix")
    from tests.pg import Cluster, bindir

    found = bindir()
    if found is None:
        raise SystemExit("PostgreSQL binaries not found: apt-get install postgresql")
    cluster = Cluster(found, durable=not args.no_fsync)
    port = free_port()
    sink = start_sink(port)
    runs: dict[str, list[dict[str, float]]] = {}
    try:
        cluster.start()
        os.environ["PGPASSWORD"] = cluster.password
        measure(port, 200, args.connections, 1)  # warm-up
        for _ in range(args.rounds):  # A B A B: the machine's drift hits both alike
            for workers in (1, 2):
                for backend in ("sqlite", "postgresql"):
                    url = cluster.new_database() if backend == "postgresql" else ""
                    result = measure(port, args.count, args.connections, workers, url)
                    runs.setdefault(f"{backend}, {workers} worker(s)", []).append(result)
                    if url:
                        cluster.drop(url)
    finally:
        sink.terminate()
        cluster.stop()
    print(f"{args.count:,} messages, {args.connections} connections, {args.rounds} rounds, "
          f"median (range); PostgreSQL {'without' if args.no_fsync else 'with'} fsync")
    print(f"{'store':<26} {'msg/s':>22} {'snapshot s':>20}")
    for name, results in runs.items():
        rates = [args.count / r["seconds"] for r in results]
        print(f"{name:<26} {spread(rates):>22} "
              f"{spread([r['snapshot'] for r in results], '.2f'):>20}")
    for workers in (1, 2):
        pg = [args.count / r["seconds"] for r in runs[f"postgresql, {workers} worker(s)"]]
        lite = [args.count / r["seconds"] for r in runs[f"sqlite, {workers} worker(s)"]]
        ratios = [p / s for p, s in zip(pg, lite, strict=True)]  # round by round
        print(f"PostgreSQL / SQLite send rate, {workers} worker(s): {spread(ratios, '.2f')}")


if __name__ == "__main__":
    main()
