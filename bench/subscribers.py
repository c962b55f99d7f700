"""Import and export 100,000 subscribers: rows per second and peak memory.

Each size runs in fresh child processes: a timing pass without tracing (tracemalloc slows
the import several times), repeated over ROUNDS interleaved small/large, and a separate
memory pass (Python heap via tracemalloc, and max RSS) for that run's own peak; the
10,000-row run is the reference the 100,000-row run is compared with (import streams the
file: the target is at most 1.5x).

    python bench/subscribers.py [ROWS] [ROUNDS]
"""

from __future__ import annotations

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

CONFIG = """
[newsletter]
timezone = "UTC"
[[categories]]
name = "models"
[[categories]]
name = "robots"
[[categories]]
name = "apps"
"""


def child(rows: int, trace: bool) -> None:
    from newsletter.config import load_settings
    from newsletter.store import Store
    from newsletter.subscribers import export_csv, import_csv

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "newsletter.toml").write_text(CONFIG, encoding="utf-8")
        source = folder / "in.csv"
        cats = ["models", "robots;apps", "", "apps"]
        with source.open("w", encoding="utf-8") as out:
            out.write("email,name,categories,status\n")
            for n in range(rows):
                out.write(f"reader{n}@example.net,Reader {n},{cats[n % 4]},active\n")
        settings = load_settings(folder / "newsletter.toml")
        with Store(settings.store_path) as store:
            if trace:
                tracemalloc.start()
            started = time.perf_counter()
            report = import_csv(store, settings, source)
            import_seconds = time.perf_counter() - started
            import_peak = tracemalloc.get_traced_memory()[1] if trace else 0
            tracemalloc.reset_peak()
            started = time.perf_counter()
            with (folder / "out.csv").open("w", encoding="utf-8", newline="") as out:
                exported = export_csv(store, out)
            export_seconds = time.perf_counter() - started
            export_peak = tracemalloc.get_traced_memory()[1] if trace else 0
            tracemalloc.stop()
        assert report.added == rows and exported == rows, (report, exported)
    print(json.dumps({
        "import_rate": rows / import_seconds, "export_rate": rows / export_seconds,
        "import_peak_mb": import_peak / 2**20, "export_peak_mb": export_peak / 2**20,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(rows: int, trace: bool) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--child", str(rows), str(int(trace))],
                          capture_output=True, text=True, check=True, timeout=1800,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):9,.0f} ({min(values):,.0f}–{max(values):,.0f})"


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), sys.argv[3] == "1")
        return
    large = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    small = large // 10
    timed: dict[int, list[dict[str, float]]] = {small: [], large: []}
    for _ in range(rounds):  # interleaved, untraced
        for rows in (small, large):
            timed[rows].append(measure(rows, trace=False))
    memory = {rows: measure(rows, trace=True) for rows in (small, large)}
    print(f"median (range) over {rounds} untraced rounds; memory from a separate traced pass")
    for rows, runs in timed.items():
        r = memory[rows]
        print(f"{rows:>8,} rows: import {spread([t['import_rate'] for t in runs])} rows/s, "
              f"export {spread([t['export_rate'] for t in runs])} rows/s; peak heap import "
              f"{r['import_peak_mb']:.1f} MB, export {r['export_peak_mb']:.1f} MB, max RSS "
              f"{statistics.median(t['max_rss_mb'] for t in runs):.0f} MB")
    a, b = memory[small], memory[large]
    rss = [statistics.median(t["max_rss_mb"] for t in timed[n]) for n in (small, large)]
    print(f"peak heap ratio {large:,} / {small:,}: import "
          f"{b['import_peak_mb'] / a['import_peak_mb']:.2f}, export "
          f"{b['export_peak_mb'] / a['export_peak_mb']:.2f} (target <= 1.5); "
          f"max RSS ratio {rss[1] / rss[0]:.2f}")


if __name__ == "__main__":
    main()
