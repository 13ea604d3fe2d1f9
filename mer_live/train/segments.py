"""The segments training reads: slices of cached clip log-mels that inherit their clip's labels.

A ``SegmentSet`` is a list of (clip, start frame) pairs into the clips' cached arrays, built one of
four ways: ``from_clips`` cuts every clip into hop-spaced segments exactly as ``AudioConfig``
frames audio, ``from_rows`` takes every column of a clip's cached body features as one segment
(pretrained models), ``from_maps`` every block of a clip's cached front-end maps (musicnn's mid-end
fine-tuned), and ``one_per_clip`` takes a single window from each clip (the clip-level
baseline). ``batch`` gives the log-mel of any of them, with a randomly shifted, masked view when
augmenting (with ``pitch_shift``, shifted in pitch too; with ``freq_mixstyle``, band statistics mixed
across the batch); ``heard`` the same segments from ``versions``, other recordings of the same clips
(through the air), for consistency training. NumPy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mer_live.config import AudioConfig
from mer_live.nn.mel import mel_band_hz
from mer_live.train.settings import TrainConfig


def segment_frame_starts(n_frames: int, audio: AudioConfig) -> np.ndarray:
    """Start frame of every segment in a clip's log-mel, matching ``audio.segment_starts``.

    Clips are padded to at least one segment, so there is always one segment at frame 0.
    """
    return np.arange(max(1, audio.segments_in_frames(n_frames)), dtype=np.int64) * audio.hop_frames


@dataclass
class SegmentSet:
    """Segments of clips as (clip, start frame) pairs into the clips' cached log-mels.

    ``starts`` holds, per clip, the start frame of each of its segments; use the constructors
    below rather than building it by hand.
    """

    logmels: list[np.ndarray]
    labels: np.ndarray  # (clips, tasks) 0/1
    frames: int  # frames per segment
    starts: list[np.ndarray]
    versions: list[list[np.ndarray]] = field(default_factory=list)  # other recordings of the clips, frame for frame
    moods: np.ndarray | None = None  # (clips, tags): each clip's mood tags as a distribution (labels.mood_targets)
    band_hz: np.ndarray | None = None  # the log-mel bands' centre frequencies (from_clips): what pitch_shift reads
    clip_of: np.ndarray = field(init=False)
    start: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels)
        if self.moods is not None and len(self.moods) != len(self.logmels):
            raise ValueError(f"{len(self.logmels)} clips but mood tags for {len(self.moods)}")
        if len(self.starts) != len(self.logmels):
            raise ValueError(f"{len(self.logmels)} clips but segment starts for {len(self.starts)}")
        for version in self.versions:
            if [m.shape for m in version] != [m.shape for m in self.logmels]:
                raise ValueError("every version of the clips must have each clip's shape")
        clip_of = [np.full(len(s), c) for c, s in enumerate(self.starts)]
        self.clip_of = np.concatenate(clip_of).astype(np.int64) if clip_of else np.zeros(0, np.int64)
        self.start = np.concatenate(self.starts).astype(np.int64) if self.starts else np.zeros(0, np.int64)

    @classmethod
    def from_clips(cls, logmels: list[np.ndarray], labels: np.ndarray, audio: AudioConfig) -> SegmentSet:
        """Every segment of every clip's log-mel, hop-spaced as ``audio`` frames a clip."""
        return cls(logmels, labels, audio.segment_frames, [segment_frame_starts(m.shape[1], audio) for m in logmels],
                   band_hz=mel_band_hz(audio))

    @classmethod
    def from_rows(cls, features: list[np.ndarray], labels: np.ndarray) -> SegmentSet:
        """Each column of a clip's (features, segments) array is one segment of one frame."""
        return cls(features, labels, 1, [np.arange(f.shape[1], dtype=np.int64) for f in features])

    @classmethod
    def from_maps(cls, maps: list[np.ndarray], labels: np.ndarray, frames: int) -> SegmentSet:
        """Each clip's (channels, segments x ``frames``) array holds its segments' cached maps side by side."""
        return cls(maps, labels, frames, [np.arange(m.shape[1] // frames, dtype=np.int64) * frames for m in maps])

    @classmethod
    def one_per_clip(cls, logmels: list[np.ndarray], labels: np.ndarray, frames: int) -> SegmentSet:
        """One sample per clip: its first ``frames`` frames (random crops when augmenting)."""
        return cls(logmels, labels, frames, [np.zeros(1, np.int64) for _ in logmels])

    def __len__(self) -> int:
        return len(self.clip_of)

    @property
    def segment_labels(self) -> np.ndarray:
        """(segments, tasks): each segment inherits its clip's label."""
        return self.labels[self.clip_of]

    def batch(self, idx: np.ndarray, rng: np.random.Generator | None = None, cfg: TrainConfig | None = None,
              version: np.ndarray | None = None) -> np.ndarray:
        """(len(idx), n_mels, frames) log-mel; with ``rng`` a randomly shifted, masked view; with ``version``
        (an index into ``versions`` per row) from those recordings of the clips."""
        out = np.empty((len(idx), self.logmels[0].shape[0], self.frames), dtype=np.float32)
        augment = rng is not None and cfg is not None
        for row, i in enumerate(idx):
            clip = self.clip_of[i]
            mel = self.logmels[clip] if version is None else self.versions[version[row]][clip]
            start = int(self.start[i])
            if augment and cfg.shift_frames:
                last = max(0, mel.shape[1] - self.frames)
                start = int(np.clip(start + rng.integers(-cfg.shift_frames, cfg.shift_frames + 1), 0, last))
            piece = mel[:, start : start + self.frames]
            out[row, :, : piece.shape[1]] = piece
            out[row, :, piece.shape[1] :] = piece.min() if piece.size else 0.0
            if augment and cfg.pitch_shift:
                out[row] = pitch_shift(out[row], rng.uniform(-cfg.pitch_shift, cfg.pitch_shift), self.band_hz)
            if augment:
                spec_augment(out[row], rng, cfg)
        if augment and cfg.freq_mixstyle and rng.random() < cfg.freq_mixstyle:
            out = freq_mixstyle(out, rng)
        return out

    def heard(self, idx: np.ndarray, rng: np.random.Generator, cfg: TrainConfig) -> np.ndarray:
        """The segments ``idx`` as a random one of ``versions`` has them (one draw per row), viewed as ``batch``
        views them."""
        return self.batch(idx, rng, cfg, rng.integers(len(self.versions), size=len(idx)))


MIXSTYLE_ALPHA = 0.3  # Beta(0.3, 0.3): most mixes stay near one example's statistics (EfficientAT's helpers)
MIXSTYLE_EPS = 1e-6


def freq_mixstyle(views: np.ndarray, rng: np.random.Generator, alpha: float = MIXSTYLE_ALPHA) -> np.ndarray:
    """Freq-MixStyle: every view's log-mel, normalised per mel band over time, takes on per-band means and
    deviations mixed with another view's of the batch (l ~ Beta(alpha, alpha) per view). A band's level
    over time is what a room, a microphone or a master changes; the notes and their timing stay the view's
    own (MixStyle, Zhou et al. 2021, per frequency as CP-JKU train device-robust audio MobileNets)."""
    mean = views.mean(axis=2, keepdims=True)
    std = np.sqrt(views.var(axis=2, keepdims=True) + MIXSTYLE_EPS)
    lam = rng.beta(alpha, alpha, size=(len(views), 1, 1)).astype(np.float32)
    perm = rng.permutation(len(views))
    mixed_mean = lam * mean + (1 - lam) * mean[perm]
    mixed_std = lam * std + (1 - lam) * std[perm]
    return ((views - mean) / std * mixed_std + mixed_mean).astype(np.float32)


def pitch_shift(mel: np.ndarray, semitones: float, band_hz: np.ndarray) -> np.ndarray:
    """(bands, frames) log-mel of the same audio ``semitones`` higher (lower when negative), tempo unchanged:
    every band reads the log-mel at its centre frequency over 2^(semitones / 12), interpolated between the
    two nearest bands; bands whose source lies outside the log-mel repeat its edge band."""
    source = band_hz / 2.0 ** (semitones / 12.0)
    position = np.interp(source, band_hz, np.arange(len(band_hz), dtype=np.float64))
    low = np.minimum(position.astype(np.int64), len(band_hz) - 2)
    weight = (position - low).astype(np.float32)[:, None]
    return ((1 - weight) * mel[low] + weight * mel[low + 1]).astype(np.float32)


def spec_augment(mel: np.ndarray, rng: np.random.Generator, cfg: TrainConfig) -> None:
    """SpecAugment in place: one frequency and one time mask, filled with the view's floor; a mask wider
    than the view covers at most all of it."""
    floor = mel.min()
    if cfg.freq_mask:
        width = int(rng.integers(0, min(cfg.freq_mask, mel.shape[0]) + 1))
        f0 = int(rng.integers(0, mel.shape[0] - width + 1))
        mel[f0 : f0 + width] = floor
    if cfg.time_mask:
        width = int(rng.integers(0, min(cfg.time_mask, mel.shape[1]) + 1))
        t0 = int(rng.integers(0, mel.shape[1] - width + 1))
        mel[:, t0 : t0 + width] = floor
