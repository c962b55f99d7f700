"""Story clustering against the hand-marked weeks in tests/fixtures/stories/.

Per week: mentions, marked same-story pairs, pairs found, pairwise precision and recall
(deterministic), then the clustering time per week over several rounds (median, range).

    python bench/stories.py [ROUNDS]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the project

from newsletter.stories import cluster
from tests.story_score import labelled_pairs, load_mentions, pairs, pairwise, weeks


def main(rounds: int) -> None:
    print(f"{'week':<24}{'mentions':>9}{'marked':>8}{'found':>7}{'precision':>11}"
          f"{'recall':>8}   clustering s, median (range) of {rounds}")
    hits = found_all = marked_all = 0
    for week in weeks():
        _, mentions = load_mentions(week)
        seconds = []
        for _ in range(rounds):
            start = time.perf_counter()
            groups = cluster(mentions).groups
            seconds.append(time.perf_counter() - start)
        found, marked = pairs(groups), labelled_pairs(week)
        precision, recall = pairwise(found, marked)
        hits, found_all, marked_all = (hits + len(found & marked), found_all + len(found),
                                       marked_all + len(marked))
        print(f"{week.name:<24}{len(mentions):>9}{len(marked):>8}{len(found):>7}"
              f"{precision:>11.3f}{recall:>8.3f}   {statistics.median(seconds):.3f} "
              f"({min(seconds):.3f}–{max(seconds):.3f})")
    print(f"{'all weeks':<24}{'':>9}{marked_all:>8}{found_all:>7}"
          f"{hits / found_all:>11.3f}{hits / marked_all:>8.3f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
