"""What mer-live answers: one song estimate (``SongEstimate``) for a whole file (``SongResult``), for a
stream's song (``Song``) and after every segment of a stream (``Update.song``).

Probabilities are P(high) on 0-1 per task; a task reads "high" at 0.5 and up; the quadrant is
Russell's (``stats.quadrant``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from mer_live.deprecation import deprecated
from mer_live.stats import QUADRANTS, quadrant

LATENCY_HISTORY = 1000


def high_low(p: float) -> str:
    """P(high) >= 0.5 reads as high."""
    return "high" if p >= 0.5 else "low"


@dataclass(frozen=True)
class SongEstimate:
    """A song-level estimate: P(high) per task (valence and arousal among them) from ``n_segments`` segments."""

    probs: Mapping[str, float]
    n_segments: int

    @property
    def valence(self) -> float:
        return self.probs["valence"]

    @property
    def arousal(self) -> float:
        return self.probs["arousal"]

    @property
    def labels(self) -> dict[str, str]:
        """``high`` or ``low`` per task."""
        return {task: high_low(p) for task, p in self.probs.items()}

    @property
    def quadrant(self) -> str:
        return quadrant(self.valence >= 0.5, self.arousal >= 0.5)

    @property
    def quadrant_name(self) -> str:
        return QUADRANTS[self.quadrant]

    def describe(self) -> str:
        """'valence 0.62 (high), arousal 0.31 (low), Q4 calm/relaxed'."""
        return (f"valence {self.valence:.2f} ({high_low(self.valence)}), arousal {self.arousal:.2f} "
                f"({high_low(self.arousal)}), {self.quadrant} {self.quadrant_name}")

    def __getitem__(self, task: str) -> float:
        deprecated("estimate[task] (the old song dict)", "estimate.valence, .arousal or .probs[task]")
        return self.probs[task]


@dataclass(frozen=True)
class SongResult(SongEstimate):
    """One file or array, as a whole: the song estimate and its segments' timeline.

    ``segments`` is (n, n_tasks) segment P(high) in ``tasks`` order; ``starts`` the segments' first
    seconds. A file that could not be labeled has ``error`` set (one line: why, and the fix), no
    estimate and no segments; ``messages`` are what the C decoders printed about it.
    """

    path: str | None
    duration: float
    tasks: tuple[str, ...]
    segments: np.ndarray
    starts: np.ndarray
    error: str = ""
    messages: tuple[str, ...] = ()

    @classmethod
    def failed(cls, path: str | None, error: str, tasks: tuple[str, ...], messages: tuple[str, ...] = ()
               ) -> SongResult:
        empty = np.zeros((0, len(tasks)), np.float32)
        return cls({}, 0, path, 0.0, tuple(tasks), empty, np.zeros(0), error, tuple(messages))

    @property
    def ok(self) -> bool:
        return not self.error

    def timeline(self, task: str) -> np.ndarray:
        """One task's segment P(high), in time order (their first seconds: ``starts``)."""
        return self.segments[:, self.tasks.index(task)]

    def segment(self, task: str) -> np.ndarray:
        deprecated("SongResult.segment(task)", "SongResult.timeline(task)")
        return self.timeline(task)

    @property
    def song(self) -> dict[str, float]:
        deprecated("SongResult.song", "the result itself (.valence, .arousal, .probs)")
        return dict(self.probs)

    def plot(self, out=None, *, audio: np.ndarray | None = None, sr: int | None = None):
        """The song picture (``mer_live.plot``; needs matplotlib, the plot extra): segment valence and
        arousal with the song estimate, the quadrant band, and the loudness (from ``audio`` at ``sr``, else
        from the file). Returns the matplotlib figure, or writes it to ``out`` (.png, .svg, .pdf) and
        returns that path."""
        from mer_live import plot

        fig = plot.figure(plot.result_picture(self, audio=audio, sr=sr))
        return fig if out is None else plot.save(fig, out)


@dataclass(frozen=True)
class Update:
    """One segment's P(high) per task and the stream's song estimate after it."""

    t: float  # seconds of audio at the segment's end
    start: float  # seconds of audio at the segment's start
    segment: dict[str, float]
    song: SongEstimate  # over the stream's horizon: its last segments
    latency_ms: float  # from the arrival of the segment's last samples to this result
    compute_ms: float
    song_number: int = 1  # which song of the stream (silence or `r` starts the next)

    @property
    def quadrant(self) -> str:
        deprecated("Update.quadrant", "Update.song.quadrant")
        return self.song.quadrant

    @property
    def segments(self) -> int:
        deprecated("Update.segments", "Update.song.n_segments")
        return self.song.n_segments

    def to_json(self) -> dict:
        estimate = self.song
        song: dict = {k: round(v, 6) for k, v in estimate.probs.items()}
        song.update((f"{task}_label", label) for task, label in estimate.labels.items())
        song.update(quadrant=estimate.quadrant, quadrant_name=estimate.quadrant_name, segments=estimate.n_segments)
        return {
            "event": "segment",
            "song_number": self.song_number,
            "t": round(self.t, 3),
            "segment": {k: round(v, 6) for k, v in self.segment.items()},
            "song": song,
            "latency_ms": round(self.latency_ms, 3),
        }


@dataclass(frozen=True)
class Song(SongEstimate):
    """A song of a stream as a whole, from all its segments: the number ``predict`` gives the same audio."""

    number: int
    start: float  # seconds of audio at its first segment's start
    end: float  # seconds of audio at its last segment's end

    @property
    def segments(self) -> int:
        deprecated("Song.segments", "Song.n_segments")
        return self.n_segments

    @property
    def song(self) -> dict[str, float]:
        deprecated("Song.song", "the song itself (.valence, .arousal, .probs)")
        return dict(self.probs)

    def to_json(self) -> dict:
        out: dict = {"event": "song_end", "song_number": self.number, "start": round(self.start, 3),
                     "end": round(self.end, 3), "segments": self.n_segments}
        labels = self.labels
        for task, p in self.probs.items():
            out[task] = round(p, 6)
            out[f"{task}_label"] = labels[task]
        out.update(quadrant=self.quadrant, quadrant_name=self.quadrant_name)
        return out

    def describe(self) -> str:
        return (f"song #{self.number} {self.start:.1f}-{self.end:.1f} s ({self.n_segments} segments): "
                f"{super().describe()}")


@dataclass
class Meter:
    """Input level of the latest block and counters the dashboard shows."""

    level_db: float = -120.0
    silent: bool = False
    latencies: deque = field(default_factory=lambda: deque(maxlen=LATENCY_HISTORY))
    computes: deque = field(default_factory=lambda: deque(maxlen=LATENCY_HISTORY))

    def percentile(self, q: float, values: deque | None = None) -> float | None:
        values = self.latencies if values is None else values
        return float(np.percentile(values, q)) if values else None
