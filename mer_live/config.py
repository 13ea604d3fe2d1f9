"""The one source of truth for audio and segment settings.

Training, export and the runtime all read these numbers from a single frozen dataclass; the
bundle's manifest carries it as JSON so the runtime frames audio exactly as training did.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

import numpy as np

from mer_live.stats import STAT_NAMES

# the settings a log-mel frame depends on (segment length and hop only choose which frames)
FRONTEND_FIELDS = ("sample_rate", "n_fft", "hop_length", "n_mels", "fmin", "fmax", "log_floor", "win_length",
                   "symmetric_window", "preemphasis", "mel_scale", "log_offset")
MEL_SCALES = ("slaney", "kaldi")  # librosa's default (musicnn), Kaldi's fbank (AudioSet models)
MIN_SEGMENT_SECONDS = 1.0
MAX_SEGMENT_SECONDS = 5.0
TASKS = ("valence", "arousal")  # what a segment model predicts: P(high) of each


@dataclass(frozen=True)
class AudioConfig:
    """Audio front end and segmentation settings.

    Segment length and hop are given in seconds but realised in whole STFT hops, so that a
    segment's log-mel is exactly a slice of its clip's log-mel (no centering, hop-aligned
    framing). ``segment_frames``/``hop_frames`` and the sample counts below are the exact
    values actually used; ``segment_seconds``/``segment_hop_seconds`` are the requests.
    """

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 64
    fmin: float = 0.0
    fmax: float = 11025.0
    log_floor: float = 1e-6
    segment_seconds: float = 3.0
    segment_hop_seconds: float = 1.0
    # the AudioSet networks' front end differs from librosa's in five ways, each a setting here
    win_length: int = 0  # Hann window length, centred in the n_fft frame; 0 = n_fft
    symmetric_window: bool = False  # torch.hann_window(periodic=False) rather than the periodic one
    preemphasis: float = 0.0  # y[n] = x[n+1] - k x[n] before the STFT (k = 0: none)
    mel_scale: str = "slaney"
    log_offset: bool = False  # ln(mel + log_floor) rather than ln(max(mel, log_floor))

    def __post_init__(self) -> None:
        if not MIN_SEGMENT_SECONDS <= self.segment_seconds <= MAX_SEGMENT_SECONDS:
            raise ValueError(
                f"segment_seconds must be within {MIN_SEGMENT_SECONDS}-{MAX_SEGMENT_SECONDS} s, "
                f"got {self.segment_seconds}"
            )
        if self.segment_hop_seconds <= 0 or self.segment_hop_seconds > self.segment_seconds:
            raise ValueError("segment_hop_seconds must be > 0 and <= segment_seconds")
        if self.hop_length <= 0 or self.n_fft < self.hop_length:
            raise ValueError("need 0 < hop_length <= n_fft")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError("need 0 <= fmin < fmax <= sample_rate / 2")
        if not 0 <= self.win_length <= self.n_fft or not 0 <= self.preemphasis < 1:
            raise ValueError("need 0 <= win_length <= n_fft and 0 <= preemphasis < 1")
        if self.preemphasis and self.window_length == self.n_fft:
            # y[n] = x[n+1] - k x[n] needs one sample past the frame; a window shorter than n_fft ends in
            # zeros, so the frame of y is exactly n_fft samples of x (the filter folds into the STFT kernels)
            raise ValueError("preemphasis needs win_length < n_fft")
        if self.mel_scale not in MEL_SCALES:
            raise ValueError(f"mel_scale must be one of {', '.join(MEL_SCALES)}, got {self.mel_scale!r}")

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def window_length(self) -> int:
        return self.win_length or self.n_fft

    @property
    def segment_frames(self) -> int:
        """Log-mel frames per segment: the requested length rounded to whole STFT hops."""
        return max(1, round(self.segment_seconds * self.sample_rate / self.hop_length))

    @property
    def hop_frames(self) -> int:
        """Log-mel frames between segment starts, rounded to whole STFT hops."""
        return max(1, round(self.segment_hop_seconds * self.sample_rate / self.hop_length))

    @property
    def segment_samples(self) -> int:
        """Audio samples one segment spans: (frames - 1) hops plus one FFT window."""
        return self.frames_samples(self.segment_frames)

    @property
    def hop_samples(self) -> int:
        return self.hop_frames * self.hop_length

    @property
    def effective_segment_seconds(self) -> float:
        return self.segment_samples / self.sample_rate

    @property
    def effective_hop_seconds(self) -> float:
        return self.hop_samples / self.sample_rate

    # ---- segment arithmetic: the one place samples, frames, segments and seconds are converted

    def n_segments(self, n_samples: int) -> int:
        """Segments of a clip of ``n_samples``: one (zero-padded) for a clip shorter than a segment, none
        for an empty one; the tail after the last whole segment is shorter than a hop and not covered."""
        if n_samples <= 0:
            return 0
        return 1 + max(0, n_samples - self.segment_samples) // self.hop_samples

    def segment_starts(self, n_samples: int) -> np.ndarray:
        """First sample of every segment of a clip of ``n_samples`` samples."""
        return np.arange(self.n_segments(n_samples), dtype=np.int64) * self.hop_samples

    def segment_frames_span(self, n_segments: int) -> int:
        """Log-mel frames that ``n_segments`` consecutive segments cover."""
        return (n_segments - 1) * self.hop_frames + self.segment_frames if n_segments > 0 else 0

    def segments_in_frames(self, n_frames: int) -> int:
        """Whole segments in a log-mel of ``n_frames`` frames."""
        return 1 + (n_frames - self.segment_frames) // self.hop_frames if n_frames >= self.segment_frames else 0

    def frames_samples(self, n_frames: int) -> int:
        """Audio samples ``n_frames`` uncentered frames need: (frames - 1) hops plus one FFT window."""
        return (n_frames - 1) * self.hop_length + self.n_fft

    def seconds(self, n_samples: int) -> float:
        return n_samples / self.sample_rate

    def samples(self, seconds: float) -> int:
        return round(seconds * self.sample_rate)

    def horizon_segments(self, seconds: float) -> int:
        """Segments in ``seconds`` of audio (at least one): how many a song estimate looks back over."""
        return max(1, self.n_segments(max(1, self.samples(seconds))))

    def strided(self, stride: int) -> AudioConfig:
        """The same segments, only every ``stride``-th one: labeling from fewer segments per song."""
        if stride < 1:
            raise ValueError("stride must be 1 or more")
        out = self if stride == 1 else self.replace(segment_hop_seconds=stride * self.effective_hop_seconds)
        if out.hop_frames != stride * self.hop_frames:
            raise ValueError(f"stride {stride} does not give whole hops of {self.hop_frames} frames")
        return out

    def replace(self, **changes: object) -> AudioConfig:
        return AudioConfig(**{**asdict(self), **changes})

    def to_dict(self) -> dict:
        """Requested values plus the realised frame and sample counts, for the manifest."""
        return {
            **asdict(self),
            "derived": {
                "segment_frames": self.segment_frames,
                "hop_frames": self.hop_frames,
                "segment_samples": self.segment_samples,
                "hop_samples": self.hop_samples,
                "effective_segment_seconds": self.effective_segment_seconds,
                "effective_hop_seconds": self.effective_hop_seconds,
                "note": "segment length and hop are rounded to whole STFT hops",
            },
        }

    @classmethod
    def from_dict(cls, data: dict) -> AudioConfig:
        """Rebuild from ``to_dict`` output; refuses unknown keys and stale derived values."""
        data = dict(data)
        derived = data.pop("derived", None)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown audio config keys: {sorted(unknown)}")
        config = cls(**data)
        if derived is not None:
            for key in ("segment_frames", "hop_frames", "segment_samples", "hop_samples"):
                if key in derived and derived[key] != getattr(config, key):
                    raise ValueError(
                        f"inconsistent audio config: {key} is {derived[key]} in the manifest "
                        f"but {getattr(config, key)} from its settings"
                    )
        return config

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> AudioConfig:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class SongConfig:
    """The song level: what the aggregator reads and how far back a live estimate looks.

    Per task, the ``statistics`` of the song's segment probabilities (``theta`` is the share-above
    threshold); with ``embedding``, also the mean and standard deviation over the song's segments of
    the segment model's embedding. ``horizon`` is the clip length (seconds) the aggregator was fit on:
    the default span of the live song estimate. Travels from training into the bundle like ``AudioConfig``.
    """

    tasks: tuple[str, ...] = TASKS
    theta: float = 0.5
    statistics: tuple[str, ...] = STAT_NAMES
    embedding: bool = False
    horizon: float = 30.0
    # The last ``view_dims`` embedding values are a second view of the song (the pretrained AudioSet network's,
    # ``ModelConfig.view``): a logistic regression on their statistics gives this share of the song estimate,
    # the SVM reading the rest the remainder (0: no view; every statistic is the SVM's).
    view: float = 0.0
    view_dims: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "statistics", tuple(self.statistics))
        if not self.tasks:
            raise ValueError("a song config needs at least one task")
        if tuple(self.statistics) != STAT_NAMES:
            raise ValueError(f"statistics must be {', '.join(STAT_NAMES)} (the ones stats.py computes)")
        if not 0 < self.theta < 1 or self.horizon <= 0:
            raise ValueError("need 0 < theta < 1 and horizon > 0")
        if not 0 <= self.view < 1 or (self.view > 0) != (self.view_dims > 0) or (self.view and not self.embedding):
            raise ValueError("a second view needs 0 < view < 1, its width (view_dims) and embedding statistics")

    def n_features(self, embedding_dims: int = 0) -> int:
        """Length of the aggregator's input vector."""
        return len(self.tasks) * len(self.statistics) + (2 * embedding_dims if self.embedding else 0)

    def view_columns(self, embedding_dims: int) -> np.ndarray:
        """Where the view's statistics sit in the song vector (``stats.song_vector``: the probability statistics,
        then the embedding's mean, then its std; the view is the last ``view_dims`` of each); empty without one."""
        if not self.view:
            return np.zeros(0, dtype=np.int64)
        if not self.view_dims <= embedding_dims:
            raise ValueError(f"a view of {self.view_dims} values does not fit an embedding of {embedding_dims}")
        start = len(self.tasks) * len(self.statistics) + embedding_dims - self.view_dims
        return np.concatenate([np.arange(start, start + self.view_dims),
                               np.arange(start + embedding_dims, start + embedding_dims + self.view_dims)])

    def replace(self, **changes: object) -> SongConfig:
        return SongConfig(**{**asdict(self), **changes})

    def to_dict(self) -> dict:
        return {**asdict(self), "tasks": list(self.tasks), "statistics": list(self.statistics)}

    @classmethod
    def from_dict(cls, data: dict) -> SongConfig:
        """From ``to_dict`` output."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_record(cls, document: dict) -> SongConfig:
        """The song settings of a bundle's manifest or a run's config.json: its ``song`` record, or, written
        before there was one (the packaged bundles), the same facts in ``aggregator`` (theta, song_seconds,
        embedding or embedding_dims; tasks in it or beside it). The one reader of both."""
        if "song" in document:
            missing = {"tasks", "theta", "embedding", "horizon"} - set(document["song"])
            if missing:
                raise ValueError(f"song settings lack {', '.join(sorted(missing))}")
            return cls.from_dict(document["song"])
        record = document["aggregator"]
        tasks = record.get("tasks", document.get("tasks"))
        if not isinstance(tasks, list) or not tasks:
            raise ValueError("no tasks")
        embedding = bool(record.get("embedding", int(record.get("embedding_dims", 0)) > 0))
        return cls(tasks=tuple(tasks), theta=float(record["theta"]), horizon=float(record["song_seconds"]),
                   embedding=embedding)


DEFAULT_SONG = SongConfig()

# The front end the pretrained musicnn models were trained on (16 kHz, n_fft 512, hop 256, 96 Slaney
# mels to 8 kHz); the floor is low enough that musicnn's log10(1 + 10000 * mel) sees silence as 0.
MUSICNN_AUDIO = AudioConfig(sample_rate=16000, n_fft=512, hop_length=256, n_mels=96, fmin=0.0, fmax=8000.0,
                            log_floor=1e-10)

# EfficientAT's AudioSet front end (its preprocess.py, evaluation path): 32 kHz, pre-emphasis 0.97, STFT 1024
# with an 800-sample symmetric Hann window and hop 320, 128 Kaldi mels to 15 kHz, ln(mel + 1e-5). Its
# reference centres frames with reflect padding; here frames are hop-aligned like every other front end.
AUDIOSET_AUDIO = AudioConfig(sample_rate=32000, n_fft=1024, hop_length=320, n_mels=128, fmin=0.0, fmax=15000.0,
                             log_floor=1e-5, win_length=800, symmetric_window=True, preemphasis=0.97,
                             mel_scale="kaldi", log_offset=True)
