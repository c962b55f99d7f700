"""Import and export subscribers on SQLite and PostgreSQL: time, rows per second, memory.

Every figure comes from a fresh child process, so each has its own peak RSS: an import
into an empty store (3,000 rows, for the per-3,000 figure, then `--update` of all of them
with new names, categories and statuses; then the two list sizes), and an export of that
store alone (its max RSS is the export's, not the import's). Rounds
interleave the backends (SQLite, PostgreSQL, SQLite, …) and print medians and ranges,
and the large/small ratio (both stream: the target is at most 1.5). A separate traced
pass (tracemalloc slows the import several times) gives the Python heap's peaks.
PostgreSQL is a throwaway local cluster (tests/pg.py; default durability), a fresh
database per run.

    python bench/subscribers.py [--small 20000] [--large 200000] [--rounds 3]
                                [--sqlite-only] [--no-heap]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the project, not an installed copy

CONFIG = """
[newsletter]
timezone = "UTC"
[store]
{store}
[[categories]]
name = "models"
[[categories]]
name = "robots"
[[categories]]
name = "apps"
"""
IMPORT_ROWS = 3000
Figures = dict[str, float]


def write_csv(path: Path, rows: int, *, changed: bool = False) -> None:
    """`rows` readers; `changed`: the same readers renamed, in other categories and
    statuses (for `--update`)."""
    cats = ["models", "robots;apps", "", "apps"]
    statuses = ["pending", "unsubscribed"] if changed else ["active"]
    with path.open("w", encoding="utf-8") as out:
        out.write("email,name,categories,status\n")
        for n in range(rows):
            out.write(f"reader{n}@example.net,{'Renamed' if changed else 'Reader'} {n},"
                      f"{cats[(n + changed) % 4]},{statuses[n % len(statuses)]}\n")


def child(task: str, site: Path, source: str, trace: bool) -> None:
    from newsletter.config import load_settings
    from newsletter.store import Store
    from newsletter.subscribers import export_csv, import_csv

    settings = load_settings(site / "newsletter.toml")
    with Store(settings.store_location) as store:
        if trace:
            tracemalloc.start()
        started = time.perf_counter()
        if task in ("import", "update"):
            report = import_csv(store, settings, Path(source), update=task == "update")
            rows = report.added + report.updated
            assert report.written and not report.problems, report
        else:
            with open(source, "w", encoding="utf-8", newline="") as out:
                rows = export_csv(store, out)
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] if trace else 0
    print(json.dumps({"rows": rows, "seconds": seconds, "heap_mb": peak / 2**20,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run_child(task: str, site: Path, source: Path, trace: bool = False) -> Figures:
    done = subprocess.run([sys.executable, __file__, "--child", task, str(site), str(source),
                           str(int(trace))], capture_output=True, text=True, timeout=3600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{task} failed: {done.stderr}")
    return json.loads(done.stdout)  # type: ignore[no-any-return]


class Sites:
    """A fresh site per run: an SQLite file, or a new database on the cluster."""

    def __init__(self, folder: Path, cluster: object | None) -> None:
        self.folder, self.cluster, self.count = folder, cluster, 0

    def run(self, backend: str, rows: int, sources: dict[int, Path], *, export: bool,
            trace: bool = False, update: Path | None = None) -> tuple[Figures, Figures | None]:
        """Import `rows` into a fresh store, then export it (or import `update` into it
        with --update: that figure is returned in place of the export's)."""
        self.count += 1
        site = self.folder / f"site{self.count}"
        site.mkdir()
        url = self.cluster.new_database() if backend == "postgresql" else ""  # type: ignore[attr-defined]
        store = f'url = "{url}"' if url else 'path = "store.db"'
        (site / "newsletter.toml").write_text(CONFIG.format(store=store), encoding="utf-8")
        try:
            imported = run_child("import", site, sources[rows], trace)
            exported = run_child("export", site, site / "out.csv", trace) if export \
                else run_child("update", site, update) if update else None
        finally:
            if url:
                self.cluster.drop(url)  # type: ignore[attr-defined]
            for path in site.iterdir():
                path.unlink()
            site.rmdir()
        if imported["rows"] != rows or (exported and exported["rows"] != rows):
            raise SystemExit(f"{backend}: {imported} {exported} for {rows} rows")
        return imported, exported


def spread(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}–{max(values):{fmt}})"


def table(title: str, backends: list[str], figures: dict[str, list[float]],
          fmt: str) -> None:
    cells = [spread(figures[b], fmt) for b in backends]
    if len(backends) == 2:  # PostgreSQL / SQLite, round by round
        cells.append(spread([p / s for s, p in zip(figures[backends[0]],
                                                    figures[backends[1]], strict=True)],
                            ".2f"))
    print(f"{title:<34}" + "".join(f"{c:>26}" for c in cells))


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]), sys.argv[4], sys.argv[5] == "1")
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--large", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--no-heap", action="store_true", help="skip the traced pass")
    args = parser.parse_args()
    backends = ["sqlite"] if args.sqlite_only else ["sqlite", "postgresql"]
    sizes = (args.small, args.large)
    cluster = None
    if not args.sqlite_only:
        from tests.pg import Cluster, bindir

        found = bindir()
        if found is None:
            raise SystemExit("PostgreSQL binaries not found: apt-get install postgresql "
                             "(or --sqlite-only)")
        cluster = Cluster(found, durable=True)
    # (figure, backend) -> one value per round
    figures: dict[str, dict[str, list[float]]] = {}

    def note(name: str, backend: str, value: float) -> None:
        figures.setdefault(name, {}).setdefault(backend, []).append(value)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sources = {rows: folder / f"in{rows}.csv" for rows in (IMPORT_ROWS, *sizes)}
        for rows, path in sources.items():
            write_csv(path, rows)
        changes = folder / "changes.csv"
        write_csv(changes, IMPORT_ROWS, changed=True)
        try:
            if cluster is not None:
                cluster.start()
                os.environ["PGPASSWORD"] = cluster.password
            sites = Sites(folder, cluster)
            for _ in range(args.rounds):  # A B A B: the machine's drift hits both alike
                for backend in backends:
                    imported, updated = sites.run(backend, IMPORT_ROWS, sources,
                                                  export=False, update=changes)
                    assert updated is not None
                    note("import", backend, imported["seconds"])
                    note("update", backend, updated["seconds"])
                    for rows in sizes:
                        imported, exported = sites.run(backend, rows, sources, export=True)
                        assert exported is not None
                        note(f"import {rows}", backend, rows / imported["seconds"])
                        note(f"export {rows}", backend, rows / exported["seconds"])
                        note(f"rss {rows}", backend, exported["rss_mb"])
                    note("rss ratio", backend, figures[f"rss {sizes[1]}"][backend][-1]
                         / figures[f"rss {sizes[0]}"][backend][-1])
            heap: dict[tuple[str, int], tuple[Figures, Figures | None]] = {}
            if not args.no_heap:
                for backend in backends:
                    for rows in sizes:
                        heap[backend, rows] = sites.run(backend, rows, sources, export=True,
                                                        trace=True)
        finally:
            if cluster is not None:
                cluster.stop()
    print(f"{args.rounds} rounds interleaved ({', '.join(backends)}), each run a fresh "
          "process and store; median (range)")
    print(f"{'':<34}" + "".join(f"{b:>26}" for b in backends)
          + (f"{'PostgreSQL / SQLite':>26}" if len(backends) == 2 else ""))
    table(f"import {IMPORT_ROWS:,} rows, s", backends, figures["import"], ".2f")
    table(f"then --update all {IMPORT_ROWS:,}, s", backends, figures["update"], ".2f")
    for kind, unit, fmt in (("import", "rows/s", ",.0f"), ("export", "rows/s", ",.0f"),
                            ("rss", "MB", ".0f")):
        for rows in sizes:
            title = "export max RSS" if kind == "rss" else kind
            table(f"{title} at {rows:,}, {unit}", backends, figures[f"{kind} {rows}"], fmt)
    table(f"export max RSS {sizes[1]:,} / {sizes[0]:,}", backends, figures["rss ratio"],
          ".2f")
    if heap:
        print("peak Python heap (traced pass, MB; target: large / small <= 1.5)")
        for backend in backends:
            (imp_a, exp_a), (imp_b, exp_b) = heap[backend, sizes[0]], heap[backend, sizes[1]]
            assert exp_a is not None and exp_b is not None
            print(f"  {backend:<12} import {imp_a['heap_mb']:.1f} → {imp_b['heap_mb']:.1f} "
                  f"(ratio {imp_b['heap_mb'] / imp_a['heap_mb']:.2f}), export "
                  f"{exp_a['heap_mb']:.1f} → {exp_b['heap_mb']:.1f} "
                  f"(ratio {exp_b['heap_mb'] / exp_a['heap_mb']:.2f})")


if __name__ == "__main__":
    main()
