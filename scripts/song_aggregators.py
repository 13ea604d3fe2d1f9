"""Song aggregators compared on the same fold networks, paired per fold, without training a network again.

    mer-live evaluate ... --save-outputs DIR        # every fold keeps what its network gives every segment
    python scripts/song_aggregators.py DIR [--out aggregators.json]

Every aggregator below is fit on each fold's training songs (and the recordings it names) and scores the fold's
test songs at every hop the outputs hold, clean and through every condition saved; each row is paired with the
shipped recipe (``svm``: the song SVM on the clean songs and their first recording through the air, statistics
at the training hop) on the same folds and the same test songs.
"""

from __future__ import annotations

import argparse
import json
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from mer_live.aggregate import C_GRID, GAMMA_GRID, SongAggregator, mean_probabilities
from mer_live.config import TASKS
from mer_live.stats import STAT_NAMES, quadrant, song_vector
from mer_live.train.evaluate import quadrant_agreement, song_metrics

METRICS = (("valence_acc", "valence"), ("arousal_acc", "arousal"), ("quadrant_f1", "quadrant F1"))
Outputs = tuple[list[np.ndarray], list[np.ndarray | None]]  # per song: segment probabilities, embeddings
Fit = Callable[[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray], np.ndarray]  # (X, y, test X, seed, songs) -> P


@dataclass(frozen=True)
class Aggregator:
    name: str
    fit: Fit
    recordings: int | None = 1  # how many recordings through the air join the clean training songs (None: all)
    at_test_hop: bool = False  # training statistics at the hop the test songs are labeled at, not the training hop


def svm(x: np.ndarray, y: np.ndarray, test: np.ndarray, seed: int, songs: np.ndarray) -> np.ndarray:
    return SongAggregator(list(TASKS), seed=seed).fit(x, y).predict_proba(test)


def svm_inner_folds_by_song(x: np.ndarray, y: np.ndarray, test: np.ndarray, seed: int, songs: np.ndarray
                            ) -> np.ndarray:
    """C and gamma on inner folds that keep a song's rows together: the shipped SVM's inner folds are drawn over
    rows, so a recording through the air is scored against its own clean copy."""
    return SongAggregator(list(TASKS), seed=seed).fit(x, y, groups=songs).predict_proba(test)


def svm_five_inner_folds(x: np.ndarray, y: np.ndarray, test: np.ndarray, seed: int, songs: np.ndarray
                         ) -> np.ndarray:
    return SongAggregator(list(TASKS), seed=seed, inner_folds=5).fit(x, y).predict_proba(test)


def logistic(x: np.ndarray, y: np.ndarray, test: np.ndarray, seed: int, songs: np.ndarray) -> np.ndarray:
    """L2 logistic regression per task, C by 5-fold CV (log-loss)."""
    out = []
    for t in range(y.shape[1]):
        model = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=np.logspace(-4, 1, 11), cv=5,
                                                                     scoring="neg_log_loss", max_iter=5000))
        out.append(model.fit(x, y[:, t]).predict_proba(test)[:, 1])
    return np.stack(out, axis=1)


def quadrant_svm(x: np.ndarray, y: np.ndarray, test: np.ndarray, seed: int, songs: np.ndarray) -> np.ndarray:
    """One 4-class SVM on the quadrants; P(valence high) = P(Q1) + P(Q4), P(arousal high) = P(Q1) + P(Q2)."""
    quadrants = np.array([int(quadrant(bool(v), bool(a))[1]) for v, a in y])
    search = GridSearchCV(make_pipeline(StandardScaler(), SVC(kernel="rbf", probability=True, random_state=seed)),
                          {"svc__C": list(C_GRID), "svc__gamma": list(GAMMA_GRID)},
                          cv=StratifiedKFold(3, shuffle=True, random_state=seed), scoring="f1_macro")
    probs = search.fit(x, quadrants).predict_proba(test)
    p = dict(zip(search.best_estimator_.classes_, probs.T))
    return np.stack([p[1] + p[4], p[1] + p[2]], axis=1)


def svm_on_probabilities(x: np.ndarray, y: np.ndarray, test: np.ndarray, seed: int, songs: np.ndarray
                         ) -> np.ndarray:
    """The song SVM on the segment probabilities' statistics alone, without the embedding's mean and std."""
    n = len(STAT_NAMES) * len(TASKS)
    return svm(x[:, :n], y, test[:, :n], seed, songs)


def svm_and_mean(x: np.ndarray, y: np.ndarray, test: np.ndarray, seed: int, songs: np.ndarray) -> np.ndarray:
    """The SVM's probabilities averaged with the plain mean of the segments' (two aggregators, one vote)."""
    return (svm(x, y, test, seed, songs) + mean_probabilities(test, list(TASKS))) / 2


AGGREGATORS = (
    Aggregator("svm", svm),
    Aggregator("svm, statistics at the labeling hop", svm, at_test_hop=True),
    Aggregator("svm, clean songs only", svm, recordings=0),
    Aggregator("svm, every recording", svm, recordings=None),
    Aggregator("svm, inner folds by song", svm_inner_folds_by_song),
    Aggregator("svm, every recording, inner folds by song", svm_inner_folds_by_song, recordings=None),
    Aggregator("svm, 5 inner folds", svm_five_inner_folds),
    Aggregator("logistic regression", logistic),
    Aggregator("quadrant svm", quadrant_svm),
    Aggregator("svm + plain mean", svm_and_mean),
    Aggregator("svm, probability statistics only", svm_on_probabilities),
)


def row_name(name: str, hop: str, condition: str) -> str:
    """A table row: the labeling, then its hop and condition (``report`` pairs rows on what follows " @ ")."""
    return f"{name} @ " + (f"hop {hop} s" if condition == "clean" else f"{condition}, hop {hop} s")


def scored(truth: np.ndarray, probs: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    """A row's figures: accuracy against ``truth`` and the quadrant's agreement with the ``clean`` songs'."""
    return {**song_metrics(truth, probs), "quadrant_agreement": quadrant_agreement(probs, clean)}


def segment_outputs(z: np.lib.npyio.NpzFile, key: str, embedding: bool) -> Outputs:
    """One version's saved segment outputs, song by song: probabilities, and embeddings (None without)."""
    cuts = np.cumsum(z[f"{key}/counts"])[:-1]
    probs = np.split(z[f"{key}/probs"], cuts)
    return probs, np.split(z[f"{key}/embeddings"], cuts) if embedding else [None] * len(probs)


def statistics(outputs: Outputs, theta: float) -> np.ndarray:
    """Each song's statistics (``stats.song_vector``) from its segment outputs."""
    return np.stack([song_vector(p, e, theta) for p, e in zip(*outputs)])


def song_rows(z: np.lib.npyio.NpzFile, key: str, embedding: bool) -> np.ndarray:
    """Each song's statistics (at the run's theta) from one version's saved segment outputs."""
    return statistics(segment_outputs(z, key, embedding), float(z["theta"]))


def fold_scores(path: Path, aggregators: tuple[Aggregator, ...]) -> dict[str, dict]:
    """{row: {metric: value}} of one fold: every aggregator at every hop and condition saved."""
    z = np.load(path)
    keys = list(dict.fromkeys(k.rsplit("/", 1)[0] for k in z.files if k.count("/") == 3))  # saved order: air-0 first
    embedding = any(k.endswith("/embeddings") for k in z.files)
    hops = sorted({k.split("/hop ")[1] for k in keys}, key=float)
    train_hop = f"{float(z['training_hop']):g}"
    recordings = [v for v in dict.fromkeys(k.split("/")[1] for k in keys if k.startswith("train/")) if v != "clean"]
    conditions = [v for v in dict.fromkeys(k.split("/")[1] for k in keys if k.startswith("test/")) if v != "clean"]
    y, truth = z["labels/train"], z["labels/test"]
    scores: dict[str, dict] = {}
    for agg in aggregators:
        # one fit per training hop: at the training hop, one SVM labels every hop, as a bundle does
        for fit_hop, test_hops in ([(h, [h]) for h in hops] if agg.at_test_hop else [(train_hop, hops)]):
            versions = ["clean", *recordings[:agg.recordings]]
            x = np.concatenate([song_rows(z, f"train/{v}/hop {fit_hop}", embedding) for v in versions])
            tests = {(h, c): song_rows(z, f"test/{c}/hop {h}", embedding) for h in test_hops
                     for c in ["clean", *conditions]}
            probs = agg.fit(x, np.concatenate([y] * len(versions)), np.concatenate(list(tests.values())),
                            int(z["seed"]), np.tile(np.arange(len(y)), len(versions)))
            per = dict(zip(tests, np.split(probs, len(tests))))
            for (hop, condition), p in per.items():
                scores[row_name(agg.name, hop, condition)] = scored(truth, p, per[hop, "clean"])
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outputs", type=Path, help="a --save-outputs folder")
    parser.add_argument("--out", type=Path, help="also write the table and per-fold figures as JSON")
    parser.add_argument("--only", default="", help="comma-separated aggregator names (default: all)")
    args = parser.parse_args()
    warnings.simplefilter("ignore", FutureWarning)  # scikit-learn 1.9's deprecations of SVC and LogisticRegressionCV
    paths = sorted(args.outputs.glob("*-fold*.npz"), key=lambda p: int(re.search(r"fold(\d+)", p.name)[1]))
    if not paths:
        raise SystemExit(f"{args.outputs}: no *-fold<k>.npz (run mer-live evaluate with --save-outputs)")
    only = set(filter(None, args.only.split(",")))
    if only - {a.name for a in AGGREGATORS}:
        raise SystemExit(f"--only: unknown {sorted(only - {a.name for a in AGGREGATORS})}; choose from "
                         + ", ".join(a.name for a in AGGREGATORS))
    chosen = (AGGREGATORS[0], *(a for a in AGGREGATORS[1:] if not only or a.name in only))  # "svm": the pairing
    folds = {int(re.search(r"fold(\d+)", p.name)[1]): fold_scores(p, chosen) for p in paths}
    report(folds, args.outputs, args.out)


def report(folds: dict[int, dict[str, dict]], outputs: Path, out: Path | None, first: str = "aggregator") -> None:
    """Print every row's mean ± std over folds and its paired difference with 'svm' at the same hop and condition
    (rows are named "<name> @ <hop and condition>"); with ``out``, also write them as JSON."""
    rows = list(next(iter(folds.values())))
    print(f"{len(folds)} folds ({', '.join(map(str, folds))}) from {outputs}; paired with 'svm' at the same "
          "hop and condition: mean difference (folds won/lost)\n")
    print(f"| {first} | " + " | ".join(label for _, label in METRICS)
          + " | quadrant same as clean | paired: the same four |")
    print("|---|---|---|---|---|---|")
    table = []
    for row in rows:
        base = "svm @ " + row.split(" @ ", 1)[1]
        entry = {"row": row, "folds": sorted(folds)}
        cells, paired = [], []
        for metric, _ in (*METRICS, ("quadrant_agreement", "")):
            values = np.array([folds[k][row][metric] for k in sorted(folds)]) * 100
            diffs = values - np.array([folds[k][base][metric] for k in sorted(folds)]) * 100
            entry[metric] = {"mean": values.mean(), "std": values.std(), "per_fold": values.round(2).tolist(),
                             "paired": diffs.mean()}
            cells.append(f"{values.mean():.1f} ± {values.std():.1f}")
            paired.append(f"{diffs.mean():+.1f} ({(diffs > 1e-9).sum()}/{(diffs < -1e-9).sum()})")
        table.append(entry)
        print(f"| {row} | " + " | ".join(cells) + " | " + " / ".join(paired) + " |")
    if out:
        out.write_text(json.dumps({"outputs": str(outputs), "rows": table}, indent=1))


if __name__ == "__main__":
    main()
