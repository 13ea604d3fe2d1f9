"""Late fusion of two or more models' `mer-live evaluate` reports on the same folds: an ensemble measured
without training it again.

    python scripts/fuse_evaluations.py A.json:METHOD:AGGREGATION B.json:METHOD:AGGREGATION ...

Per fold, the song probabilities of the named rows are averaged (songs matched by file name), and the
ensemble's valence, arousal and quadrant F1 are printed beside every member's, with the paired per-fold
difference to the best member. Rows heard through a condition (``AGGREGATION @ room`` etc.) present in
every report are fused too, with the share of songs whose quadrant is the clean ensemble's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from mer_live.train.evaluate import quadrant_agreement, song_metrics

METRICS = (("valence_acc", "valence"), ("arousal_acc", "arousal"), ("quadrant_f1", "quadrant F1"))


def rows(spec: str) -> tuple[str, str, dict[str, dict]]:
    """(label, aggregation, {aggregation: row}) of one report's method: the named aggregation and its conditions."""
    path, method, aggregation = spec.rsplit(":", 2)
    report = json.loads(Path(path).read_text())
    found = {r["aggregation"]: r for r in report["results"] if r["method"] == method
             and (r["aggregation"] == aggregation or r["aggregation"].startswith(aggregation + " @ "))}
    if aggregation not in found:
        raise SystemExit(f"{path}: no row {method}/{aggregation}")
    if any("predictions" not in r for r in found.values()):
        raise SystemExit(f"{path}: no per-fold predictions (a report of mer-live before --run-folds)")
    return f"{Path(path).parent.name}:{method}:{aggregation}", aggregation, found


def fold_probs(row: dict) -> dict[int, tuple[list[str], np.ndarray, np.ndarray]]:
    return {f["fold"]: (p["songs"], np.array(p["labels"]), np.array(p["probs"]))
            for f, p in zip(row["folds"], row["predictions"])}


def fuse(members: list[dict]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{fold: (labels, mean probabilities)} over the folds every member ran."""
    per_member = [fold_probs(m) for m in members]
    out = {}
    for fold in sorted(set.intersection(*(set(p) for p in per_member))):
        songs, labels, _ = per_member[0][fold]
        order = [{s: i for i, s in enumerate(p[fold][0])} for p in per_member]
        if any(set(o) != set(songs) for o in order):
            raise SystemExit(f"fold {fold}: the reports' test songs differ (other folds or seed)")
        probs = np.mean([p[fold][2][[o[s] for s in songs]] for p, o in zip(per_member, order)], axis=0)
        out[fold] = (labels, probs)
    return out


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        raise SystemExit(__doc__)
    specs = [rows(spec) for spec in argv]
    members = [(label, {name.replace(aggregation, "", 1): row for name, row in found.items()})
               for label, aggregation, found in specs]  # keyed "" and " @ room" etc. across aggregations
    base = ""
    ensemble = fuse([found[base] for _, found in members])
    folds = list(ensemble)
    print(f"folds {folds}")
    scores = {}
    for label, found in members:
        by_fold = {f["fold"]: f for f in found[base]["folds"]}
        scores[label] = {key: np.array([by_fold[k][key] for k in folds]) * 100 for key, _ in METRICS}
    fused = [song_metrics(*ensemble[k]) for k in folds]
    scores["ensemble"] = {key: np.array([f[key] for f in fused]) * 100 for key, _ in METRICS}
    best = max((label for label, _ in members), key=lambda label: scores[label]["quadrant_f1"].mean())
    for label, s in scores.items():
        print(f"{label}: " + ", ".join(f"{name} {s[key].mean():.1f} ± {s[key].std():.1f}" for key, name in METRICS))
    for key, name in METRICS:
        d = scores["ensemble"][key] - scores[best][key]
        print(f"ensemble - {best}, {name}: {d.mean():+.1f} ({int((d > 0).sum())} won, {int((d < 0).sum())} lost)")
    conditions = set.intersection(*(set(found) for _, found in members)) - {base}
    for condition in sorted(conditions):
        heard = fuse([found[condition] for _, found in members])
        same = [100 * quadrant_agreement(heard[k][1], ensemble[k][1]) for k in folds]
        metrics = [song_metrics(*heard[k]) for k in folds]
        print(f"ensemble{condition}: quadrant same as clean {np.mean(same):.1f} ± {np.std(same):.1f}; "
              + ", ".join(f"{name} {100 * np.mean([m[key] for m in metrics]):.1f}" for key, name in METRICS))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
