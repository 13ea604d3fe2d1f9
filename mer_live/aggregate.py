"""Song-level aggregation: per-task StandardScaler + RBF SVC on segment statistics.

C and gamma are chosen by inner cross-validation on the training songs only. A plain-mean
aggregator (what Essentia and Music2Emo do) sits beside it so the SVM has to earn its place.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from mer_live.stats import STAT_NAMES

C_GRID = (0.1, 1.0, 10.0, 100.0)
GAMMA_GRID = ("scale", 1e-3, 1e-2, 1e-1)


class SongAggregator:
    """Maps (songs, features) statistics to (songs, tasks) probability of "high".

    The statistics' settings (theta, embedding) are the run's ``SongConfig``, which travels in the
    run directory and the bundle manifest; the aggregator only knows its tasks' order."""

    def __init__(self, tasks: list[str], seed: int = 0, inner_folds: int = 3) -> None:
        self.tasks = list(tasks)
        self.seed = seed
        self.inner_folds = inner_folds
        self.models: dict[str, Pipeline] = {}
        self.best_params: dict[str, dict] = {}
        self.inner_accuracy: dict[str, float] = {}  # the chosen C and gamma's accuracy on the inner folds

    def fit(self, features: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None) -> SongAggregator:
        """``labels`` is (rows, tasks) of 0/1. ``groups`` names each row's song when a song has several rows
        (its recordings through the air): the inner folds that choose C and gamma then keep a song's rows
        together, so a recording is never scored against its own clean copy (which rewards memorising)."""
        for t, task in enumerate(self.tasks):
            y = labels[:, t].astype(int)
            pipe = make_pipeline(StandardScaler(), SVC(kernel="rbf", probability=True, random_state=self.seed))
            folds = min(self.inner_folds, int(np.bincount(y, minlength=2).min()))
            if folds < 2:
                raise ValueError(f"aggregator: task {task} needs songs of both classes to fit")
            split = StratifiedKFold if groups is None else StratifiedGroupKFold
            search = GridSearchCV(
                pipe,
                {"svc__C": list(C_GRID), "svc__gamma": list(GAMMA_GRID)},
                cv=split(folds, shuffle=True, random_state=self.seed),
                scoring="accuracy",
            )
            with warnings.catch_warnings():
                # SVC(probability=True) is deprecated from scikit-learn 1.9 (removal planned for 1.11); the
                # exported aggregator.onnx reproduces its Platt + pairwise-coupling output exactly.
                warnings.simplefilter("ignore", FutureWarning)
                search.fit(features, y, groups=groups)
            self.models[task] = search.best_estimator_
            self.best_params[task] = {k.removeprefix("svc__"): v for k, v in search.best_params_.items()}
            self.inner_accuracy[task] = float(search.best_score_)
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        features = np.atleast_2d(features)
        return np.stack([self.models[task].predict_proba(features)[:, 1] for task in self.tasks], axis=1)


def mean_probabilities(features: np.ndarray, tasks: list[str]) -> np.ndarray:
    """The plain-mean baseline: each task's mean segment probability, read from the features."""
    mean_col = STAT_NAMES.index("mean")
    cols = [t * len(STAT_NAMES) + mean_col for t in range(len(tasks))]
    return np.atleast_2d(features)[:, cols]
