"""One fit of the whole pipeline on a set of training songs (``train.command`` runs `mer-live train`
around it, ``train.evaluate`` cross-validates it).

``fit`` = hold out validation songs, train the segment model (SSSL, the naive segment
baseline, or the clip-level baseline), then fit the song-level SVM on statistics of the
training songs' segment probabilities. ``predict_songs`` applies a fit to unseen songs. The
held-out songs of a fold never reach ``fit``: evaluation passes only training indices in.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mer_live.aggregate import SongAggregator, mean_probabilities
from mer_live.audio.read import load_audio
from mer_live.audio.samples import cut_segments
from mer_live.config import DEFAULT_SONG, TASKS, AudioConfig, SongConfig
from mer_live.errors import AudioError, MerLiveError
from mer_live.nn.model import ModelConfig, SegmentNet, split_logits
from mer_live.stats import song_vector
from mer_live.train.comm import Solo, pick_device
from mer_live.train.datasets import Clip
from mer_live.train.features import FeatureCache, apply_gain
from mer_live.train.labels import QUADRANTS, mood_targets, mood_vocabulary, quadrant_of
from mer_live.train.loop import DEFAULT_OPTIONS, LoopOptions, train
from mer_live.train.segments import SegmentSet
from mer_live.train.settings import NAIVE_OVERRIDES, TrainConfig
from mer_live.train.splits import train_val_split

CLIP_SHIFT_FRAMES = 64  # clip baseline: random crops of the whole clip as augmentation


@dataclass(frozen=True)
class Recipe:
    """What a fit trains: segments and front end (``audio``), the network, the training settings, the
    method (``settings.METHODS``) and the song-level model."""

    audio: AudioConfig
    model: ModelConfig
    train: TrainConfig
    method: str = "sssl"
    song: SongConfig = DEFAULT_SONG


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
    features: np.ndarray | None = None  # the clean songs' statistics, in the order of fit's indices
    other_features: list[np.ndarray] = dataclasses.field(default_factory=list)  # the same of the other versions
    members: list[Fitted] = dataclasses.field(default_factory=list)  # an ensemble's bodies, each with its own SVM


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
        what = "front-end maps" if model_config.caches_front_maps else "body features"
        log(f"{model_config.arch} {what} for {cache.computed} clips at {gain_db:+g} dB "
            f"({time.perf_counter() - started:.0f} s; cached for next time)")
    return inputs


def segment_set(inputs: list[np.ndarray], labels: np.ndarray, audio: AudioConfig, model_config: ModelConfig
                ) -> SegmentSet:
    """Segments of clips: log-mel slices, one-frame rows of a clip's cached body features, or its cached
    front-end maps."""
    if model_config.caches_front_maps:
        return SegmentSet.from_maps(inputs, labels, audio.segment_frames)
    if model_config.pretrained:
        return SegmentSet.from_rows(inputs, labels)
    return SegmentSet.from_clips(inputs, labels, audio)


def clip_labels(clips: list[Clip], indices: list[int]) -> np.ndarray:
    return np.array([[clips[i].labels[t] for t in TASKS] for i in indices], dtype=np.int64)


def song_moods(clips: list[Clip], indices: list[int], cfg: TrainConfig) -> list[tuple[str, ...]]:
    """What the mood head learns of each song ``indices``: its tags, or its quadrant (``cfg.mood_source``)."""
    if cfg.mood_source == "quadrant":
        return [(quadrant_of(clips[i].labels),) for i in indices]
    return [clips[i].tags for i in indices]


def with_moods(model_config: ModelConfig, clips: list[Clip], indices: list[int], cfg: TrainConfig) -> ModelConfig:
    """Under ``cfg.mood_tags``, the network with a mood head for the tags enough of the songs ``indices`` carry
    (``labels.mood_vocabulary``), or for the four quadrants; a network that has one keeps it (`mer-live train`
    names the tags in its run record before it fits)."""
    if not cfg.mood_tags or model_config.moods:
        return model_config
    if cfg.mood_source == "quadrant":
        return dataclasses.replace(model_config, moods=QUADRANTS)
    vocabulary = mood_vocabulary(clips[i].tags for i in indices)
    if not vocabulary:
        raise MerLiveError("--mood-tags W learns the songs' mood tags too, but too few of these songs carry any "
                           "(4Q's panda_dataset_taffc_metadata.csv holds them): drop --mood-tags")
    return dataclasses.replace(model_config, moods=vocabulary)


def method_config(method: str, cfg: TrainConfig, model_config: ModelConfig) -> TrainConfig:
    """The naive baseline is plain CE on inherited labels for every epoch (warm-up throughout).
    Cached body features are not spectrograms: no time shift, SpecAugment or pitch shift on them."""
    if model_config.pretrained:
        if method == "clip":
            raise MerLiveError("the clip-level baseline trains a from-scratch model; use --model compact or vgg16")
        cfg = dataclasses.replace(cfg, shift_frames=0, freq_mask=0, time_mask=0, pitch_shift=0.0)
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


@torch.no_grad()
def song_outputs(fitted: Fitted, logmels: list[np.ndarray], embedding: bool = False, batch_size: int = 256
                 ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Per song, (segments, tasks) probability of "high" and, with ``embedding``, (segments, dims) what
    the heads read; one pass of the segment model over every segment."""
    segments = _segments(fitted, logmels)
    net = fitted.net.trainable.eval()
    tasks = fitted.net.config.tasks
    probs, embeddings = [], []
    for s in range(0, len(segments), batch_size):
        x = torch.from_numpy(segments.batch(np.arange(s, min(s + batch_size, len(segments)))))
        if embedding:
            embeddings.append(net.embed(x))
            logits = net.classify(embeddings[-1])
        else:
            logits = net(x)
        probs.append(torch.stack([torch.softmax(v.float(), dim=1)[:, 1] for v in split_logits(logits, tasks).values()],
                                 dim=1))
    high = torch.cat(probs).numpy() if probs else np.zeros((0, len(tasks)), np.float32)
    emb = torch.cat(embeddings).numpy() if embeddings else None
    per_song = [segments.clip_of == c for c in range(len(logmels))]
    return [high[m] for m in per_song], [None if emb is None else emb[m] for m in per_song]


def song_probabilities(fitted: Fitted, logmels: list[np.ndarray]) -> list[np.ndarray]:
    """Per song, (segments, tasks) probability of "high" from the segment model."""
    return song_outputs(fitted, logmels)[0]


def song_features(fitted: Fitted, logmels: list[np.ndarray], song: SongConfig) -> np.ndarray:
    """The aggregator's input per song (``stats.song_vector``)."""
    probs, embeddings = song_outputs(fitted, logmels, song.embedding)
    return np.stack([song_vector(p, e, song.theta) for p, e in zip(probs, embeddings)])


def fit(clips: list[Clip], logmels: dict[Path, np.ndarray], indices: list[int], recipe: Recipe,
        options: LoopOptions = DEFAULT_OPTIONS, augment: list[dict[Path, np.ndarray]] = (),
        score_members: bool = False) -> Fitted:
    """Train on the songs ``indices`` (validation songs held out among them), fit the SVM.

    ``logmels`` holds what ``model_inputs`` gives per clip: log-mel, or cached body features.
    ``augment`` holds other versions of the same clips (at other gains, through the air): the training
    songs' versions join the segment model's training set (as paired views of the same segments under
    ``cfg.consistency``) and the SVM's (the first ``cfg.svm_copies`` of them, or all), under the same labels;
    validation uses the originals only. Under data-parallel training (``options.comm``) only the first
    process fits the SVM; the others return the segment model alone. ``score_members``: an ensemble's bodies
    also get an SVM each (``Fitted.members``), to compare them with the ensemble."""
    audio, method, song = recipe.audio, recipe.method, recipe.song
    model_config = with_moods(recipe.model, clips, indices, recipe.train)
    cfg = method_config(method, recipe.train, model_config)
    options = dataclasses.replace(options, comm=options.comm or Solo(pick_device(cfg.device)))
    if song.embedding and not model_config.has_embedding:
        raise MerLiveError("song-level embedding statistics need a pretrained model (--arch musicnn-msd, mn04, ...)")
    if bool(song.view) != model_config.view:
        raise MerLiveError("the song stage's second view and the pretrained network beside the model go together "
                           "(--pretrained-view W sets both)")
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
        if cfg.consistency:  # the other versions are paired views of the same segments, not more segments
            train_set = dataclasses.replace(segment_set(versions[0], clip_labels(clips, train_idx), audio,
                                                        model_config), versions=versions[1:])
        else:
            train_set = segment_set([m for v in versions for m in v], np.concatenate(
                [clip_labels(clips, train_idx)] * len(versions)), audio, model_config)
        val_set = segment_set(mels(val_idx), clip_labels(clips, val_idx), audio, model_config)
        if model_config.moods:
            moods = mood_targets(song_moods(clips, train_idx, cfg), model_config.moods)
            train_set = dataclasses.replace(train_set, moods=moods if cfg.consistency else np.concatenate(
                [moods] * len(versions)))
    net, history, gmm_records, members = train_bodies(train_set, val_set, audio, model_config, cfg, options)
    fitted = Fitted(net, None, method, audio, history, gmm_records, val_idx, frames)
    if method != "clip" and options.comm.is_first:
        with_aggregator(fitted, clips, logmels, augment, indices, song, cfg)
        if score_members:
            fitted.members = [with_aggregator(Fitted(m, None, method, audio, [], {}, val_idx), clips, logmels,
                                              augment, indices, song, cfg) for m in members]
    return fitted


def with_aggregator(model: Fitted, clips: list[Clip], logmels: dict[Path, np.ndarray],
                    augment: list[dict[Path, np.ndarray]], indices: list[int], song: SongConfig, cfg: TrainConfig
                    ) -> Fitted:
    """``model`` with its song SVM fit on the songs ``indices`` and their other versions, as ``fit`` fits it."""
    model.features = song_features(model, [logmels[clips[i].path] for i in indices], song)
    model.other_features = [song_features(model, [version[clips[i].path] for i in indices], song)
                            for version in augment]
    model.aggregator = fit_aggregator(model, clip_labels(clips, indices), song, cfg.seed, cfg.svm_copies)
    return model


def fit_aggregator(model: Fitted, labels: np.ndarray, song: SongConfig, seed: int, copies: int | None,
                   view: float | None = None) -> SongAggregator:
    """The song SVM on the clean songs' statistics and those of their first ``copies`` other versions
    (None: all), every version under its song's labels; with a second view (``song.view``), mixed with the view's
    logistic regression at ``view`` (default: ``song.view``; 0: the SVM alone, reading what it reads beside one)."""
    rows = [model.features, *model.other_features[:copies]]
    columns = song.view_columns(model.net.backbone.embedding_dims) if song.view else None
    return SongAggregator(list(song.tasks), seed=seed, view_columns=columns,
                          view_weight=song.view if view is None else view).fit(
        np.concatenate(rows), np.concatenate([labels] * len(rows)))


def train_bodies(train_set: SegmentSet, val_set: SegmentSet, audio: AudioConfig, model_config: ModelConfig,
                 cfg: TrainConfig, options: LoopOptions) -> tuple[SegmentNet, list[dict], dict, list[SegmentNet]]:
    """``loop.train`` once, or once per body of an ensemble (``model_config.bodies``): body k trains alone with
    seed ``cfg.seed + k`` on the same segments and validation songs (so body 1 is the single network of the same
    settings), then they run as one. Returns the network, the history (rows carry ``body`` in an ensemble),
    the first body's GMM records and the members (empty for one network). Under ``cfg.co_divide`` the bodies
    train together instead (``loop.train``), their loop checkpoint beside the run's."""
    if model_config.bodies == 1:
        return *train(train_set, val_set, audio, model_config, cfg, options), []
    if cfg.co_divide:
        net, history, records = train(train_set, val_set, audio, model_config, cfg,
                                      dataclasses.replace(options, checkpoint=beside(options.checkpoint, "co-divide")))
        return net, history, records, net.members()
    nets, history = [], []
    records: dict = {}
    for k in range(model_config.bodies):
        mode = model_config.finetunes[k]
        options.log(f"body {k + 1} of {model_config.bodies} (seed {cfg.seed + k}, finetune {mode})")
        alone = dataclasses.replace(options, checkpoint=beside(options.checkpoint, f"body{k + 1}"))
        net, rows, gmm = train(train_set, val_set, audio, model_config.member(k),
                               dataclasses.replace(cfg, seed=cfg.seed + k), alone)
        nets.append(net)
        history += [{**row, "body": k + 1} for row in rows]
        records = records or gmm
    return SegmentNet.ensemble(nets, model_config), history, records, nets


def beside(checkpoint: Path | None, tag: str) -> Path | None:
    """A loop checkpoint next to the run's (``checkpoint.TAG.pt``), for runs that train their bodies apart from it."""
    return None if checkpoint is None else checkpoint.with_name(f"{checkpoint.stem}.{tag}{checkpoint.suffix}")


def predict_songs(fitted: Fitted, logmels: list[np.ndarray], song: SongConfig,
                  other_svms: dict[str, SongAggregator] | None = None) -> dict[str, np.ndarray]:
    """Song-level P(high) per task: {"svm": (songs, tasks), "mean": (songs, tasks)}, and "svm" + name for every
    other song SVM of the same network (``fit_aggregator``), read from the same features: the network runs once."""
    if fitted.method == "clip":
        probs = np.concatenate(song_probabilities(fitted, logmels))
        return {"clip": probs}
    features = song_features(fitted, logmels, song)
    return {"svm": fitted.aggregator.predict_proba(features),
            "mean": mean_probabilities(features, list(TASKS)),
            **{"svm" + name: svm.predict_proba(features) for name, svm in (other_svms or {}).items()}}


def verification_audio(clips: list[Clip], indices: list[int], audio: AudioConfig, count: int = 16
                       ) -> np.ndarray:
    """Real segments for the exporter's ONNX-vs-PyTorch check, from a few of the songs ``indices``."""
    segments = []
    for i in indices:
        try:
            segments.extend(cut_segments(load_audio(clips[i].path, audio.sample_rate), audio)[::7])
        except AudioError:
            continue
        if len(segments) >= count:
            break
    return np.stack(segments[:count]).astype(np.float32)


def song_horizon(logmels: dict[Path, np.ndarray], audio: AudioConfig) -> float:
    """The median clip length in seconds (to 0.01 s): what the song aggregator is fit on."""
    frames = float(np.median([m.shape[1] for m in logmels.values()]))
    return round(audio.seconds(frames * audio.hop_length), 2)


