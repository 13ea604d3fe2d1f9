"""Shared fixtures: real audio written with soundfile, the 4q-dev corpus when present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
FOURQ_ENV = "MER_LIVE_4Q_ROOT"


def fourq_root() -> Path | None:
    """The real 4Q dev clips: $MER_LIVE_4Q_ROOT, else ../shared/data/4q-dev/... beside the repo."""
    env = os.environ.get(FOURQ_ENV)
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data" / "4q-dev" / "MER_audio_taffc_dataset")
    for path in candidates:
        if (path / "panda_dataset_taffc_annotations.csv").is_file():
            return path
    return None


@pytest.fixture(scope="session")
def fourq() -> Path:
    root = fourq_root()
    if root is None:
        pytest.skip(f"4Q dev clips not found: set {FOURQ_ENV} or place ../shared/data/4q-dev beside the repo")
    return root


@pytest.fixture(scope="session")
def music_clip(fourq: Path) -> Path:
    """One real 4Q clip (32 kHz stereo MP3)."""
    return sorted((fourq / "Q1").glob("*.mp3"))[0]


def tone(seconds: float, sr: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def write_audio(tmp_path: Path):
    """write_audio(name, samples, sr, **soundfile kwargs) -> path of a real audio file."""

    def write(name: str, samples: np.ndarray, sr: int, **kwargs) -> Path:
        path = tmp_path / name
        sf.write(str(path), samples, sr, **kwargs)
        return path

    return write
