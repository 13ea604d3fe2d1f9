"""The one incremental front end: log-mel frames of a stream, each computed once.

Framing is uncentered and hop-aligned (frame j covers samples [j * hop, j * hop + n_fft)), so a
segment's log-mel is a slice of its stream's log-mel: window k is frames
[k * hop_frames, k * hop_frames + segment_frames). ``FrameStream`` holds only the audio that frames
still to come need, and runs ``frontend.onnx`` on it when asked for frames up to some index. Live
streams ask for each window's frames as it completes; whole clips ask in long runs. Both paths are
this class, so they cannot drift apart.

Every run covers at least ``min_run`` frames (recomputing frames before the new ones if need be):
a CPU kernel may pick another summation order for short inputs (MLAS did below ~66 frames here),
shifting near-floor log-mel bins by ~1e-4. ``calibrate_min_run`` finds the shortest run whose
frames equal a whole window's bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from mer_live.config import AudioConfig

CHUNK_FRAMES = 256  # frames per front-end run over a whole clip (about 6 s at 22050 Hz / 512, 2.6 s at 32 kHz / 320)

Frontend = Callable[[np.ndarray], np.ndarray]  # (1, samples) audio -> (1, n_mels, frames)


class FrameStream:
    """Log-mel frames from audio fed in blocks of any size."""

    def __init__(self, frontend: Frontend, config: AudioConfig, min_run: int) -> None:
        self.frontend = frontend
        self.config = config
        self.min_run = max(1, min_run)
        self.reset()

    def reset(self) -> None:
        self.n_samples = 0  # fed so far
        self.done = 0  # frames before this index are computed (or skipped)
        self._audio: list[np.ndarray] = []  # held audio, from sample self._offset on
        self._offset = 0

    def push(self, samples: np.ndarray) -> None:
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        self._audio.append(samples)
        self.n_samples += len(samples)

    @property
    def available(self) -> int:
        """Frames whose audio has all arrived."""
        c = self.config
        return 0 if self.n_samples < c.n_fft else 1 + (self.n_samples - c.n_fft) // c.hop_length

    def compute(self, until: int) -> np.ndarray:
        """(n_mels, until - done) log-mel of frames [done, until); the run starts early enough to be
        at least ``min_run`` frames long (the stream's first frames excepted)."""
        c = self.config
        if until > self.available:
            raise ValueError(f"frame {until - 1} needs audio that has not arrived")
        if until <= self.done:
            return np.zeros((c.n_mels, 0), np.float32)
        first = max(0, min(self.done, until - self.min_run))
        audio = self._take(first * c.hop_length, c.frames_samples(until - first))
        frames = self.frontend(audio[None])[0][:, self.done - first :]
        self._advance(until)
        return frames

    def skip(self, until: int) -> None:
        """Frames before ``until`` are not needed (silence): drop their audio without computing them."""
        if until > self.done:
            self._advance(min(until, self.available))

    def _advance(self, done: int) -> None:
        """Frames before ``done`` are finished: keep only the audio of ``min_run`` frames before it on."""
        self.done = done
        keep_from = max(0, done - self.min_run) * self.config.hop_length
        drop = keep_from - self._offset
        if drop > 0:
            audio = np.concatenate(self._audio) if len(self._audio) > 1 else self._audio[0]
            self._audio = [audio[drop:]]
            self._offset = keep_from

    def _take(self, start: int, length: int) -> np.ndarray:
        if len(self._audio) > 1:
            self._audio = [np.concatenate(self._audio)]
        return self._audio[0][start - self._offset : start - self._offset + length]


def calibrate_min_run(frontend: Frontend, config: AudioConfig) -> int:
    """Fewest frames per run whose last hop_frames equal the whole window's bit for bit."""
    c = config
    rng = np.random.default_rng(0)
    t = np.arange(c.segment_samples) / c.sample_rate
    window = (0.3 * np.sin(2 * np.pi * 440 * t) + 1e-3 * rng.standard_normal(len(t))).astype(np.float32)[None]
    reference = frontend(window)[0, :, -c.hop_frames :]
    step = max(1, c.hop_frames // 8)
    for frames in range(c.hop_frames, c.segment_frames, step):
        if np.array_equal(frontend(window[:, -c.frames_samples(frames) :])[0, :, -c.hop_frames :], reference):
            return frames
    return c.segment_frames


def clip_frames(frames: FrameStream, blocks: Iterable[np.ndarray], expected_samples: int = 0
                ) -> tuple[np.ndarray, int]:
    """(n_mels, frames) log-mel of every frame a whole clip's segments use, from its audio blocks, and
    the clip's length in samples.

    A clip shorter than one segment is zero-padded to one, as ``audio.samples.cut_segments`` does. Frames go
    into one array sized for ``expected_samples`` (a header's count) and grown if need be; only the
    audio of frames still to come is held, never the clip.
    """
    c = frames.config
    out = np.empty((c.n_mels, expected_samples // c.hop_length + CHUNK_FRAMES), np.float32)

    def store(new: np.ndarray, at: int) -> np.ndarray:
        nonlocal out
        end = at + new.shape[1]
        if end > out.shape[1]:  # the header undercounted (or gave nothing): grow
            grown = np.empty((c.n_mels, max(end, 2 * out.shape[1])), np.float32)
            grown[:, :at] = out[:, :at]
            out = grown
        out[:, at:end] = new
        return out

    for block in blocks:
        frames.push(block)
        while frames.available - frames.done >= CHUNK_FRAMES:
            at = frames.done
            store(frames.compute(at + CHUNK_FRAMES), at)
    n_samples = frames.n_samples
    if n_samples < c.segment_samples:
        frames.push(np.zeros(c.segment_samples - n_samples, np.float32))
    n_frames = c.segment_frames_span(c.n_segments(max(n_samples, c.segment_samples)))
    at = frames.done
    store(frames.compute(n_frames), at)
    return out[:, :n_frames], n_samples


def segment_windows(logmel: np.ndarray, config: AudioConfig) -> np.ndarray:
    """(n_segments, n_mels, segment_frames) view of a clip's segments in its log-mel (no copy)."""
    c = config
    n_segments = c.segments_in_frames(logmel.shape[1])
    view = np.lib.stride_tricks.sliding_window_view(logmel, c.segment_frames, axis=1)[:, :: c.hop_frames]
    return view[:, :n_segments].transpose(1, 0, 2)


def segment_outputs(backbone: Callable[[np.ndarray], np.ndarray], logmel: np.ndarray, config: AudioConfig,
                    batch: int = 16) -> np.ndarray:
    """(n_segments, n_outputs) segment probabilities (and embeddings) from a clip's log-mel, ``batch``
    segments per run (a larger batch only grows ORT's arena)."""
    segments = segment_windows(logmel, config)
    parts = [backbone(np.ascontiguousarray(segments[i : i + batch])) for i in range(0, len(segments), batch)]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
