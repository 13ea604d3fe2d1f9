"""A live stream: blocks in, one update per segment out, all its state in one object.

``Stream`` owns everything a stream needs (resampler, incremental front end, segment windows,
running statistics, silence gate, the current song's segments), with ``reset`` to start over:
the shape of silero-vad's ``VADIterator``. It owns no threads and no I/O, so the file, microphone
and demo sources, the JSON-lines writer and the dashboard all share it, and tests drive it
directly with blocks of any size. ``Model.predict`` runs the same front end (``frames.FrameStream``)
over a whole file, so the stream's whole-song estimate is ``predict``'s.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from mer_live.audio.samples import StreamResampler
from mer_live.errors import MerLiveError
from mer_live.runtime.choices import MODES
from mer_live.runtime.frames import segment_windows
from mer_live.runtime.results import Meter, Song, SongEstimate, Update
from mer_live.runtime.running import RunningStatistics, SilenceGate, dbfs, rms
from mer_live.runtime.windower import Windower, Windows

if TYPE_CHECKING:
    from mer_live.runtime.stages import Stages


class FrameSegments:
    """Incremental segments: each log-mel frame computed once (``FrameStream``), windows cut from them."""

    def __init__(self, model: Stages, max_batch: int) -> None:
        self.model, self.config, self.max_batch = model, model.audio, max_batch
        self.frames = model.frames()
        self.emitted = 0  # windows completed (run, or skipped in silence)
        self._held = np.zeros((self.config.n_mels, 0), np.float32)  # log-mel from frame self._held_from on
        self._held_from = 0

    @property
    def provider(self) -> str:
        return self.model.provider

    @property
    def fed(self) -> int:
        return self.frames.n_samples

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Add samples; the start samples of the windows now complete."""
        self.frames.push(samples)
        complete = max(self.config.segments_in_frames(self.frames.available), self.emitted)
        starts = np.arange(self.emitted, complete, dtype=np.int64) * self.config.hop_samples
        self.emitted = complete
        return starts

    def outputs(self, starts: np.ndarray) -> np.ndarray:
        """(n, n_outputs) of the windows starting at ``starts`` (consecutive, in order)."""
        c = self.config
        first = int(starts[0]) // c.hop_samples
        parts = []
        for k in range(first, first + len(starts), self.max_batch):
            n = min(self.max_batch, first + len(starts) - k)
            new = self.frames.compute(c.segment_frames_span(k + n))
            frames = np.concatenate([self._held[:, k * c.hop_frames - self._held_from :], new], axis=1)
            parts.append(self.model.backbone(np.ascontiguousarray(segment_windows(frames, c))))
            self._held_from = (k + n) * c.hop_frames
            self._held = frames[:, n * c.hop_frames :]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def skip(self, starts: np.ndarray) -> None:
        """Silence: the windows are not run, and frames no later window needs are never computed."""
        c = self.config
        first_needed = (int(starts[-1]) // c.hop_samples + 1) * c.hop_frames  # the next window's first frame
        if self.frames.done <= first_needed:
            self.frames.skip(first_needed)
            self._held, self._held_from = self._held[:, :0], self.frames.done
        else:  # frames already computed for the next window stay
            self._held = self._held[:, first_needed - self._held_from :]
            self._held_from = first_needed


class WindowSegments:
    """The reference: ``segment.onnx`` (raw audio to outputs, one graph) on every window's audio."""

    def __init__(self, model: Stages, graph) -> None:
        self.graph = graph
        self.windower = Windower(model.audio)
        self._windows: Windows | None = None  # the windows the last push completed

    @property
    def provider(self) -> str:
        return self.graph.provider

    @property
    def fed(self) -> int:
        return self.windower.samples_seen

    @property
    def emitted(self) -> int:
        return self.windower.windows_emitted

    def push(self, samples: np.ndarray) -> np.ndarray:
        self._windows = self.windower.push(samples)
        return self._windows.starts

    def outputs(self, starts: np.ndarray) -> np.ndarray:
        return self.graph(self._windows.audio)

    def skip(self, starts: np.ndarray) -> None:
        pass


class Updates(list):
    """What one ``feed`` gives: an ``Update`` per segment it completed (iterate it), and ``song_end``, the
    ``Song`` that sustained silence ended meanwhile (None when none did), before those segments."""

    def __init__(self, updates: Iterable[Update] = (), song_end: Song | None = None) -> None:
        super().__init__(updates)
        self.song_end = song_end


class Stream:
    """Streams audio through a model and keeps the running song estimate.

    ``mode="incremental"`` computes every log-mel frame once and reuses it across overlapping
    segments; ``"full"`` runs the one-graph segment model (``segment.onnx``) on every window, the
    reference. ``horizon``: seconds of recent segments the running estimate reads (default: the clip
    length the aggregator was fit on). ``silence_reset``: sustained silence ends a song.
    """

    def __init__(self, model: Stages, horizon: float | None = None, silence_reset: bool = True,
                 silence_seconds: float = 3.0, mode: str = "incremental", max_batch: int = 16) -> None:
        if mode not in MODES:
            raise MerLiveError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        model = getattr(model, "stages", model)  # a Model, or its stages
        self.model = model
        self.config = model.audio
        self.tasks = model.tasks
        self.mode = mode
        self.max_batch = max_batch
        self.horizon = horizon if horizon is not None else model.song_config.horizon
        self.stats = RunningStatistics(len(self.tasks), self.config.horizon_segments(self.horizon),
                                       model.song_config.theta, model.embedding_dims)
        self.silence_seconds = silence_seconds if silence_reset else None
        self._reference = model.reference() if mode == "full" else None  # opened once, kept across resets
        self.reset()

    @property
    def provider(self) -> str:
        return self._segments.provider

    @property
    def segments_emitted(self) -> int:
        """Windows completed (run, or skipped in silence)."""
        return self._segments.emitted

    def reset(self) -> None:
        """Forget the stream: the next sample is sample 0 of a new one, and no songs are held."""
        self._segments = (WindowSegments(self.model, self._reference) if self._reference is not None
                          else FrameSegments(self.model, self.max_batch))
        self._resampler: StreamResampler | None = None
        self.n_samples = 0
        self.stats.reset()
        self.gate = None if self.silence_seconds is None else SilenceGate(self.config.sample_rate, self.silence_seconds)
        self.meter = Meter()
        self.latest: Update | None = None
        self.song_number = 1  # the current song's, from 1 (silence or ``new_song`` starts the next)
        self.songs: list[Song] = []  # finished songs, oldest first
        self._song_outputs: list[np.ndarray] = []  # every segment of the current song (2 floats a second)
        self._song_start = 0.0
        self._song: Song | None = None  # ``song``, computed on first read after a change

    @property
    def time(self) -> float:
        """Seconds of audio fed so far."""
        return self.config.seconds(self.n_samples)

    @property
    def song(self) -> Song | None:
        """The current song over all its segments so far (the horizon estimate reads its last part)."""
        if self._song is None and self._song_outputs and self.latest is not None:
            outputs = np.stack(self._song_outputs)
            probs = self.model.song_probs(self.model.bundle.song_vector(outputs))[0]
            self._song = Song(dict(zip(self.tasks, map(float, probs))), len(outputs), number=self.song_number,
                              start=self._song_start, end=self.latest.t)
        return self._song

    def new_song(self) -> Song | None:
        """End the current song (key `r`, or sustained silence) and start the next; the stream goes on.
        Returns the song that ended (None when it had no segment)."""
        song = self.end_song()
        self.stats.reset()
        self.latest = None
        self.song_number += 1
        return song

    def end_song(self) -> Song | None:
        """Close the current song: it joins ``songs`` (returned), and its segments are let go."""
        song = self.song
        if song is not None:
            self.songs.append(song)
        self._song_outputs = []
        self._song = None
        return song

    def feed(self, samples: np.ndarray, sr: int | None = None, arrival: float | None = None) -> Updates:
        """Add mono (or (frames, channels)) samples at ``sr`` (default: the model's rate); return an update
        for every segment they completed, and as ``song_end`` the song that silence ended meanwhile.
        ``arrival``: when they arrived (perf_counter), for latency."""
        arrival = time.perf_counter() if arrival is None else arrival
        samples = self._resample(samples, sr)
        if len(samples):
            self.meter.level_db = dbfs(rms(samples))
        song_end = None
        if self.gate is not None:
            if self.gate.push(samples) and len(self.stats):
                song_end = self.new_song()
            self.meter.silent = self.gate.silent
        self.n_samples += len(samples)
        return Updates(self._run(self._segments.push(samples), arrival), song_end)

    def finish(self) -> Updates:
        """End of stream: a stream shorter than one segment still gets one (zero-padded) segment. The song
        goes on (``end_song`` closes it)."""
        updates = Updates()
        if self._resampler is not None:  # the resampler's last samples
            tail = self._resampler(np.zeros(0, np.float32), last=True)
            self.n_samples += len(tail)
            updates += self._run(self._segments.push(tail), time.perf_counter())
        if self.segments_emitted or self.n_samples == 0:
            return updates
        padding = np.zeros(max(0, self.config.segment_samples - self._segments.fed), np.float32)
        updates += self._run(self._segments.push(padding), time.perf_counter())
        return updates

    # ---- internals

    def _resample(self, samples: np.ndarray, sr: int | None) -> np.ndarray:
        samples = np.asarray(samples, dtype=np.float32)
        if (sr is None or sr == self.config.sample_rate) and samples.ndim == 1:
            return samples
        if self._resampler is None or self._resampler.in_rate != (sr or self.config.sample_rate):
            self._resampler = StreamResampler(sr or self.config.sample_rate, self.config.sample_rate)
        return self._resampler(samples)

    def _run(self, starts: np.ndarray, arrival: float) -> list[Update]:
        if len(starts) == 0:
            return []
        if self.gate is not None and self.gate.silent:
            self._segments.skip(starts)
            return []
        begin = time.perf_counter()
        outputs = self._segments.outputs(starts)
        if not self._song_outputs:
            self._song_start = self.config.seconds(int(starts[0]))
        self._song_outputs.extend(np.array(outputs, dtype=np.float32))
        self._song = None
        n_before = len(self.stats)
        features = []
        for row in outputs:
            self.stats.push(row)
            features.append(self.stats.features())
        song = self.model.song_probs(np.stack(features))
        done = time.perf_counter()
        c = self.config
        updates = [
            Update(
                t=c.seconds(int(start) + c.segment_samples),
                start=c.seconds(int(start)),
                segment=dict(zip(self.tasks, map(float, outputs[i]))),
                song=SongEstimate(dict(zip(self.tasks, map(float, song[i]))),
                                  min(self.stats.capacity, n_before + i + 1)),
                latency_ms=(done - arrival) * 1e3,
                compute_ms=(done - begin) * 1e3,
                song_number=self.song_number,
            )
            for i, start in enumerate(starts)
        ]
        self.meter.latencies.append(updates[-1].latency_ms)
        self.meter.computes.append(updates[-1].compute_ms)
        self.latest = updates[-1]
        return updates
