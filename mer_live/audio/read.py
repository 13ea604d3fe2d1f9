"""Reading audio files: decode with libsndfile or FFmpeg (PyAV), downmix, resample with soxr.

libsndfile reads WAV-family files, AIFF, Ogg (Vorbis, Opus) and MP3; PyAV reads FLAC and what a
music library holds besides (AAC and ALAC in .m4a/.mp4, WebM/Matroska, WMA, AC-3, MP2), and any
file libsndfile refuses. Everything returns mono float32 at the requested rate, decoded in blocks.
Every failure is an ``AudioError`` naming the file and the reason, so callers can report it in one
line and move on.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from mer_live.audio.decode import STDIN, AvReader
from mer_live.audio.samples import StreamResampler, sanitize, to_mono
from mer_live.errors import AudioError

BLOCK_SECONDS = 10.0
# libsndfile first for these (fast, and the MP3 path the benchmarks measure)
SNDFILE_EXTENSIONS = (".wav", ".mp3", ".ogg", ".oga", ".opus", ".aiff", ".aif", ".aifc", ".au", ".snd", ".caf",
                      ".w64", ".rf64")
# FFmpeg for these (FLAC too: libsndfile cannot read a FLAC that states no length, nor past a cut)
AV_EXTENSIONS = (".flac", ".m4a", ".m4b", ".mp4", ".m4v", ".aac", ".alac", ".webm", ".mkv", ".mka", ".wma",
                 ".asf", ".ac3", ".eac3", ".mp2", ".mpa", ".wv", ".ape", ".mov", ".3gp", ".amr", ".dts")
AUDIO_EXTENSIONS = SNDFILE_EXTENSIONS + AV_EXTENSIONS
UNKNOWN_LENGTH = 2**62  # libsndfile's frame count for a stream without one (2**63 - 1)


class SfReader:
    """A libsndfile file with the same interface as ``AvReader``: ``samplerate``, ``frames`` (0 when
    unknown), ``blocks(n)`` of (frames, channels) float32."""

    def __init__(self, path: str | os.PathLike, f: sf.SoundFile) -> None:
        self.path, self._f = path, f
        self.samplerate = f.samplerate
        self.frames = max(0, f.frames)
        self.partial = ""

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        try:
            while True:
                block = self._f.read(block_frames, dtype="float32", always_2d=True)
                if len(block):
                    yield block
                if len(block) < block_frames:
                    return
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(self.path, f"decoding failed part-way ({exc}); the file may be truncated") from None

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> SfReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        if p.is_symlink():
            raise AudioError(path, "broken or looping symlink")
        raise AudioError(path, "file not found")
    if p.is_dir():
        raise AudioError(path, "is a directory, not an audio file")
    if not os.access(p, os.R_OK):
        raise AudioError(path, "permission denied (make the file readable)")
    if p.stat().st_size == 0:
        raise AudioError(path, "file is empty (0 bytes)")
    return p


def is_stream(path: str | os.PathLike) -> bool:
    """Standard input ("-"), a FIFO or a character device: audio that arrives, with no length or seek."""
    if str(path) == STDIN:
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def _open(path: str | os.PathLike) -> SfReader | AvReader:
    """libsndfile for its own formats when it knows the length; FFmpeg for the rest, as the fallback,
    and for streams (standard input, FIFOs), which it reads as they arrive."""
    if is_stream(path):
        return AvReader(path, stream=True)
    p = _check_file(path)
    sf_reason = ""
    if p.suffix.lower() not in AV_EXTENSIONS:
        try:
            f = sf.SoundFile(str(p))
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            sf_reason = _decode_reason(exc)
        else:
            if f.frames < UNKNOWN_LENGTH:
                return SfReader(path, f)
            f.close()
    try:
        return AvReader(path)
    except AudioError as exc:
        if sf_reason and exc.reason.startswith("cannot decode"):
            raise AudioError(path, f"cannot decode: {sf_reason}") from None
        raise


def _decode_reason(exc: Exception) -> str:
    """libsndfile's own words, without the path it repeats; its answer to garbage MPEG data
    ("File does not exist or is not a regular file") is untrue here, since ``_check_file`` checked that."""
    text = str(getattr(exc, "error_string", None) or exc).splitlines()[0].rstrip(".")
    if text.startswith("File does not exist") or text.startswith("Format not recognised"):
        return "not a recognised audio format, or corrupt data"
    return text


@contextlib.contextmanager
def decoder_messages(sink=None) -> Iterator[list[str]]:
    """Collect what C decoders print on file descriptor 2 meanwhile (libmpg123's "Illegal Audio-MPEG-Header",
    which names no file), so the caller can attach it to the file it is about; filled on exit. ``sink``: a
    binary temporary file to reuse across many short captures (a live file's blocks)."""
    lines: list[str] = []
    own = sink is None
    sink = tempfile.TemporaryFile() if own else sink
    start = sink.seek(0, os.SEEK_END)
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(sink.fileno(), 2)
    try:
        yield lines
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        if os.fstat(sink.fileno()).st_size > start:  # mostly nothing was written: skip the read
            sink.seek(start)
            text = sink.read().decode("utf-8", "replace")
            lines.extend(line.strip() for line in text.splitlines() if line.strip())
        if own:
            sink.close()


def describe_messages(lines: list[str]) -> str:
    """'3 decoder messages, first: ...' in one line (the file may be damaged there)."""
    first = lines[0].removeprefix("Note: ")
    return f"{len(lines)} decoder message{'s' * (len(lines) != 1)} (damaged data?), first: {first[:120]}"


def iter_audio_blocks(
    path: str | os.PathLike, sr: int, block_seconds: float = BLOCK_SECONDS
) -> Iterator[np.ndarray]:
    """Yield mono float32 blocks at ``sr`` without holding the whole file in memory.

    Resampling runs as one soxr stream across blocks, so the concatenated blocks equal
    ``load_audio(path, sr)`` up to soxr's streaming/one-shot rounding.
    """
    with _open(path) as reader:
        resample = StreamResampler(reader.samplerate, sr)
        produced = 0
        for block in reader.blocks(max(1, int(block_seconds * reader.samplerate))):
            out = resample(block)
            produced += len(out)
            if len(out):
                yield out
        out = resample(np.zeros(0, np.float32), last=True)
        produced += len(out)
        if len(out):
            yield out
        if produced == 0:
            raise AudioError(path, "no audio samples in file")


def load_audio(path: str | os.PathLike, sr: int) -> np.ndarray:
    """Decode a whole file to mono float32 at ``sr``."""
    with _open(path) as reader:
        native = reader.samplerate
        mono = _read_mono(reader)
    if len(mono) == 0:
        raise AudioError(path, "no audio samples in file")
    mono = sanitize(mono)
    if native != sr:
        mono = soxr.resample(mono, native, sr, quality="HQ").astype(np.float32, copy=False)
    return mono


def _read_mono(reader: SfReader | AvReader) -> np.ndarray:
    """The whole file as mono float32 at its native rate, read and downmixed in blocks: never a
    whole-file copy of every channel (a 2-hour 44.1 kHz stereo file would need 2.5 GB for that)."""
    out = np.empty(reader.frames, np.float32)  # the header's count; it may be off or absent, so grow if needed
    n = 0
    for block in reader.blocks(max(1, int(BLOCK_SECONDS * reader.samplerate))):
        mono = to_mono(block)
        if n + len(mono) > len(out):
            grown = np.empty(max(2 * len(out), n + len(mono)), np.float32)
            grown[:n] = out[:n]
            out = grown
        out[n : n + len(mono)] = mono
        n += len(mono)
    return out[:n]


def audio_duration(path: str | os.PathLike) -> float:
    """Duration in seconds from the header (cheap, no decoding); 0 when the file does not state it."""
    with _open(path) as reader:
        return reader.frames / reader.samplerate
