"""The live pipeline: blocks in, one update per segment out.

blocks -> Windower -> Engine (incremental front end, batched) -> RunningStatistics ->
aggregator. Owns no threads and no I/O, so the file, microphone and demo sources, the JSONL
writer and the dashboard all share it, and tests drive it directly with blocks of any size.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from mer_live.realtime.engine import Engine
from mer_live.realtime.running import RunningStatistics, SilenceGate, dbfs, rms
from mer_live.realtime.sources import Block
from mer_live.realtime.windower import Windower, Windows
from mer_live.stats import QUADRANTS, quadrant

LATENCY_HISTORY = 1000


def label(p: float) -> str:
    """P(high) >= 0.5 reads as high."""
    return "high" if p >= 0.5 else "low"


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
        return quadrant(self.song["valence"] >= 0.5, self.song["arousal"] >= 0.5)

    def to_json(self) -> dict:
        song: dict = {k: round(v, 6) for k, v in self.song.items()}
        for task in self.song:
            song[f"{task}_label"] = label(self.song[task])
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
    """A song as a whole, from all its segments: the number `mer-live label` gives the same audio."""

    number: int
    start: float  # seconds of audio at its first segment's start
    end: float  # seconds of audio at its last segment's end
    segments: int
    song: dict[str, float]

    @property
    def quadrant(self) -> str:
        return quadrant(self.song["valence"] >= 0.5, self.song["arousal"] >= 0.5)

    def to_json(self) -> dict:
        out: dict = {"event": "song_end", "song_number": self.number, "start": round(self.start, 3),
                     "end": round(self.end, 3), "segments": self.segments}
        for task, p in self.song.items():
            out[task] = round(p, 6)
            out[f"{task}_label"] = label(p)
        out.update(quadrant=self.quadrant, quadrant_name=QUADRANTS[self.quadrant])
        return out

    def describe(self) -> str:
        v, a = self.song["valence"], self.song["arousal"]
        return (f"song #{self.number} {self.start:.1f}-{self.end:.1f} s ({self.segments} segments): valence {v:.2f} "
                f"({label(v)}), arousal {a:.2f} ({label(a)}), {self.quadrant} {QUADRANTS[self.quadrant]}")


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


class Pipeline:
    """Streams audio through the engine and keeps the running song estimate."""

    def __init__(self, engine: Engine, horizon: float | None = None, silence_reset: bool = True,
                 silence_seconds: float = 3.0) -> None:
        self.engine = engine
        self.config = engine.config
        self.tasks = engine.bundle.tasks
        for task in ("valence", "arousal"):
            if task not in self.tasks:
                raise ValueError(f"bundle tasks {self.tasks} lack {task}")
        self.horizon = horizon if horizon is not None else engine.bundle.song.horizon
        self.windower = Windower(self.config)
        self.stats = RunningStatistics(len(self.tasks), self.config.horizon_segments(self.horizon),
                                       engine.bundle.song.theta, engine.bundle.embedding_dims)
        self.gate = SilenceGate(self.config.sample_rate, silence_seconds) if silence_reset else None
        self.meter = Meter()
        self.latest: Update | None = None
        self.songs: list[Song] = []  # finished songs, oldest first
        self._song_probs: list[np.ndarray] = []  # every segment of the current song (2 floats a second)
        self._song_start = 0.0

    def new_song(self) -> None:
        """End the current song (key `r`, or sustained silence) and start the next; the stream goes on."""
        self.end_song()
        self.stats.reset()
        self.latest = None
        self.meter.songs += 1

    def current_song(self) -> Song | None:
        """The current song over all its segments so far (the horizon estimate looks at its last part)."""
        if not self._song_probs or self.latest is None:
            return None
        probs = np.stack(self._song_probs)
        song = self.engine.song_probs(self.engine.bundle.song_vector(probs))[0]
        return Song(self.meter.songs, self._song_start, self.latest.t, len(probs),
                    dict(zip(self.tasks, map(float, song))))

    def end_song(self) -> Song | None:
        """Close the current song: it joins ``songs`` (returned), and its segments are let go."""
        song = self.current_song()
        if song is not None:
            self.songs.append(song)
        self._song_probs = []
        return song

    def feed(self, block: Block) -> list[Update]:
        """Add a block; return an update for every segment it completed."""
        samples = block.samples
        if len(samples):
            self.meter.level_db = dbfs(rms(samples))
        if self.gate is not None:
            if self.gate.push(samples) and len(self.stats):
                self.new_song()
            self.meter.silent = self.gate.silent
        return self._run(self.windower.push(samples), block.arrival)

    def finish(self) -> list[Update]:
        """End of stream: a stream shorter than one segment still gets one (zero-padded) segment."""
        return self._run(self.windower.flush(), time.perf_counter())

    def _run(self, windows: Windows, arrival: float) -> list[Update]:
        if len(windows) == 0 or (self.gate is not None and self.gate.silent):
            return []
        begin = time.perf_counter()
        probs = self.engine.process(windows)
        if not self._song_probs:
            self._song_start = int(windows.starts[0]) / self.config.sample_rate
        self._song_probs.extend(np.array(probs, dtype=np.float32))
        n_before = len(self.stats)
        features = []
        for row in probs:
            self.stats.push(row)
            features.append(self.stats.features())
        song = self.engine.song_probs(np.stack(features))
        done = time.perf_counter()
        sr = self.config.sample_rate
        updates = []
        for i, start in enumerate(windows.starts):
            update = Update(
                t=(int(start) + self.config.segment_samples) / sr,
                start=int(start) / sr,
                segment=dict(zip(self.tasks, map(float, probs[i]))),
                song=dict(zip(self.tasks, map(float, song[i]))),
                segments=min(self.stats.capacity, n_before + i + 1),
                latency_ms=(done - arrival) * 1e3,
                compute_ms=(done - begin) * 1e3,
                song_number=self.meter.songs,
            )
            updates.append(update)
        self.meter.latencies.append(updates[-1].latency_ms)
        self.meter.computes.append(updates[-1].compute_ms)
        self.latest = updates[-1]
        return updates
