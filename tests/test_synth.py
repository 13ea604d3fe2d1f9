"""The synthetic corpus: seeded, balanced, loadable, and its emotion cues are really in the audio."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import soundfile as sf

from mer_live.nn.mel import hann_window
from mer_live.train.datasets import load_dataset
from mer_live.train.labels import QUADRANTS
from mer_live.train.synth import make_synth_corpus, segment_quadrants, synth_clip

SR = 22050


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def onset_rate(x: np.ndarray, sr: int = SR) -> float:
    """Energy rises per second in 23 ms frames: a crude measure of note density and tempo."""
    frames = x[: len(x) // 512 * 512].reshape(-1, 512)
    energy = np.log(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-9)
    return float(np.sum(np.diff(energy) > 1.0) / (len(x) / sr))


def dissonance(x: np.ndarray, sr: int = SR, n: int = 4096, peaks: int = 20) -> float:
    """Plomp-Levelt sensory dissonance (Sethares' model) of the strongest spectral peaks, per unit energy."""
    window, freqs = hann_window(n), np.fft.rfftfreq(n, 1 / sr)
    values = []
    for start in range(0, len(x) - n, sr // 2):
        mag = np.abs(np.fft.rfft(x[start : start + n] * window))
        local = np.flatnonzero((mag[1:-1] > mag[:-2]) & (mag[1:-1] > mag[2:])) + 1
        top = local[np.argsort(mag[local])[-peaks:]]
        f, a = freqs[top], mag[top] / np.sqrt(np.sum(mag[top] ** 2))
        s, df = 0.24 / (0.021 * np.minimum.outer(f, f) + 19), np.abs(np.subtract.outer(f, f))
        values.append(np.sum(np.outer(a, a) * (np.exp(-3.5 * s * df) - np.exp(-5.75 * s * df))) / 2)
    return float(np.mean(values))


def test_deterministic_balanced_and_loadable(tmp_path):
    first = make_synth_corpus(tmp_path / "a", n_clips=10, seconds=2.0, seed=7, change_fraction=0.4)
    second = make_synth_corpus(tmp_path / "b", n_clips=10, seconds=2.0, seed=7, change_fraction=0.4)
    make_synth_corpus(tmp_path / "c", n_clips=10, seconds=2.0, seed=8)
    assert first.read_text() == second.read_text()
    for name in ("synth_00000.wav", "synth_00009.wav"):
        a, sr = sf.read(str(tmp_path / "a" / name), dtype="float32")
        b, _ = sf.read(str(tmp_path / "b" / name), dtype="float32")
        c, _ = sf.read(str(tmp_path / "c" / name), dtype="float32")
        assert sr == SR and len(a) == 2 * SR and np.array_equal(a, b) and not np.array_equal(a, c)
    ds = load_dataset("synth", tmp_path / "a")
    assert len(ds.clips) == 10 and Counter(c.quadrant for c in ds.clips) == {"Q1": 3, "Q2": 3, "Q3": 2, "Q4": 2}
    assert all(c.labels is not None for c in ds.clips)


def test_change_metadata_marks_wrong_inherited_labels(tmp_path):
    make_synth_corpus(tmp_path, n_clips=20, seconds=10.0, seed=1, change_fraction=0.25)
    ds = load_dataset("synth", tmp_path)
    changing = [c for c in ds.clips if c.raw["change_s"]]
    assert len(changing) == 5
    for clip in changing:
        change = float(clip.raw["change_s"])
        assert 5.0 <= change <= 7.0 and clip.raw["second_quadrant"] in set(QUADRANTS) - {clip.quadrant}
        truth = segment_quadrants(clip, np.arange(8, dtype=float), segment_seconds=3.0)
        assert truth[0] == clip.quadrant and truth[-1] == clip.raw["second_quadrant"]
        # The second half really is a different quadrant: its loudness follows the new arousal.
        audio, _ = sf.read(str(clip.path), dtype="float32")
        before, after = audio[: int((change - 1) * SR)], audio[int((change + 0.5) * SR) :]
        old, new = clip.labels["arousal"], int(clip.raw["second_arousal"])
        if old != new:
            assert (rms(after) > rms(before)) == bool(new)
    steady = next(c for c in ds.clips if not c.raw["change_s"])
    assert segment_quadrants(steady, np.arange(3.0), 3.0) == [steady.quadrant] * 3


def test_cues_carry_the_emotion():
    clips = {q: [synth_clip(q, 6.0, SR, np.random.default_rng([3, i])) for i in range(6)] for q in QUADRANTS}
    level = {q: np.mean([rms(x) for x in xs]) for q, xs in clips.items()}
    density = {q: np.mean([onset_rate(x) for x in xs]) for q, xs in clips.items()}
    rough = {q: np.mean([dissonance(x) for x in xs]) for q, xs in clips.items()}
    for high, low in (("Q1", "Q4"), ("Q2", "Q3")):  # arousal: louder and denser
        assert level[high] > 2 * level[low] and density[high] > 2 * density[low]
    for positive, negative in (("Q1", "Q2"), ("Q4", "Q3")):  # valence: consonant harmony
        assert rough[positive] < 0.8 * rough[negative]


def test_fast_enough():
    synth_clip("Q1", 10.0, SR, np.random.default_rng(0))  # warm up
    start = time.perf_counter()
    for q in QUADRANTS:
        synth_clip(q, 10.0, SR, np.random.default_rng(1))
    assert (time.perf_counter() - start) / 4 < 0.1  # a few ms when the machine is idle
