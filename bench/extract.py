"""Item extraction: quality on the labelled set, speed next to markdown-it-py, memory.

1. Precision and recall per source against tests/fixtures/labelled/ (see POLICY.md there).
2. Throughput on the labelled posts' bodies: markdown-it-py's own parse (the reference)
   and our whole extraction (parse + structure), interleaved A B A B over several rounds;
   medians and ranges in MB/s, and their ratio (target: at least 0.5).
3. Peak RSS of `newsletter digests --json` over N and 10×N posts in fresh processes
   (streaming: the ratio should stay near 1).

    python bench/extract.py [ROUNDS]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter.config import ContentRules  # noqa: E402
from newsletter.content import read_text  # noqa: E402
from newsletter.front_matter import split_front_matter  # noqa: E402
from newsletter.items import MD, compile_rules, extract  # noqa: E402
from tests.extraction_score import Score, labelled_posts, score_post  # noqa: E402

RULES = compile_rules(ContentRules().exclude_sections, ContentRules().exclude_links)


def quality() -> None:
    totals: dict[str, Score] = defaultdict(Score)
    posts: dict[str, int] = defaultdict(int)
    for source, post, labelled in labelled_posts():
        _, body = split_front_matter(read_text(post))
        items = extract(body, rules=RULES).items
        totals[source].add(score_post([(i.headline, i.url) for i in items], labelled))
        posts[source] += 1
    print(f"{'source':<14}{'posts':>6}{'labelled':>10}{'found':>7}{'precision':>11}"
          f"{'recall':>8}")
    for source in sorted(totals):
        s = totals[source]
        print(f"{source:<14}{posts[source]:>6}{s.labelled:>10}{s.extracted:>7}"
              f"{s.precision:>11.3f}{s.recall:>8.3f}")


def throughput(rounds: int) -> None:
    bodies = [split_front_matter(read_text(p))[1] for s, p, _ in labelled_posts()
              if s != "synthetic"]
    size = sum(len(b.encode("utf-8")) for b in bodies) / 1e6

    def parse() -> None:
        for body in bodies:
            MD.parse(body)

    def ours() -> None:
        for body in bodies:
            extract(body, rules=RULES)

    runs: dict[str, list[float]] = {"markdown-it parse": [], "extraction": []}
    for _ in range(rounds):
        for name, func in (("markdown-it parse", parse), ("extraction", ours)):
            start = time.perf_counter()
            func()
            runs[name].append(size / (time.perf_counter() - start))
    print(f"\nthroughput on {len(bodies)} real posts ({size:.2f} MB), {rounds} rounds:")
    for name, values in runs.items():
        print(f"  {name:<18} median {statistics.median(values):5.2f} MB/s  "
              f"(range {min(values):.2f}–{max(values):.2f})")
    ratios = [o / p for o, p in zip(runs["extraction"], runs["markdown-it parse"], strict=True)]
    print(f"  extraction / parse: median {statistics.median(ratios):.2f} "
          f"(range {min(ratios):.2f}–{max(ratios):.2f}; target ≥ 0.5)")
    big = "\n\n".join(bodies)[:220_000]
    start = time.perf_counter()
    extract(big, rules=RULES)
    print(f"  one 220 KB post: {time.perf_counter() - start:.2f} s")


def peak_rss(posts: int) -> int:
    """Peak RSS (KB) of a fresh `newsletter digests --json` over `posts` posts."""
    bodies = [read_text(p) for s, p, _ in labelled_posts() if s != "synthetic"]
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp)
        (site / "content").mkdir()
        for n in range(posts):
            day = 1 + n % 28
            text = split_front_matter(bodies[n % len(bodies)])[1]
            (site / "content" / f"2025-{1 + n // 28 % 12:02d}-{day:02d}-{n}.md").write_text(
                f"---\ntitle: post {n}\ndate: 2025-{1 + n // 28 % 12:02d}-{day:02d}\n---\n"
                + text, encoding="utf-8")
        script = ("import resource, sys\nfrom newsletter.cli import cli\n"
                  "try:\n    cli(['digests', '--since', '2025-01-01', '--until', '2026-01-01',"
                  " '--json'], prog_name='newsletter')\nexcept SystemExit:\n    pass\n"
                  "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")
        done = subprocess.run([sys.executable, "-c", script], cwd=site, capture_output=True,
                              text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin",
                                              "HOME": tmp},
                              check=True)
        return int(done.stderr.strip().splitlines()[-1])


def memory(posts: int) -> None:
    small, large = peak_rss(posts), peak_rss(10 * posts)
    print(f"\npeak RSS of `digests --json`: {posts} posts {small / 1024:.0f} MB, "
          f"{10 * posts} posts {large / 1024:.0f} MB (ratio {large / small:.2f}; "
          "flat means ≤ 1.1)")


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    quality()
    throughput(rounds)
    memory(200)
