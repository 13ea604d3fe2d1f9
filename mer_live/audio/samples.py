"""Samples in, samples out: downmix, clean, resample as one stream, and cut a clip into segments.

``StreamResampler`` is the one streaming resampler: file decoding, ``predict(array)``, live streams
and the microphone all run it, so a clip fed in any blocks resamples the same way.
"""

from __future__ import annotations

import numpy as np
import soxr

from mer_live.config import AudioConfig


def to_mono(block: np.ndarray) -> np.ndarray:
    """Average channels; ``block`` is (frames,) or (frames, channels). float32, C-contiguous."""
    if block.ndim == 2:
        channels = block.shape[1]
        if channels == 1:
            block = block[:, 0]
        elif channels == 2:  # a matrix product or mean over axis 1 is several times slower for stereo
            block = (block[:, 0] + block[:, 1]) * np.float32(0.5)
        else:
            block = block @ np.full(channels, 1 / channels, np.float32)
    return np.ascontiguousarray(block, dtype=np.float32)


def sanitize(samples: np.ndarray) -> np.ndarray:
    """Replace NaN and infinities by zeros and clip to [-1, 1]: float files may hold either."""
    if not np.isfinite(samples).all():
        samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(samples, -1.0, 1.0, out=samples)


class StreamResampler:
    """Any rate and channel count -> mono float32 at ``out_rate``, one soxr stream across blocks."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate, self.out_rate = int(in_rate), int(out_rate)
        self._stream = None if self.in_rate == self.out_rate else soxr.ResampleStream(
            self.in_rate, self.out_rate, 1, dtype="float32", quality="HQ")

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        mono = sanitize(to_mono(block))
        return mono if self._stream is None else self._stream.resample_chunk(mono, last=last)


def pad_to_segment(samples: np.ndarray, config: AudioConfig) -> np.ndarray:
    """Zero-pad a clip shorter than one segment to exactly one segment."""
    short = config.segment_samples - len(samples)
    if short <= 0:
        return samples
    return np.concatenate([samples, np.zeros(short, dtype=samples.dtype)])


def cut_segments(samples: np.ndarray, config: AudioConfig) -> np.ndarray:
    """All segments of a clip as a (n_segments, segment_samples) float32 array."""
    samples = pad_to_segment(samples, config)
    starts = config.segment_starts(len(samples))
    out = np.empty((len(starts), config.segment_samples), dtype=np.float32)
    for i, start in enumerate(starts):
        out[i] = samples[start : start + config.segment_samples]
    return out
