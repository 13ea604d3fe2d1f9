"""Paired per-fold comparison of two rows of `mer-live evaluate` reports run on the same folds.

    python scripts/compare_evaluations.py NEW.json:METHOD:AGGREGATION BASE.json:METHOD:AGGREGATION

Prints, per metric, both means ± std and the mean of the per-fold differences (new minus base)
with the folds won and lost; then valence among the songs annotated low and high in arousal apart, from
the rows' song predictions (so reports written before `evaluate` listed it compare too). Refuses reports
whose protocols (folds, seed) differ, except that a report of some of the folds (``evaluate --max-folds N``
or ``--run-folds``) is compared on the folds both ran.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

from mer_live.train.evaluate import song_metrics

METRICS = (("valence_acc", "valence"), ("arousal_acc", "arousal"), ("quadrant_f1", "quadrant F1"))
BY_AROUSAL = (("valence_acc_low_arousal", "valence, low arousal"),
              ("valence_acc_high_arousal", "valence, high arousal"))


def row(spec: str) -> tuple[dict, dict]:
    path, method, aggregation = spec.rsplit(":", 2)
    report = json.loads(Path(path).read_text())
    for r in report["results"]:
        if r["method"] == method and r["aggregation"] == aggregation:
            return report, r
    raise SystemExit(f"{path}: no row {method}/{aggregation}")


def base_protocol(report: dict) -> str:
    """The protocol without the "first N of the folds only" note."""
    return re.sub(r", (first \d+ of the \d+ folds|folds [\d, ]+ of the \d+) only", "", report["protocol"])


def by_fold(row: dict) -> dict[int, dict]:
    """Fold rows by fold number (reports before --run-folds list the first N folds in order)."""
    return {f.get("fold", k): f for k, f in enumerate(row["folds"], 1)}


def by_arousal(row: dict) -> dict[int, dict[str, float]]:
    """Per fold, valence accuracy among the low- and the high-arousal songs, from the row's predictions."""
    return {number: song_metrics(np.array(p["labels"]), np.array(p["probs"]))
            for number, p in zip(by_fold(row), row["predictions"])}


def paired(new_folds: dict[int, dict], base_folds: dict[int, dict], folds: list[int],
           metrics: tuple[tuple[str, str], ...]) -> None:
    for key, name in metrics:
        a = np.array([new_folds[k][key] for k in folds]) * 100
        b = np.array([base_folds[k][key] for k in folds]) * 100
        d = a - b
        print(f"{name}: {a.mean():.1f} ± {a.std():.1f} vs {b.mean():.1f} ± {b.std():.1f}; paired {d.mean():+.1f} "
              f"({int((d > 0).sum())} won, {int((d < 0).sum())} lost)")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        raise SystemExit(__doc__)
    (new_report, new), (base_report, base) = row(argv[0]), row(argv[1])
    if base_protocol(new_report) != base_protocol(base_report):
        raise SystemExit(f"different protocols: {new_report['protocol']!r} vs {base_report['protocol']!r}")
    new_folds, base_folds = by_fold(new), by_fold(base)
    folds = sorted(set(new_folds) & set(base_folds))
    if len(folds) < max(len(new_folds), len(base_folds)):
        print(f"on the folds both ran: {folds}")
    paired(new_folds, base_folds, folds, METRICS)
    if "predictions" in new and "predictions" in base:
        paired(by_arousal(new), by_arousal(base), folds, BY_AROUSAL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
