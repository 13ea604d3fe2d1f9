"""Song-level aggregation: per-task StandardScaler + RBF SVC on segment statistics.

C and gamma are chosen by inner cross-validation on the training songs only. A plain-mean
aggregator (what Essentia and Music2Emo do) sits beside it so the SVM has to earn its place.
With a second view of the song (``SongConfig.view``: the pretrained AudioSet network's embedding
statistics), a logistic regression on those columns gives a fixed share of the estimate and the SVM
reads the rest: a late fusion of two differently trained views (a linear model on features AudioSet
taught, beside the network fine-tuned on 4Q), where one RBF kernel on both had not helped.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from mer_live.stats import STAT_NAMES

C_GRID = (0.1, 1.0, 10.0, 100.0)
GAMMA_GRID = ("scale", 1e-3, 1e-2, 1e-1)
VIEW_C_GRID = tuple(np.logspace(-4, 1, 11))  # the view's logistic regression: strong to weak L2


class SongAggregator:
    """Maps (songs, features) statistics to (songs, tasks) probability of "high".

    The statistics' settings (theta, embedding) are the run's ``SongConfig``, which travels in the
    run directory and the bundle manifest; the aggregator only knows its tasks' order and, with a second view,
    which columns are the view's (``SongConfig.view_columns``) and its share."""

    view_columns = np.zeros(0, dtype=np.int64)  # class defaults: aggregators pickled before views had none
    view_weight = 0.0
    own_columns: np.ndarray | None = None  # what the SVM reads (None: every column)
    view_models: dict[str, Pipeline] = {}

    def __init__(self, tasks: list[str], seed: int = 0, inner_folds: int = 3,
                 view_columns: np.ndarray | None = None, view_weight: float = 0.0) -> None:
        self.tasks = list(tasks)
        self.seed = seed
        self.inner_folds = inner_folds
        self.models: dict[str, Pipeline] = {}
        self.best_params: dict[str, dict] = {}
        self.inner_accuracy: dict[str, float] = {}  # the chosen C and gamma's accuracy on the inner folds
        if view_weight and (view_columns is None or not len(view_columns)):
            raise ValueError("a view's share needs its columns")
        self.view_columns = np.zeros(0, np.int64) if view_columns is None else np.asarray(view_columns, np.int64)
        self.view_weight = float(view_weight)
        self.view_models = {}

    def fit(self, features: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None) -> SongAggregator:
        """``labels`` is (rows, tasks) of 0/1. ``groups`` names each row's song when a song has several rows
        (its recordings through the air): the inner folds that choose C and gamma then keep a song's rows
        together, so a recording is never scored against its own clean copy (which rewards memorising)."""
        if len(self.view_columns):  # the SVM reads the rest, also at a share of 0 (the same SVM as without a view)
            self.own_columns = np.setdiff1d(np.arange(features.shape[1]), self.view_columns)
        for t, task in enumerate(self.tasks):
            y = labels[:, t].astype(int)
            pipe = make_pipeline(StandardScaler(), SVC(kernel="rbf", probability=True, random_state=self.seed))
            folds = min(self.inner_folds, int(np.bincount(y, minlength=2).min()))
            if folds < 2:
                raise ValueError(f"aggregator: task {task} needs songs of both classes to fit")
            split = StratifiedKFold if groups is None else StratifiedGroupKFold
            inner = list(split(folds, shuffle=True, random_state=self.seed).split(features, y, groups))
            search = GridSearchCV(
                pipe,
                {"svc__C": list(C_GRID), "svc__gamma": list(GAMMA_GRID)},
                cv=inner,
                scoring="accuracy",
            )
            with warnings.catch_warnings():
                # SVC(probability=True) is deprecated from scikit-learn 1.9 (removal planned for 1.11); the
                # exported aggregator.onnx reproduces its Platt + pairwise-coupling output exactly.
                warnings.simplefilter("ignore", FutureWarning)
                search.fit(self._own(features), y)
            self.models[task] = search.best_estimator_
            self.best_params[task] = {k.removeprefix("svc__"): v for k, v in search.best_params_.items()}
            self.inner_accuracy[task] = float(search.best_score_)
            if self.view_weight:
                view = make_pipeline(StandardScaler(), LogisticRegressionCV(
                    Cs=list(VIEW_C_GRID), l1_ratios=(0.0,), cv=inner, scoring="accuracy", max_iter=5000,
                    use_legacy_attributes=False))
                view.fit(features[:, self.view_columns], y)
                self.best_params[task]["view_C"] = float(view[-1].C_)
                self.view_models[task] = _fitted_only(view)
        return self

    def without_view(self) -> SongAggregator:
        """The song SVM alone, reading the song vector of the network without the view: the view's columns
        removed, the rest in order (``own_columns``), so it gives what it gave at a share of 0."""
        plain = copy.copy(self)
        plain.view_columns, plain.view_weight, plain.view_models = np.zeros(0, np.int64), 0.0, {}
        plain.own_columns = None
        plain.best_params = {task: {key: value for key, value in params.items() if key != "view_C"}
                             for task, params in self.best_params.items()}
        return plain

    def _own(self, features: np.ndarray) -> np.ndarray:
        return features if self.own_columns is None else features[:, self.own_columns]

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        features = np.atleast_2d(features)
        svm = np.stack([self.models[task].predict_proba(self._own(features))[:, 1] for task in self.tasks], axis=1)
        if not self.view_weight:
            return svm
        view = np.stack([self.view_models[task].predict_proba(features[:, self.view_columns])[:, 1]
                         for task in self.tasks], axis=1)
        return (1 - self.view_weight) * svm + self.view_weight * view


def _fitted_only(view: Pipeline) -> Pipeline:
    """The chosen regression without LogisticRegressionCV's cross-validation path (half a megabyte per bundle):
    the same coefficients, so the same probabilities."""
    search = view[-1]
    plain = LogisticRegression(C=float(search.C_))
    plain.classes_, plain.coef_, plain.intercept_ = search.classes_, search.coef_, search.intercept_
    plain.n_features_in_, plain.n_iter_ = search.n_features_in_, np.atleast_1d(np.max(search.n_iter_))
    return make_pipeline(view[0], plain)


def mean_probabilities(features: np.ndarray, tasks: list[str]) -> np.ndarray:
    """The plain-mean baseline: each task's mean segment probability, read from the features."""
    mean_col = STAT_NAMES.index("mean")
    cols = [t * len(STAT_NAMES) + mean_col for t in range(len(tasks))]
    return np.atleast_2d(features)[:, cols]
