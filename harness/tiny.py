"""Run directories and bundles without training: for tests and for the benchmarks' stand-in models.

``make_tiny_run`` writes a run directory with ``rundir.write_run``, exactly as the trainer does: a
seeded, randomly initialised SegmentNet checkpoint (for a pretrained architecture: the real body
and an untrained top), a SongAggregator really fitted on synthetic song statistics, config and
metrics JSON and real verification arrays (tones and noise). ``make_tiny_bundle`` exports it with
the real exporter, so runtime tests and benchmarks use real ONNX graphs and a real hashed manifest
in a couple of seconds. Compute does not depend on the weights, so a stand-in measures the speed
of a trained model of the same architecture; given a trained bundle's model and song settings (``model``,
``song``), it is that bundle's configuration at another segment length (a pretrained view and embedding
statistics included).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from mer_live.aggregate import SongAggregator
from mer_live.config import AudioConfig, SongConfig
from mer_live.nn.model import ModelConfig, SegmentNet
from mer_live.stats import segment_statistics
from mer_live.train import rundir

SONG = SongConfig(horizon=30.0)
HEAD_GAIN = 1.5


def verify_audio(audio: AudioConfig, rng: np.random.Generator, seconds: float = 8.0) -> np.ndarray:
    """A few seconds of tones and noise cut into hop-spaced segments, (n, segment_samples)."""
    sr = audio.sample_rate
    t = np.arange(int(seconds * sr)) / sr
    signal = 0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.2 * np.sin(2 * np.pi * 1250.0 * t * (1 + t / seconds))
    signal += 0.05 * rng.standard_normal(len(t))
    starts = audio.segment_starts(len(signal))
    return np.stack([signal[s : s + audio.segment_samples] for s in starts]).astype(np.float32)


def song_statistics(rng: np.random.Generator, song: SongConfig = SONG, songs: int = 40, segments: int = 28,
                    embedding_dims: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Statistics of random segment probabilities (and, with ``song.embedding``, random embedding statistics of
    ``embedding_dims`` values); labels follow each song's mean so both classes exist."""
    n = len(song.tasks)
    features, labels = [], []
    for i in range(songs):
        centre = np.where(np.arange(n) % 2 == i % 2, 0.7, 0.3) + rng.uniform(-0.15, 0.15, n)
        probs = np.clip(centre + rng.normal(0.0, 0.15, (segments, n)), 0.0, 1.0)
        embedding = rng.normal(0.0, 1.0, 2 * embedding_dims) if song.embedding else np.zeros(0)
        features.append(np.concatenate([segment_statistics(probs, song.theta), embedding]))
        labels.append((probs.mean(axis=0) > 0.5).astype(int))
    return np.array(features), np.array(labels)


def spread(net: SegmentNet, audio: np.ndarray) -> SegmentNet:
    """Set batch-norm statistics on real audio and standardise the logits on it, so that a random
    from-scratch network's probabilities vary between inputs instead of all sitting at 0 or 0.5."""
    rng = np.random.default_rng(len(audio))
    levels = np.array([0.01, 0.05, 0.2, 0.5], dtype=np.float32)[:, None]
    noise = (rng.standard_normal((len(levels), audio.shape[1])) * levels).astype(np.float32)
    x = torch.from_numpy(np.concatenate([audio, noise]))
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the calibration pass
    with torch.no_grad():
        net.train()
        net.backbone.features(net.frontend(x).unsqueeze(1))
        net.eval()
        logits = net(x)
        last = net.backbone.head[-1]
        gain = HEAD_GAIN / logits.std(dim=0).clamp(min=1e-6)
        last.weight.mul_(gain[:, None])
        last.bias.sub_(logits.mean(dim=0)).mul_(gain)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 0.1
    return net


def make_tiny_run(run_dir: str | Path, segment_seconds: float = 3.0, seed: int = 0, arch: str = "compact",
                  model: ModelConfig | None = None, song: SongConfig = SONG) -> Path:
    """A complete run directory (no training) at ``run_dir``; returns its path. ``model`` (default: ``arch``
    with the song's tasks) and ``song`` are the settings to copy, e.g. a packaged bundle's."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model_config = model or ModelConfig(arch=arch, tasks={task: 2 for task in song.tasks})
    audio = model_config.default_audio().replace(segment_seconds=segment_seconds)
    net = SegmentNet(audio, model_config).eval()
    if not (model_config.pretrained or model_config.audioset):
        net = spread(net, verify_audio(audio, rng))
    dims = net.backbone.embedding_dims if song.embedding else 0
    features, labels = song_statistics(rng, song, embedding_dims=dims)
    with warnings.catch_warnings():  # sklearn 1.9 deprecates SVC(probability=True); the aggregator uses it
        warnings.simplefilter("ignore", FutureWarning)
        aggregator = SongAggregator(list(song.tasks), seed=seed, view_columns=song.view_columns(dims),
                                    view_weight=song.view).fit(features, labels)
    config = rundir.run_config(
        audio, model_config, {"epochs": 0, "seed": seed, "note": "harness.tiny: random weights, not trained"},
        song, dataset={"name": "synthetic", "root": None, "binarization": "song mean > 0.5"})
    return rundir.write_run(run_dir, config, aggregator,
                            {"protocol": "none (synthetic test run)", "accuracy": None},
                            verify_audio(audio, rng), features[:12], model_state=net.state_dict())


def make_tiny_bundle(out_dir: str | Path, segment_seconds: float = 3.0, seed: int = 0, arch: str = "compact",
                     model: ModelConfig | None = None, song: SongConfig = SONG) -> Path:
    """``make_tiny_run`` in ``<out_dir>-run`` then ``export_run`` into ``out_dir``; returns ``out_dir``."""
    from mer_live.export.exporter import export_run

    out_dir = Path(out_dir)
    run = make_tiny_run(out_dir.with_name(out_dir.name + "-run"), segment_seconds, seed, arch, model, song)
    return export_run(run, out_dir, log=lambda message: None)
