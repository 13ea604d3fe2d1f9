"""The songs no recipe gets right: several `mer-live evaluate` reports of the same songs, read song by song.

    python scripts/hard_songs.py A.json:METHOD:AGGREGATION B.json:METHOD:AGGREGATION ... [--list N]

Recipes that differ by a point of accuracy can still fail on different songs, or all on the same ones. Per
task, every test song (matched by file name across the reports' folds) is counted as right in every report,
wrong in every report, or mixed; by annotated quadrant; with the accuracy a per-song oracle over the reports
would reach (the ceiling of choosing among them song by song, or of averaging them) and how sure the first
report was on the songs all of them miss. ``--list N`` prints up to N such songs per task, the surest misses
first, to listen to.
"""

from __future__ import annotations

import sys
from collections import Counter

import numpy as np
from fuse_evaluations import fold_probs, rows

from mer_live.config import TASKS
from mer_live.stats import quadrant


def songs(row: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{song: (labels, probabilities)} over every fold of one report's row."""
    return {song: (labels[i], probs[i])
            for names, labels, probs in fold_probs(row).values() for i, song in enumerate(names)}


def wrong_counts(reports: list[dict[str, tuple[np.ndarray, np.ndarray]]]
                 ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The songs every report labeled, their labels, and per song and task how many reports got it wrong."""
    common = sorted(set.intersection(*(set(r) for r in reports)))
    if not common:
        raise SystemExit("the reports share no test songs (another dataset?)")
    labels = np.array([reports[0][s][0] for s in common])
    if any(not np.array_equal(r[s][0], label) for r in reports for s, label in zip(common, labels)):
        raise SystemExit("the reports label a song differently (another dataset or binarization)")
    wrong = sum((np.array([r[s][1] for s in common]) > 0.5) != labels for r in reports)
    return common, labels, wrong


def main(argv: list[str]) -> int:
    listed = 0
    if "--list" in argv:
        at = argv.index("--list")
        listed, argv = int(argv[at + 1]), argv[:at] + argv[at + 2:]
    if len(argv) < 2:
        raise SystemExit(__doc__)
    specs = [rows(spec) for spec in argv]
    reports = [songs(found[aggregation]) for _, aggregation, found in specs]
    common, labels, wrong = wrong_counts(reports)
    n = len(reports)
    annotated = np.array([quadrant(bool(v), bool(a)) for v, a in labels])
    first = np.array([reports[0][s][1] for s in common])
    print(f"{len(common)} songs in all {n} reports ({', '.join(label for label, _, _ in specs)})")
    for t, task in enumerate(TASKS):
        always, never = wrong[:, t] == n, wrong[:, t] == 0
        by_quadrant = Counter(annotated[always])
        sure = np.abs(first[always, t] - 0.5)
        print(f"{task}: right in every report {never.sum()}, wrong in every report {always.sum()}, mixed "
              f"{(~always & ~never).sum()}; mean accuracy {100 * (1 - wrong[:, t].mean() / n):.1f} %, "
              f"per-song oracle {100 * (1 - always.mean()):.1f} %")
        if always.any():
            print("  wrong in every report, by annotated quadrant: "
                  + ", ".join(f"{q} {by_quadrant[q]}" for q in sorted(by_quadrant))
                  + f"; the first report's median |p - 0.5| on them {np.median(sure):.2f}")
        for i in np.flatnonzero(always)[np.argsort(-sure)][:listed]:
            print(f"  {common[i]} ({annotated[i]}): p({task}) {first[i, t]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
