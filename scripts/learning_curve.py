"""A learning curve from `mer-live evaluate` reports of one recipe at several `--train-share`s, same folds.

    python scripts/learning_curve.py OUT A.json:METHOD:AGGREGATION B.json:METHOD:AGGREGATION ... \
        [--targets 84,91,77]

Every report tests the same songs per fold; only how many training songs each fold fit on differs (a report
without ``train_share`` used all of them). Prints, per size, valence, arousal and quadrant F1 (mean ± std
over folds) with the paired per-fold difference to the largest size, and the points gained per doubling
of the training songs (a least-squares line in log2 of the songs, per fold, then mean ± std); where every
report heard the test songs through the air (``--conditions``), the share of songs whose quadrant holds. Writes
OUT/learning_curve.json and OUT/learning_curve.png (each fold a thin line, the mean a thick one, the
targets dashed). A line in log2 is the usual shape of such curves at this size; reading it beyond the
largest size measured is an extrapolation, not a measurement.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from compare_evaluations import METRICS, by_fold, row

from mer_live.train.conditions import CONDITIONS


def heard_through(aggregation: str, condition: str) -> str:
    """The report's row of ``aggregation`` through the air: "svm" -> "svm @ room", "svm @ hop 1 s" ->
    "svm @ room, hop 1 s"."""
    if " @ " in aggregation:
        return aggregation.replace(" @ ", f" @ {condition}, ", 1)
    return f"{aggregation} @ {condition}"


def point(spec: str) -> dict:
    """One size: its training songs per fold and every fold's metrics (in %), keyed by fold number, with the
    share of songs whose quadrant holds through each condition the report heard."""
    report, found = row(spec)
    share = report.get("train_share", 1.0)
    songs = round(report["n_songs"] * (report["folds"] - 1) / report["folds"] * share)
    protocol = (report["n_songs"], report["folds"], report["train"]["seed"])  # what fixes the folds' test songs
    heard = {c: r for c in CONDITIONS for r in report["results"]
             if r["method"] == found["method"] and r["aggregation"] == heard_through(found["aggregation"], c)}
    return {"spec": spec, "protocol": protocol, "train_share": share, "train_songs": songs,
            "folds": {k: {key: 100 * f[key] for key, _ in METRICS} for k, f in by_fold(found).items()},
            "agreement": {c: {k: 100 * f["quadrant_agreement"] for k, f in by_fold(r).items()}
                          for c, r in heard.items()}}


def slopes(points: list[dict], folds: list[int], key: str) -> np.ndarray:
    """Per fold, the points gained per doubling: the slope of a least-squares line in log2(training songs)."""
    x = np.log2([p["train_songs"] for p in points])
    return np.array([np.polyfit(x, [p["folds"][k][key] for p in points], 1)[0] for k in folds])


def curve(points: list[dict]) -> dict:
    points = sorted(points, key=lambda p: p["train_songs"])
    folds = sorted(set.intersection(*(set(p["folds"]) for p in points)))
    if len(points) < 2 or not folds or len({p["protocol"] for p in points}) > 1:
        raise SystemExit("need two or more sizes of one protocol (the same songs, folds and seed) that share folds")
    if len({p["train_songs"] for p in points}) < len(points):
        raise SystemExit("two reports of the same size: one report per --train-share")
    largest = points[-1]
    conditions = [c for c in CONDITIONS if all(c in p["agreement"] for p in points)]
    rows = []
    for p in points:
        entry = {"train_songs": p["train_songs"], "train_share": p["train_share"], "spec": p["spec"]}
        for key, _ in METRICS:
            values = np.array([p["folds"][k][key] for k in folds])
            diff = values - np.array([largest["folds"][k][key] for k in folds])
            entry[key] = {"mean": float(values.mean()), "std": float(values.std()), "per_fold": values.tolist(),
                          "vs_largest": float(diff.mean()), "won": int((diff > 1e-9).sum()),
                          "lost": int((diff < -1e-9).sum())}
        entry["agreement"] = {c: float(np.mean([p["agreement"][c][k] for k in folds])) for c in conditions}
        rows.append(entry)
    per_doubling = {key: {"mean": float(s.mean()), "std": float(s.std()), "per_fold": s.tolist()}
                    for key, _ in METRICS for s in [slopes(points, folds, key)]}
    return {"folds": folds, "sizes": rows, "per_doubling": per_doubling, "conditions": conditions}


def table(result: dict) -> str:
    lines = ["| training songs per fold | valence | arousal | quadrant F1 | paired vs the largest (folds won/lost) |",
             "|---|---|---|---|---|"]
    for r in result["sizes"]:
        paired = " / ".join(f"{r[key]['vs_largest']:+.1f} ({r[key]['won']}/{r[key]['lost']})" for key, _ in METRICS)
        lines.append(f"| {r['train_songs']} | " + " | ".join(f"{r[key]['mean']:.1f} ± {r[key]['std']:.1f}"
                                                            for key, _ in METRICS) + f" | {paired} |")
    gained = result["per_doubling"]
    lines.append("| points per doubling | " + " | ".join(f"{gained[key]['mean']:+.1f} ± {gained[key]['std']:.1f}"
                                                        for key, _ in METRICS) + " | |")
    if result["conditions"]:
        lines += ["", "| training songs per fold | " + " | ".join(f"quadrant holds: {c}" for c in result["conditions"])
                  + " |", "|---|" + "---|" * len(result["conditions"])]
        lines += [f"| {r['train_songs']} | " + " | ".join(f"{r['agreement'][c]:.1f}" for c in result["conditions"])
                  + " |" for r in result["sizes"]]
    return "\n".join(lines)


def plot(result: dict, targets: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    songs = [r["train_songs"] for r in result["sizes"]]
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.4), constrained_layout=True)
    for i, (ax, (key, name)) in enumerate(zip(axes, METRICS)):
        per_fold = np.array([r[key]["per_fold"] for r in result["sizes"]])
        for k in range(per_fold.shape[1]):
            ax.plot(songs, per_fold[:, k], color="0.75", lw=1, label="a fold" if k == 0 else None)
        ax.plot(songs, per_fold.mean(axis=1), "o-", color="C0", lw=2.5, label="mean over folds")
        if targets:
            ax.axhline(targets[i], color="C3", ls="--", lw=1, label="target")
        ax.set_xscale("log", base=2)
        ax.set_xticks(songs, [str(s) for s in songs])
        ax.set_xlabel("training songs per fold")
        ax.set_title(f"{name}: {result['per_doubling'][key]['mean']:+.1f} per doubling")
        ax.set_ylabel("%")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> int:
    targets: list[float] = []
    if "--targets" in argv:
        at = argv.index("--targets")
        targets = [float(t) for t in argv[at + 1].split(",")]
        argv = argv[:at] + argv[at + 2:]
    if len(argv) < 3 or (targets and len(targets) != len(METRICS)):
        raise SystemExit(__doc__)
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    result = curve([point(spec) for spec in argv[1:]])
    print(f"folds {result['folds']}\n{table(result)}")
    (out / "learning_curve.json").write_text(json.dumps({**result, "targets": targets}, indent=1) + "\n")
    plot(result, targets, out / "learning_curve.png")
    print(f"wrote {out / 'learning_curve.json'} and {out / 'learning_curve.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
