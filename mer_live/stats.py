"""Song-level statistics of segment probabilities, shared by training and the live runtime.

SSSL's second stage describes a song by the distribution of its segments' probabilities
(after Han, Yu and Tashev 2014): per task max, min, mean, quartiles and the share of segments
above theta. This module is the only place those numbers are computed.
"""

from __future__ import annotations

import numpy as np

STAT_NAMES = ("max", "min", "mean", "p25", "p50", "p75", "share_above")
DEFAULT_THETA = 0.5
QUADRANTS = {
    "Q1": "happy/excited",
    "Q2": "angry/tense",
    "Q3": "sad/depressed",
    "Q4": "calm/relaxed",
}


def feature_names(tasks: tuple[str, ...] | list[str], embedding_dims: int = 0) -> list[str]:
    """Names of the song vector's entries, in order (``song_vector``)."""
    names = [f"{task}_{stat}" for task in tasks for stat in STAT_NAMES]
    return names + [f"embedding_{kind}_{i}" for kind in ("mean", "std") for i in range(embedding_dims)]


def _task_statistics(sorted_probs: np.ndarray, theta: float) -> list[float]:
    """Statistics of one task from its probabilities sorted ascending (linear quartiles)."""
    n = len(sorted_probs)
    quartiles = np.interp([0.25 * (n - 1), 0.5 * (n - 1), 0.75 * (n - 1)], np.arange(n), sorted_probs)
    above = n - np.searchsorted(sorted_probs, theta, side="right")
    return [sorted_probs[-1], sorted_probs[0], sorted_probs.mean(), *quartiles, above / n]


def statistics_from_sorted(sorted_columns: list[np.ndarray], theta: float = DEFAULT_THETA) -> np.ndarray:
    """Feature vector from per-task probabilities already sorted ascending.

    The live runtime keeps each task's window sorted as segments arrive and leave, and calls
    this directly; ``segment_statistics`` sorts and calls it too, so both paths agree exactly.
    """
    if not sorted_columns or any(len(col) == 0 for col in sorted_columns):
        raise ValueError("segment statistics need at least one segment")
    return np.array([v for col in sorted_columns for v in _task_statistics(np.asarray(col), theta)],
                    dtype=np.float64)


def segment_statistics(probs: np.ndarray, theta: float = DEFAULT_THETA) -> np.ndarray:
    """(n_segments, n_tasks) probabilities of "high" -> (n_tasks * 7,) song feature vector."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"expected (segments, tasks) probabilities, got shape {probs.shape}")
    return statistics_from_sorted([np.sort(probs[:, t]) for t in range(probs.shape[1])], theta)


def embedding_statistics(embeddings: np.ndarray) -> np.ndarray:
    """(n_segments, dims) segment embeddings -> (2 * dims,) their mean then standard deviation."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    return np.concatenate([embeddings.mean(axis=0), embeddings.std(axis=0)])


def song_vector(probs: np.ndarray, embeddings: np.ndarray | None, theta: float = DEFAULT_THETA) -> np.ndarray:
    """The aggregator's input for one song: probability statistics, then embedding statistics if any."""
    stats = segment_statistics(probs, theta)
    return stats if embeddings is None else np.concatenate([stats, embedding_statistics(embeddings)])


def quadrant(valence_high: bool, arousal_high: bool) -> str:
    """Russell quadrant: Q1 +V+A, Q2 -V+A, Q3 -V-A, Q4 +V-A."""
    if arousal_high:
        return "Q1" if valence_high else "Q2"
    return "Q4" if valence_high else "Q3"
