"""Running song statistics over the last N segments, and the silence that ends a song.

Each task keeps its segment probabilities in a sorted list (bisect insort on arrival, remove on
eviction), so an update costs O(N) memory moves instead of a sort, and the feature vector comes
from ``stats.statistics_from_sorted``: the very function training used, hence identical values.
"""

from __future__ import annotations

import bisect
import math
from collections import deque

import numpy as np

from mer_live.stats import DEFAULT_THETA, embedding_statistics, statistics_from_sorted


class RunningStatistics:
    """Per-task sorted probabilities of the last ``capacity`` segments, and their embeddings when the
    aggregator also reads the embedding's mean and std (``embedding_dims`` > 0)."""

    def __init__(self, n_tasks: int, capacity: int, theta: float = DEFAULT_THETA, embedding_dims: int = 0) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least one segment")
        self.n_tasks = n_tasks
        self.capacity = capacity
        self.theta = theta
        self.embedding_dims = embedding_dims
        self.reset()

    def reset(self) -> None:
        """Start a new song."""
        self._recent: deque[tuple[float, ...]] = deque()
        self._sorted: list[list[float]] = [[] for _ in range(self.n_tasks)]
        self._embeddings: deque[np.ndarray] = deque()

    def __len__(self) -> int:
        return len(self._recent)

    def push(self, probs: np.ndarray) -> None:
        """Add one segment's (n_tasks [+ embedding_dims],) outputs, evicting the oldest beyond capacity."""
        values = np.asarray(probs).reshape(-1)
        if len(values) != self.n_tasks + self.embedding_dims:
            raise ValueError(f"expected {self.n_tasks} probabilities and {self.embedding_dims} embedding values, "
                             f"got {len(values)}")
        row = tuple(float(p) for p in values[: self.n_tasks])
        if self.embedding_dims:
            self._embeddings.append(values[self.n_tasks :].astype(np.float64))
            if len(self._embeddings) > self.capacity:
                self._embeddings.popleft()
        self._recent.append(row)
        for column, p in zip(self._sorted, row):
            bisect.insort(column, p)
        if len(self._recent) > self.capacity:
            old = self._recent.popleft()
            for column, p in zip(self._sorted, old):
                del column[bisect.bisect_left(column, p)]

    def features(self) -> np.ndarray:
        """The song feature vector of the segments held (as ``stats.segment_statistics``)."""
        stats = statistics_from_sorted([np.array(column) for column in self._sorted], self.theta)
        if not self.embedding_dims:
            return stats
        return np.concatenate([stats, embedding_statistics(np.stack(self._embeddings))])


class SilenceGate:
    """Tells when the input has stayed below ``threshold`` RMS for ``seconds``: a song ended."""

    def __init__(self, sample_rate: int, seconds: float = 3.0, threshold_db: float = -60.0) -> None:
        self.limit = round(seconds * sample_rate)
        self.threshold = 10 ** (threshold_db / 20)
        self.quiet_samples = 0
        self.fired = False

    def push(self, block: np.ndarray) -> bool:
        """Feed a block; True exactly once when the silence becomes sustained."""
        if len(block) == 0:
            return False
        if rms(block) >= self.threshold:
            self.quiet_samples = 0
            self.fired = False
            return False
        self.quiet_samples += len(block)
        if self.quiet_samples >= self.limit and not self.fired:
            self.fired = True
            return True
        return False

    @property
    def silent(self) -> bool:
        return self.fired


def rms(block: np.ndarray) -> float:
    return math.sqrt(float(np.dot(block, block)) / len(block)) if len(block) else 0.0


def dbfs(value: float) -> float:
    return 20 * math.log10(max(value, 1e-10))
