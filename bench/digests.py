"""Select one week out of 10,000 digest posts.

Only front matter is parsed for posts outside the window; the reference run in the same
process parses every post's body too. Prints both times and their ratio.

    python bench/digests.py [POSTS]
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from newsletter.config import load_settings
from newsletter.content import load_digests
from newsletter.window import resolve_window

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
REFERENCE = (EXAMPLES / "content" / "2025-12-20-16.md").read_text(encoding="utf-8")
BODY = REFERENCE.split("---", 2)[2]


def write_posts(folder: Path, count: int) -> None:
    """A post every 4 hours, going back from the end of 2025-W51."""
    tz = ZoneInfo("Asia/Shanghai")
    last = datetime(2025, 12, 21, 20, tzinfo=tz)
    for n in range(count):
        moment = last - timedelta(hours=4 * n)
        (folder / f"{moment:%Y-%m-%d-%H}.md").write_text(
            f'---\ntitle: "{moment:%Y.%m.%d.%H} 过去4小时全球AI发生了什么？"\n'
            f"date: {moment.isoformat()}\n"
            'categories: ["AI发展", "技术进展", "应用场景"]\n---\n' + BODY, encoding="utf-8")


def timed(func: object, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        func()  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    settings = load_settings(EXAMPLES / "newsletter.toml")
    window = resolve_window(tz=settings.timezone, week="2025-W51")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_posts(folder, count)
        settings = replace(settings, content_dir=folder)
        week = load_digests(settings, window)
        every = load_digests(settings)
        select = timed(lambda: load_digests(settings, window))
        reference = timed(lambda: load_digests(settings), repeat=1)
    print(f"{count:,} posts, {len(week.digests)} in 2025-W51 "
          f"({sum(len(d.items) for d in week.digests)} items), "
          f"{len(every.digests):,} in all, {len(week.problems)} problems")
    print(f"select one week:            {select:.3f} s")
    print(f"reference, parse every post: {reference:.3f} s")
    print(f"ratio: selecting a week costs {select / reference:.2f} of parsing everything")


if __name__ == "__main__":
    main()
