"""Decoding with PyAV (FFmpeg's libraries, shipped in the ``av`` wheel) for what libsndfile cannot read.

AAC and ALAC (.m4a, .mp4, .aac), WebM/Matroska audio, WMA, AC-3, MP2, and FLAC of any kind: a FLAC
written to a pipe states no length, which libsndfile cannot seek past, and a FLAC cut short makes it
stop with "lost sync" where FFmpeg decodes every frame it can. Blocks come out as (frames, channels)
float32 at the stream's own rate; ``mer_live.audio`` downmixes, sanitizes and resamples them exactly
as it does libsndfile's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import numpy as np

from mer_live.errors import AudioError, MerLiveError

STDIN = "-"  # `--file -`
PACKED = "flt"  # PyAV packs every sample format into interleaved float32 with this resampler format


def _av():
    try:
        import av
        import av.logging
    except ImportError:
        raise MerLiveError("this file needs PyAV to decode: pip install av") from None
    av.logging.set_level(None)  # FFmpeg's own log lines carry no file name; failures become AudioErrors
    return av


class AvReader:
    """One audio stream of a container; iterate ``blocks`` for (frames, channels) float32 arrays."""

    def __init__(self, path: str | os.PathLike, stream: bool = False) -> None:
        """``stream``: a pipe or FIFO (``path`` "-" is standard input), read as it arrives: FFmpeg
        probes only a little of it first, so `arecord | mer-live --file -` starts at once."""
        av = _av()
        self.path = path
        self._errors = (av.error.FFmpegError, ValueError, OSError)
        source = sys.stdin.buffer if str(path) == STDIN else str(path)
        options = {"probesize": "32768", "analyzeduration": "0"} if stream else {}
        try:
            self._container = av.open(source, mode="r", options=options)
        except self._errors as exc:
            raise AudioError(path, f"cannot decode: {_reason(exc)}") from None
        streams = self._container.streams.audio
        if not streams:
            self._container.close()
            raise AudioError(path, "no audio stream in file")
        self._stream = streams[0]
        self.samplerate = int(self._stream.sample_rate or self._stream.codec_context.sample_rate or 0)
        if self.samplerate <= 0:
            self._container.close()
            raise AudioError(path, "audio stream states no sample rate")
        self.frames = self._expected_frames()
        self.partial = ""  # why decoding stopped early, if it did

    def _expected_frames(self) -> int:
        """The stream's length from the container (0 when it does not say): a size hint only."""
        stream, seconds = self._stream, 0.0
        if stream.duration and stream.time_base:
            seconds = float(stream.duration * stream.time_base)
        elif self._container.duration:
            seconds = self._container.duration / 1_000_000
        return max(0, round(seconds * self.samplerate))

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        """Decoded audio in blocks of about ``block_frames``; a stream that breaks off part-way ends
        there (``partial`` says why), as libsndfile does for a truncated MP3."""
        av = _av()
        resampler = av.AudioResampler(format=PACKED)
        pending: list[np.ndarray] = []
        held = 0
        for frame in self._frames():
            for packed in resampler.resample(frame):
                block = _interleaved(packed)
                pending.append(block)
                held += len(block)
                if held >= block_frames:
                    yield np.concatenate(pending)
                    pending, held = [], 0
        if pending:
            yield np.concatenate(pending)

    def _frames(self):
        try:
            yield from self._container.decode(self._stream)
        except self._errors as exc:
            self.partial = _reason(exc)

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> AvReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _interleaved(frame) -> np.ndarray:
    """A packed float32 AudioFrame as (samples, channels)."""
    channels = len(frame.layout.channels)
    data = frame.to_ndarray().reshape(-1)
    return data.reshape(-1, channels)


def _reason(exc: Exception) -> str:
    """FFmpeg's words without the path it repeats (the caller names the file)."""
    text = getattr(exc, "strerror", None) or str(exc)
    text = str(text).splitlines()[0].rstrip(".") if text else type(exc).__name__
    if "Invalid data found" in text:
        return "not a recognised audio format, or corrupt data"
    return text
