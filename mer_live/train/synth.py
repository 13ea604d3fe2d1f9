"""A seeded generator of labeled, music-like audio whose cues carry the emotion (NumPy only).

Valence is carried by harmony: positive clips play major triads in a I-IV-V-vi-style
progression, negative ones minor and diminished chords with dissonant clusters (minor
seconds, tritones) and slight detuning that beats. Arousal is carried by tempo, loudness,
note density, attack and brightness: high-arousal clips are fast, loud, dense, percussive and
rich in harmonics; low-arousal ones slow, quiet, sparse, soft and dull. The cues are the
ones listeners use (Gabrielsson & Lindström), so a model that learns them learns something
real, and tests can check each cue directly.

With ``change_fraction`` > 0 some clips switch to another quadrant part-way through while
the manifest keeps the first part's (majority) label: the situation where a segment inherits
a wrong song-level label, which the self-learning stage is meant to handle.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

from mer_live.train.datasets import MANIFEST, Clip
from mer_live.train.labels import QUADRANT_LABELS, QUADRANTS

TABLE_SIZE = 4096
CHANGE_RANGE = (0.5, 0.7)  # where a changing clip switches, as a fraction of its length
NOISE_LEVEL = 0.003

# Chords as semitone offsets from the tonic: the first note is the chord root.
POSITIVE_CHORDS = ((0, 4, 7), (5, 9, 12), (7, 11, 14), (9, 12, 16), (0, 4, 7, 12), (2, 5, 9))
NEGATIVE_CHORDS = ((0, 3, 7), (0, 3, 6), (5, 8, 12), (0, 1, 6), (7, 10, 13), (2, 5, 8, 11), (0, 3, 7, 8))


def wavetable(n_harmonics: int, rolloff: float) -> np.ndarray:
    """One cycle of a harmonic tone; more, stronger harmonics sound brighter."""
    phase = 2 * np.pi * np.arange(TABLE_SIZE) / TABLE_SIZE
    k = np.arange(1, n_harmonics + 1)[:, None]
    table = (np.sin(k * phase) / k**rolloff).sum(axis=0)
    return (table / np.abs(table).max()).astype(np.float32)


def midi_hz(note: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(note, dtype=np.float64) - 69) / 12)


def envelope(n: int, sr: int, attack: float, decay: float) -> np.ndarray:
    """A linear attack into an exponential decay."""
    t = np.arange(n, dtype=np.float32) / np.float32(sr)
    return np.minimum(1.0, t / np.float32(attack)) * np.exp(-t / np.float32(decay))


def tone(table: np.ndarray, freq: float, env: np.ndarray, sr: int) -> np.ndarray:
    """A wavetable note shaped by ``env`` (its length sets the note's)."""
    idx = (np.arange(len(env)) * (freq * TABLE_SIZE / sr)).astype(np.int64) % TABLE_SIZE
    return table[idx] * env


def style(valence: int, arousal: int, rng: np.random.Generator) -> dict:
    """The musical parameters one quadrant implies, drawn with some spread."""
    high = bool(arousal)
    return {
        "chords": POSITIVE_CHORDS if valence else NEGATIVE_CHORDS,
        "detune": 0.0 if valence else rng.uniform(0.15, 0.35),  # semitones: beating roughness
        "bpm": rng.uniform(130, 170) if high else rng.uniform(55, 80),
        "notes_per_beat": int(rng.choice([3, 4])) if high else 1,
        "level": rng.uniform(0.45, 0.6) if high else rng.uniform(0.08, 0.16),
        "table": wavetable(int(rng.integers(8, 12)), 1.0) if high else wavetable(int(rng.integers(2, 4)), 2),
        "attack": 0.004 if high else rng.uniform(0.08, 0.2),
        "decay": rng.uniform(0.08, 0.15) if high else rng.uniform(0.8, 1.5),
        "drums": high,
        "octave": 12 if valence else 0,  # melodies of positive clips sit higher
    }


def render(n: int, sr: int, tonic: int, params: dict, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of one quadrant's music: a chord pad, an arpeggio over it, maybe drums."""
    out = np.zeros(n, dtype=np.float32)
    beat = int(sr * 60 / params["bpm"])
    bar = 4 * beat
    step = beat // params["notes_per_beat"]
    table = params["table"]
    pad_env = envelope(bar, sr, params["attack"], 2.0)
    note_env = envelope(step, sr, params["attack"], params["decay"])
    hit = min(int(0.08 * sr), beat)
    drum_env = np.float32(0.35) * envelope(hit, sr, 1e-4, 0.015)
    for bar_start in range(0, n, bar):
        chord = np.array(params["chords"][rng.integers(len(params["chords"]))], dtype=np.float64)
        length = min(bar, n - bar_start)
        bends = params["detune"] * rng.choice([-1, 1], size=len(chord))
        gain = 0.25 / len(chord)
        for pitch in midi_hz(tonic + chord + bends):
            out[bar_start : bar_start + length] += gain * tone(table, pitch, pad_env[:length], sr)
        for start in range(bar_start, bar_start + length, step):
            pitch = midi_hz(tonic + 12 + params["octave"] + chord[rng.integers(len(chord))])
            count = min(step, n - start)
            out[start : start + count] += 0.5 * tone(table, pitch, note_env[:count], sr)
        if params["drums"]:
            for start in range(bar_start, bar_start + length, beat):
                count = min(hit, n - start)
                out[start : start + count] += rng.standard_normal(count, dtype=np.float32) * drum_env[:count]
    return out * np.float32(params["level"])


def synth_clip(
    quadrant: str, seconds: float, sr: int, rng: np.random.Generator,
    change_s: float | None = None, second: str | None = None,
) -> np.ndarray:
    """Mono float32 audio in ``quadrant``, switching to ``second`` at ``change_s`` if given."""
    n = int(seconds * sr)
    tonic = int(rng.integers(45, 57))
    cut = n if change_s is None else int(change_s * sr)
    parts = [(quadrant, cut), (second, n - cut)] if change_s is not None else [(quadrant, n)]
    audio = np.concatenate([
        render(count, sr, tonic, style(**QUADRANT_LABELS[q], rng=rng), rng) for q, count in parts
    ])
    audio += NOISE_LEVEL * rng.standard_normal(n).astype(np.float32)
    return np.clip(audio, -1.0, 1.0)


def make_synth_corpus(
    root: Path, n_clips: int, seconds: float = 10.0, sr: int = 22050, seed: int = 0,
    change_fraction: float = 0.0,
) -> Path:
    """Write ``n_clips`` WAVs balanced over Q1-Q4 plus ``manifest.csv``; returns the manifest path.

    Manifest columns: path, song_id, valence, arousal, quadrant (the clip label, 0/1 and Q1-Q4),
    then change_s, second_valence, second_arousal, second_quadrant, filled only for clips whose
    emotion changes: their audio after ``change_s`` seconds is really ``second_quadrant``.
    Clip i depends only on (seed, i), not on ``n_clips``.
    """
    if not 0 <= change_fraction <= 1:
        raise ValueError(f"change_fraction must be within [0, 1], got {change_fraction}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(seed).permutation(n_clips)
    changing = set(order[: round(change_fraction * n_clips)].tolist())
    rows = []
    for i in range(n_clips):
        rng = np.random.default_rng([seed, i])
        quadrant = QUADRANTS[i % 4]
        change_s, second = None, None
        if i in changing:
            change_s = round(float(rng.uniform(*CHANGE_RANGE)) * seconds, 3)
            others = [q for q in QUADRANTS if q != quadrant]
            second = others[int(rng.integers(len(others)))]
        song_id = f"synth_{i:05d}"
        sf.write(str(root / f"{song_id}.wav"), synth_clip(quadrant, seconds, sr, rng, change_s, second), sr,
                 subtype="PCM_16")
        after = QUADRANT_LABELS[second] if second else {"valence": "", "arousal": ""}
        rows.append({
            "path": f"{song_id}.wav", "song_id": song_id, **QUADRANT_LABELS[quadrant], "quadrant": quadrant,
            "change_s": "" if change_s is None else change_s, "second_valence": after["valence"],
            "second_arousal": after["arousal"], "second_quadrant": second or "",
        })
    manifest = root / MANIFEST
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["path", "valence", "arousal"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def segment_quadrants(clip: Clip, starts_s: np.ndarray, segment_seconds: float) -> list[str | None]:
    """True quadrant of each segment of a synth clip, judged at the segment's centre."""
    change = clip.raw.get("change_s", "")
    centres = np.asarray(starts_s, dtype=np.float64) + segment_seconds / 2
    if not change:
        return [clip.quadrant] * len(centres)
    second = clip.raw["second_quadrant"]
    return [second if c >= float(change) else clip.quadrant for c in centres]
