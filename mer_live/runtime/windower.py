"""Overlapping segment windows from a stream of audio blocks of any size.

The windower is the streaming twin of ``AudioConfig.segment_starts``/``audio.samples.cut_segments``: fed a clip in
blocks of any sizes it emits exactly the offline segments, in order, with their start samples.
State is explicit (buffer, samples seen, next window start) and the buffer holds exactly one
segment; each sample is copied once in and once per window out, with no per-sample Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mer_live.config import AudioConfig


@dataclass(frozen=True)
class Windows:
    """A batch of windows: ``audio`` is (n, segment_samples) float32, ``starts`` their first samples."""

    audio: np.ndarray
    starts: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)


class Windower:
    """Cuts segment_samples-long windows every hop_samples from mono float32 blocks."""

    def __init__(self, config: AudioConfig) -> None:
        self.config = config
        self.size = config.segment_samples
        self.hop = config.hop_samples
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next sample is sample 0 of a new stream."""
        self._buffer = np.zeros(self.size, dtype=np.float32)  # samples from next_start on
        self._filled = 0
        self.samples_seen = 0
        self.next_start = 0  # stream index of the next window's first sample (= _buffer[0])
        self.windows_emitted = 0

    def push(self, block: np.ndarray) -> Windows:
        """Add a block; return the windows it completed (possibly none)."""
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        windows, starts = [], []
        pos = 0
        while pos < len(block):
            take = min(len(block) - pos, self.size - self._filled)
            self._buffer[self._filled : self._filled + take] = block[pos : pos + take]
            self._filled += take
            pos += take
            if self._filled == self.size:
                windows.append(self._buffer.copy())
                starts.append(self.next_start)
                self._buffer[: self.size - self.hop] = self._buffer[self.hop :]
                self._filled -= self.hop
                self.next_start += self.hop
        self.samples_seen += len(block)
        self.windows_emitted += len(starts)
        return self._windows(windows, starts)

    def _windows(self, windows: list[np.ndarray], starts: list[int]) -> Windows:
        audio = np.stack(windows) if windows else np.empty((0, self.size), dtype=np.float32)
        return Windows(audio, np.asarray(starts, dtype=np.int64))
