"""What mer-live answers: a whole song (``SongResult``), and per segment while streaming (``Update``).

Probabilities are P(high) on 0-1 per task; a task reads "high" at 0.5 and up; the quadrant is
Russell's (``stats.quadrant``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from mer_live.stats import QUADRANTS, quadrant

LATENCY_HISTORY = 1000


def high_low(p: float) -> str:
    """P(high) >= 0.5 reads as high."""
    return "high" if p >= 0.5 else "low"


def _quadrant(song: dict[str, float]) -> str:
    return quadrant(song["valence"] >= 0.5, song["arousal"] >= 0.5)


@dataclass(frozen=True)
class SongResult:
    """One file or array, as a whole: the song estimate and its segments' timeline.

    ``segments`` is (n, n_tasks) segment P(high) in ``tasks`` order; ``starts`` the segments' first
    seconds. A file that could not be labeled has ``error`` set (one line: why, and the fix) and no
    segments; ``messages`` are what the C decoders printed about it.
    """

    path: str | None
    duration: float
    tasks: tuple[str, ...]
    song: dict[str, float]
    segments: np.ndarray
    starts: np.ndarray
    error: str = ""
    messages: tuple[str, ...] = ()

    @classmethod
    def failed(cls, path: str | None, error: str, tasks: tuple[str, ...], messages: tuple[str, ...] = ()
               ) -> SongResult:
        empty = np.zeros((0, len(tasks)), np.float32)
        return cls(path, 0.0, tuple(tasks), {}, empty, np.zeros(0), error, tuple(messages))

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def valence(self) -> float:
        return self.song["valence"]

    @property
    def arousal(self) -> float:
        return self.song["arousal"]

    @property
    def quadrant(self) -> str:
        return _quadrant(self.song)

    @property
    def quadrant_name(self) -> str:
        return QUADRANTS[self.quadrant]

    def segment(self, task: str) -> np.ndarray:
        """One task's segment P(high), in time order."""
        return self.segments[:, self.tasks.index(task)]

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
    """One segment's result and the song estimate after it; probabilities are P(high) in 0-1."""

    t: float  # seconds of audio at the segment's end
    start: float  # seconds of audio at the segment's start
    segment: dict[str, float]
    song: dict[str, float]
    segments: int  # segments the song estimate is based on
    latency_ms: float  # from the arrival of the segment's last samples to this result
    compute_ms: float
    song_number: int = 1  # which song of the stream (silence or `r` starts the next)

    @property
    def quadrant(self) -> str:
        return _quadrant(self.song)

    def to_json(self) -> dict:
        song: dict = {k: round(v, 6) for k, v in self.song.items()}
        for task in self.song:
            song[f"{task}_label"] = high_low(self.song[task])
        song.update(quadrant=self.quadrant, quadrant_name=QUADRANTS[self.quadrant], segments=self.segments)
        return {
            "event": "segment",
            "song_number": self.song_number,
            "t": round(self.t, 3),
            "segment": {k: round(v, 6) for k, v in self.segment.items()},
            "song": song,
            "latency_ms": round(self.latency_ms, 3),
        }


@dataclass(frozen=True)
class Song:
    """A song of a stream as a whole, from all its segments: the number ``predict`` gives the same audio."""

    number: int
    start: float  # seconds of audio at its first segment's start
    end: float  # seconds of audio at its last segment's end
    segments: int
    song: dict[str, float]

    @property
    def quadrant(self) -> str:
        return _quadrant(self.song)

    def to_json(self) -> dict:
        out: dict = {"event": "song_end", "song_number": self.number, "start": round(self.start, 3),
                     "end": round(self.end, 3), "segments": self.segments}
        for task, p in self.song.items():
            out[task] = round(p, 6)
            out[f"{task}_label"] = high_low(p)
        out.update(quadrant=self.quadrant, quadrant_name=QUADRANTS[self.quadrant])
        return out

    def describe(self) -> str:
        v, a = self.song["valence"], self.song["arousal"]
        return (f"song #{self.number} {self.start:.1f}-{self.end:.1f} s ({self.segments} segments): valence {v:.2f} "
                f"({high_low(v)}), arousal {a:.2f} ({high_low(a)}), {self.quadrant} {QUADRANTS[self.quadrant]}")


@dataclass
class Meter:
    """Input level of the latest block and counters the dashboard shows."""

    level_db: float = -120.0
    silent: bool = False
    songs: int = 1
    latencies: deque = field(default_factory=lambda: deque(maxlen=LATENCY_HISTORY))
    computes: deque = field(default_factory=lambda: deque(maxlen=LATENCY_HISTORY))

    def percentile(self, q: float, values: deque | None = None) -> float | None:
        values = self.latencies if values is None else values
        return float(np.percentile(values, q)) if values else None
