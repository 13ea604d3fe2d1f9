"""Shared by the realtime tests: tiny bundles built once per test session, and a real audio file."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import soundfile as sf

from mer_live.runtime.bundle import Bundle, load_bundle

_ROOT = Path(tempfile.mkdtemp(prefix="mer-live-realtime-tests-"))
_OWNER = os.getpid()


@atexit.register
def _remove_root() -> None:
    """A test session leaves nothing in the temp folder (a forked child that exits leaves it to its parent)."""
    if os.getpid() == _OWNER:
        shutil.rmtree(_ROOT, ignore_errors=True)


def tiny_bundle(segment_seconds: float = 3.0) -> Bundle:
    """A real exported bundle of an untrained model (harness/tiny.py), built once per session."""
    return _tiny_bundle(float(segment_seconds))


@cache
def _tiny_bundle(segment_seconds: float) -> Bundle:
    from harness.tiny import make_tiny_bundle

    return load_bundle(make_tiny_bundle(_ROOT / f"bundle-{segment_seconds}", segment_seconds))


@cache
def music_wav(seconds: float = 14.0, sr: int = 44100) -> Path:
    """A stereo 44.1 kHz WAV of the generated demo music (so reading it resamples and downmixes)."""
    from mer_live.live.demo import synthesize

    mono = synthesize(sr, seconds=seconds, pause=1.0)
    stereo = np.stack([mono, 0.5 * np.roll(mono, 100)], axis=1)
    path = _ROOT / f"music-{seconds}-{sr}.wav"
    sf.write(str(path), stereo, sr)
    return path
