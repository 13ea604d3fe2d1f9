"""A generated demo stream for machines without a microphone: two short synthetic pieces.

First a bright, fast piece in C major (plucked arpeggios at 150 BPM, high register, hi-hat
noise), then a pause long enough to end the song, then a slow, soft piece in A minor (sustained
low chords at 60 BPM). They are sine-tone sketches, not recorded music: the model was trained on
real songs and may place both pieces in the same quadrant, so the demo shows the monitor working
(levels, segments, two songs with their own estimates), not what the model gets right. The
caption says so rather than promising an emotion.
"""

from __future__ import annotations

import numpy as np

CAPTION = ("a generated demo: two synthetic sine-tone pieces, fast major then slow minor, separated by a pause "
           "(not recorded music: the estimates show how this model hears them, whatever it decides)")
MAJOR = (0, 4, 7, 12)
MINOR = (0, 3, 7, 12)


def _midi_hz(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def _note(freq: float, seconds: float, sr: int, decay: float, harmonics: int) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    tone = sum(np.sin(2 * np.pi * freq * h * t) / h**1.5 for h in range(1, harmonics + 1))
    attack = np.minimum(1.0, t / 0.01)
    return (tone * attack * np.exp(-t / decay)).astype(np.float32)


def _piece(sr: int, seconds: float, root: int, chord: tuple[int, ...], bpm: float, decay: float,
           harmonics: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Arpeggiate I-IV-V-I (or i-iv-v-i) of ``chord`` on ``root``, one note per beat."""
    beat = 60.0 / bpm
    out = np.zeros(int(seconds * sr) + int(4 * decay * sr) + sr, np.float32)
    progression = (0, 5, 7, 0)
    n_beats = int(seconds / beat)
    for i in range(n_beats):
        step = progression[(i // 8) % len(progression)]
        note = root + step + chord[i % len(chord)]
        start = int(i * beat * sr)
        tone = _note(_midi_hz(note), 4 * decay, sr, decay, harmonics)
        bass = _note(_midi_hz(root + step - 24), 4 * decay, sr, 2 * decay, 2) if i % 4 == 0 else None
        out[start : start + len(tone)] += tone
        if bass is not None:
            out[start : start + len(bass)] += 0.8 * bass
        if noise:
            n = int(0.03 * sr)
            hat = rng.standard_normal(n).astype(np.float32) * np.exp(-np.arange(n) / (0.005 * sr))
            out[start : start + len(hat)] += noise * hat
    out = out[: int(seconds * sr)]
    return (out / (np.abs(out).max() + 1e-9)).astype(np.float32)


def synthesize(sr: int, seconds: float = 60.0, pause: float = 4.0, seed: int = 0) -> np.ndarray:
    """Bright major piece, ``pause`` s of silence, slow minor piece: ``seconds`` in all."""
    rng = np.random.default_rng(seed)
    part = (seconds - pause) / 2
    bright = 0.7 * _piece(sr, part, root=72, chord=MAJOR, bpm=150, decay=0.15, harmonics=6, noise=0.3, rng=rng)
    dark = 0.35 * _piece(sr, part, root=57, chord=MINOR, bpm=60, decay=0.9, harmonics=3, noise=0.0, rng=rng)
    return np.concatenate([bright, np.zeros(int(pause * sr), np.float32), dark])
