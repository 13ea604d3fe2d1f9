"""One fit of the whole pipeline on a set of training songs, and `mer-live train` around it.

``fit`` = hold out validation songs, train the segment model (SSSL, the naive segment
baseline, or the clip-level baseline), then fit the song-level SVM on statistics of the
training songs' segment probabilities. ``predict_songs`` applies a fit to unseen songs. The
held-out songs of a fold never reach ``fit``: evaluation passes only training indices in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from mer_live.aggregate import SongAggregator, mean_probabilities
from mer_live.audio.read import load_audio
from mer_live.audio.samples import cut_segments
from mer_live.config import DEFAULT_SONG, TASKS, AudioConfig, SongConfig
from mer_live.errors import AudioError, MerLiveError
from mer_live.nn.model import ModelConfig, SegmentNet
from mer_live.stats import song_vector
from mer_live.train import rundir
from mer_live.train.cache import LogMelCache
from mer_live.train.datasets import Clip, Dataset, load_dataset
from mer_live.train.features import FeatureCache, apply_gain
from mer_live.train.segments import SegmentSet
from mer_live.train.settings import METHODS, NAIVE_OVERRIDES, DataConfig, RunSettings, TrainConfig
from mer_live.train.splits import train_val_split
from mer_live.train.sssl import pick_device, train
from mer_live.train.steps import predict
from mer_live.train.synth import make_synth_corpus

if TYPE_CHECKING:
    from mer_live.train.distributed import Comm

__all__ = ["METHODS", "TASKS", "Fitted", "fit", "predict_songs", "prepare_data", "train_run"]
CLIP_SHIFT_FRAMES = 64  # clip baseline: random crops of the whole clip as augmentation


@dataclass
class Fitted:
    """A trained segment model and its song-level aggregator."""

    net: SegmentNet
    aggregator: SongAggregator | None  # None for the clip-level baseline (one output per clip)
    method: str
    audio: AudioConfig
    history: list[dict]
    gmm_records: dict
    val_indices: list[int]
    clip_frames: int = 0
    features: np.ndarray | None = None  # song statistics the SVM was fit on, in the order of fit's indices


def log_console(quiet: bool = False):
    """A stderr console whose log lines are not wrapped at 80 columns when stderr is a file or pipe."""
    import sys

    from rich.console import Console

    return Console(stderr=True, width=None if sys.stderr.isatty() else 200, quiet=quiet)


def model_inputs(logmels: dict[Path, np.ndarray], audio: AudioConfig, model_config: ModelConfig,
                 cache_dir: Path, gain_db: float = 0.0, log: Callable[[str], None] | None = None,
                 threads: int = 0) -> dict[Path, np.ndarray]:
    """What the trainable part reads per clip: the log-mel (from scratch) or the frozen body's
    per-segment features (pretrained, computed once and cached beside the log-mel cache).
    ``gain_db`` scales the input as a quieter or louder recording of the same audio would."""
    if not model_config.pretrained:
        return {path: apply_gain(mel, gain_db, audio) for path, mel in logmels.items()}
    cache = FeatureCache(cache_dir.parent / "features", audio, model_config, threads)
    started = time.perf_counter()
    inputs = cache.build(logmels, gain_db)
    if log is not None and cache.computed:
        log(f"{model_config.arch} body features for {cache.computed} clips at {gain_db:+g} dB "
            f"({time.perf_counter() - started:.0f} s; cached for next time)")
    return inputs


def segment_set(inputs: list[np.ndarray], labels: np.ndarray, audio: AudioConfig, model_config: ModelConfig
                ) -> SegmentSet:
    """Segments of clips: log-mel slices, or one-frame rows of a clip's cached body features."""
    if model_config.pretrained:
        return SegmentSet.from_rows(inputs, labels)
    return SegmentSet.from_clips(inputs, labels, audio)


def clip_labels(clips: list[Clip], indices: list[int]) -> np.ndarray:
    return np.array([[clips[i].labels[t] for t in TASKS] for i in indices], dtype=np.int64)


def method_config(method: str, cfg: TrainConfig, model_config: ModelConfig) -> TrainConfig:
    """The naive baseline is plain CE on inherited labels for every epoch (warm-up throughout).
    Cached body features are not spectrograms: no time shift or SpecAugment on them."""
    if model_config.pretrained:
        if method == "clip":
            raise MerLiveError("the clip-level baseline trains a from-scratch model; use --model compact or vgg16")
        cfg = dataclasses.replace(cfg, shift_frames=0, freq_mask=0, time_mask=0)
    if method == "naive":
        return dataclasses.replace(cfg, warmup_epochs=cfg.epochs, **NAIVE_OVERRIDES)
    if method == "clip":
        return dataclasses.replace(cfg, warmup_epochs=cfg.epochs, shift_frames=CLIP_SHIFT_FRAMES,
                                   segments_per_epoch=0, **NAIVE_OVERRIDES)
    return cfg


def _segments(fitted: Fitted, logmels: list[np.ndarray]) -> SegmentSet:
    dummy = np.zeros((len(logmels), len(TASKS)), dtype=np.int64)
    if fitted.method == "clip":
        return SegmentSet.one_per_clip(logmels, dummy, fitted.clip_frames)
    return segment_set(logmels, dummy, fitted.audio, fitted.net.config)


def song_probabilities(fitted: Fitted, logmels: list[np.ndarray]) -> list[np.ndarray]:
    """Per song, (segments, tasks) probability of "high" from the segment model."""
    segments = _segments(fitted, logmels)
    probs = predict(fitted.net.trainable, segments, fitted.net.config.tasks, torch.device("cpu"))
    high = np.stack([probs[t][:, 1] for t in TASKS], axis=1)
    return [high[segments.clip_of == c] for c in range(len(logmels))]


@torch.no_grad()
def song_embeddings(fitted: Fitted, logmels: list[np.ndarray], batch_size: int = 512) -> list[np.ndarray]:
    """Per song, (segments, dims) embedding the heads read (pretrained models only)."""
    segments = _segments(fitted, logmels)
    top = fitted.net.trainable.eval()
    parts = [top.embed(torch.from_numpy(segments.batch(np.arange(s, min(s + batch_size, len(segments))))))
             for s in range(0, len(segments), batch_size)]
    embeddings = torch.cat(parts).numpy()
    return [embeddings[segments.clip_of == c] for c in range(len(logmels))]


def song_features(fitted: Fitted, logmels: list[np.ndarray], song: SongConfig) -> np.ndarray:
    """The aggregator's input per song (``stats.song_vector``)."""
    probs = song_probabilities(fitted, logmels)
    embeddings = song_embeddings(fitted, logmels) if song.embedding else [None] * len(probs)
    return np.stack([song_vector(p, e, song.theta) for p, e in zip(probs, embeddings)])


def fit(
    clips: list[Clip],
    logmels: dict[Path, np.ndarray],
    indices: list[int],
    audio: AudioConfig,
    model_config: ModelConfig,
    cfg: TrainConfig,
    method: str = "sssl",
    song: SongConfig = DEFAULT_SONG,
    checkpoint: Path | None = None,
    resume: bool = False,
    log: Callable[[str], None] = print,
    progress: Callable[[int, int], None] | None = None,
    augment: list[dict[Path, np.ndarray]] = (),
    comm: Comm | None = None,
) -> Fitted:
    """Train on the songs ``indices`` (validation songs held out among them), fit the SVM.

    ``logmels`` holds what ``model_inputs`` gives per clip: log-mel, or cached body features.
    ``augment`` holds other versions of the same clips (the inputs at other gains): the training
    songs' versions join the segment model's training set and the SVM's, under the same labels;
    validation uses the originals only. Under data-parallel training (``comm``) only the first
    process fits the SVM; the others return the segment model alone."""
    cfg = method_config(method, cfg, model_config)
    if song.embedding and not model_config.pretrained:
        raise MerLiveError("song-level embedding statistics need a pretrained model (--model musicnn-msd, ...)")
    train_idx, val_idx = train_val_split(indices, clips, cfg.val_fraction, cfg.seed)

    def mels(idx: list[int]) -> list[np.ndarray]:
        return [logmels[clips[i].path] for i in idx]

    if method == "clip":
        frames = int(np.median([logmels[clips[i].path].shape[1] for i in indices]))
        train_set = SegmentSet.one_per_clip(mels(train_idx), clip_labels(clips, train_idx), frames)
        val_set = SegmentSet.one_per_clip(mels(val_idx), clip_labels(clips, val_idx), frames)
    else:
        frames = 0
        versions = [mels(train_idx)] + [[extra[clips[i].path] for i in train_idx] for extra in augment]
        train_set = segment_set([m for v in versions for m in v], np.concatenate(
            [clip_labels(clips, train_idx)] * len(versions)), audio, model_config)
        val_set = segment_set(mels(val_idx), clip_labels(clips, val_idx), audio, model_config)
    net, history, gmm_records = train(train_set, val_set, audio, model_config, cfg, checkpoint, resume, log,
                                      progress, comm)
    fitted = Fitted(net, None, method, audio, history, gmm_records, val_idx, frames)
    if method != "clip" and (comm is None or comm.is_first):
        fitted.features = song_features(fitted, mels(indices), song)
        extra = [song_features(fitted, [version[clips[i].path] for i in indices], song) for version in augment]
        fitted.aggregator = SongAggregator(list(song.tasks), seed=cfg.seed).fit(
            np.concatenate([fitted.features, *extra]), np.concatenate([clip_labels(clips, indices)] * (1 + len(extra))))
    return fitted


def predict_songs(fitted: Fitted, logmels: list[np.ndarray], song: SongConfig) -> dict[str, np.ndarray]:
    """Song-level P(high) per task: {"svm": (songs, tasks), "mean": (songs, tasks)}."""
    if fitted.method == "clip":
        probs = np.concatenate(song_probabilities(fitted, logmels))
        return {"clip": probs}
    features = song_features(fitted, logmels, song)
    return {"svm": fitted.aggregator.predict_proba(features),
            "mean": mean_probabilities(features, list(TASKS))}


def verification_audio(clips: list[Clip], indices: list[int], audio: AudioConfig, count: int = 16
                       ) -> np.ndarray:
    """Real segments for the exporter's ONNX-vs-PyTorch check, from a few validation songs."""
    segments = []
    for i in indices:
        try:
            segments.extend(cut_segments(load_audio(clips[i].path, audio.sample_rate), audio)[::7])
        except AudioError:
            continue
        if len(segments) >= count:
            break
    return np.stack(segments[:count]).astype(np.float32)


def prepare_data(data: DataConfig, audio: AudioConfig, quiet: bool = False
                 ) -> tuple[Dataset, list[Clip], dict[Path, np.ndarray]]:
    """Load the dataset and every clip's cached log-mel; undecodable clips are reported and skipped
    (``quiet``: no progress or log lines, as on every data-parallel process but the first)."""
    from rich.progress import Progress

    console = log_console(quiet)
    root = data.root
    if data.dataset == "synth":
        root = Path(root or "runs/synth")
        if not (root / "manifest.csv").is_file():
            make_synth_corpus(root, data.synth_clips, seconds=data.synth_seconds, sr=audio.sample_rate,
                              seed=data.seed, change_fraction=0.25)
    if root is None:
        raise MerLiveError(f"--root is required for --dataset {data.dataset}")
    dataset = load_dataset(data.dataset, root, data.thresholds or None)
    labeled = [c for c in dataset.clips if c.labels is not None and all(t in c.labels for t in TASKS)]
    if len(labeled) < 8:
        raise MerLiveError(f"{dataset.root}: only {len(labeled)} labeled clips found; training needs at least 8")
    cache = LogMelCache(data.cache, audio)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"log-mel cache ({len(labeled)} clips)", total=len(labeled))
        logmels, failures = cache.build(labeled, workers=data.workers,
                                        progress=lambda done, total: bar.update(task, completed=done))
    for path, reason in failures:
        console.print(f"[yellow]skipped[/] {path}: {reason}")
    clips = [c for c in labeled if c.path in logmels]
    console.log(f"{dataset.name}: {len(clips)} clips ({len(failures)} skipped, {len(dataset.skipped)} annotated "
                f"without audio); binarization {dataset.binarization}")
    return dataset, clips, logmels


def song_horizon(logmels: dict[Path, np.ndarray], audio: AudioConfig) -> float:
    """The median clip length in seconds (to 0.01 s): what the song aggregator is fit on."""
    frames = float(np.median([m.shape[1] for m in logmels.values()]))
    return round(audio.seconds(frames * audio.hop_length), 2)


def run_record(run: RunSettings, cfg: TrainConfig, audio: AudioConfig, model_config: ModelConfig, song: SongConfig,
               dataset: Dataset | None = None, clips: int = 0, device: str = "") -> dict:
    """config.json of a `mer-live train` run."""
    extra: dict = {"method": run.method}
    if dataset is not None:
        extra["dataset"] = {"name": dataset.name, "root": str(dataset.root), "clips": clips,
                            "binarization": dataset.binarization}
    if device:
        extra["device"] = device
    return rundir.run_config(audio, model_config, cfg.to_dict(), song, **extra)


def train_run(run: RunSettings, data: DataConfig, cfg: TrainConfig, audio: AudioConfig, model_config: ModelConfig,
              song: SongConfig, dataset: Dataset, clips: list[Clip], logmels: dict[Path, np.ndarray],
              comm: Comm | None = None) -> Path:
    """`mer-live train`: fit on every clip and leave a complete run directory (the first process only,
    under data-parallel training ``comm``)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from mer_live.train import plots

    first = comm is None or comm.is_first
    console = log_console(quiet=not first)
    out = Path(run.out)
    device = comm.device if comm is not None else pick_device(cfg.device)
    log = console.log
    log(f"training {model_config.arch} ({run.method}) on {device.type}"
        f"{f' x {comm.world_size} processes' if comm is not None else ''}; "
        f"segments {audio.effective_segment_seconds:.3f} s every {audio.effective_hop_seconds:.3f} s")
    song = song.replace(horizon=song_horizon(logmels, audio))
    config = run_record(run, cfg, audio, model_config, song, dataset, len(clips), device.type)
    if run.resume:
        rundir.check_resume(out, config)
    if first:
        rundir.write_config(out, config)
    with comm.first_then_rest() if comm is not None else contextlib.nullcontext():
        inputs = model_inputs(logmels, audio, model_config, data.cache, log=log)
        augment = [model_inputs(logmels, audio, model_config, data.cache, g, log=log) for g in cfg.gain_augment_db]
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True, disable=not first) as bar:
        task = bar.add_task("epoch steps", total=1)
        fitted = fit(clips, inputs, list(range(len(clips))), audio, model_config, cfg, run.method, song,
                     checkpoint=out / rundir.CHECKPOINT, resume=run.resume, log=log,
                     progress=lambda done, total: bar.update(task, completed=done, total=total), augment=augment,
                     comm=comm)
    if not first:
        return out
    if fitted.aggregator is None:
        raise MerLiveError("the clip-level baseline has no song aggregator to export; use it with `evaluate`")
    val_features = fitted.features[fitted.val_indices]  # fit ran on every clip, indices 0..n-1
    val_pred = fitted.aggregator.predict_proba(val_features) > 0.5
    val_true = clip_labels(clips, fitted.val_indices)
    metrics = {
        "history": fitted.history,
        "best_epoch": max(fitted.history, key=lambda r: r.get("val_song_auc", 0))["epoch"],
        "aggregator_best_params": fitted.aggregator.best_params,
        "validation_songs": len(fitted.val_indices),
        "validation_svm_acc_note": "SVM fit on all songs including these; optimistic",
        "validation_svm_acc": {t: float((val_pred[:, k] == val_true[:, k]).mean()) for k, t in enumerate(song.tasks)},
    }
    rundir.write_run(out, config, fitted.aggregator, metrics, verification_audio(clips, fitted.val_indices, audio),
                     val_features)
    plots.training_curves(fitted.history, list(song.tasks), out / rundir.PLOTS / "training_curves.png")
    if fitted.gmm_records:
        for t in song.tasks:
            plots.gmm_separation(fitted.gmm_records, t, out / rundir.PLOTS / f"gmm_{t}.png")
    console.log(f"run written to {out}")
    return out
