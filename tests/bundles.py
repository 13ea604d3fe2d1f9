"""Real training runs and bundles without training, for tests (a helper module, not a test file).

``make_tiny_run`` writes a run directory exactly as ``mer_live.train.rundir`` describes it: a
seeded, randomly initialised compact SegmentNet checkpoint, a SongAggregator really fitted on
synthetic song statistics, config/metrics JSON and real verification arrays (tones and noise).
``make_tiny_bundle`` exports it with the real exporter, so runtime tests exercise real ONNX
graphs and a real hashed manifest in a couple of seconds.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from mer_live.aggregate import SongAggregator
from mer_live.config import AudioConfig
from mer_live.model import ModelConfig, SegmentNet
from mer_live.stats import segment_statistics
from mer_live.train import rundir

TASKS = ["valence", "arousal"]
SONG_SECONDS = 30.0
THETA = 0.5
HEAD_GAIN = 1.5


def _verify_audio(audio: AudioConfig, rng: np.random.Generator, seconds: float = 8.0) -> np.ndarray:
    """A few seconds of tones and noise cut into hop-spaced segments, (n, segment_samples)."""
    sr = audio.sample_rate
    t = np.arange(int(seconds * sr)) / sr
    signal = 0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.2 * np.sin(2 * np.pi * 1250.0 * t * (1 + t / seconds))
    signal += 0.05 * rng.standard_normal(len(t))
    starts = range(0, len(signal) - audio.segment_samples + 1, audio.hop_samples)
    return np.stack([signal[s : s + audio.segment_samples] for s in starts]).astype(np.float32)


def _song_statistics(rng: np.random.Generator, songs: int = 40, segments: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Statistics of random segment probabilities; labels follow each song's mean so both classes exist."""
    features, labels = [], []
    for i in range(songs):
        centre = np.where(np.arange(len(TASKS)) % 2 == i % 2, 0.7, 0.3) + rng.uniform(-0.15, 0.15, len(TASKS))
        probs = np.clip(centre + rng.normal(0.0, 0.15, (segments, len(TASKS))), 0.0, 1.0)
        features.append(segment_statistics(probs, THETA))
        labels.append((probs.mean(axis=0) > 0.5).astype(int))
    return np.array(features), np.array(labels)


def _spread(net: SegmentNet, audio: np.ndarray) -> SegmentNet:
    """Set batch-norm statistics on real audio and standardise the logits on it, so that a random
    network's probabilities vary between inputs instead of all sitting at 0 or 0.5."""
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


def make_tiny_run(run_dir: str | Path, segment_seconds: float = 3.0, seed: int = 0) -> Path:
    """A complete run directory (no training) at ``run_dir``; returns its path."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    audio = AudioConfig(segment_seconds=segment_seconds)
    model_config = ModelConfig(arch="compact", tasks={task: 2 for task in TASKS})
    net = _spread(SegmentNet(audio, model_config), _verify_audio(audio, rng))
    rundir.save_checkpoint(run_dir / rundir.CHECKPOINT, {"model": net.state_dict(), "epoch": 0})

    features, labels = _song_statistics(rng)
    with warnings.catch_warnings():  # sklearn 1.9 deprecates SVC(probability=True); the aggregator uses it
        warnings.simplefilter("ignore", FutureWarning)
        aggregator = SongAggregator(TASKS, theta=THETA, seed=seed).fit(features, labels)
    rundir.save_aggregator(run_dir / rundir.AGGREGATOR, aggregator)

    rundir.save_json(run_dir / rundir.CONFIG, {
        "audio": audio.to_dict(),
        "model": model_config.to_dict(),
        "train": {"epochs": 0, "seed": seed, "note": "tests/bundles.py: random weights, not trained"},
        "dataset": {"name": "synthetic", "root": None, "binarization": "song mean > 0.5"},
        "aggregator": {"theta": THETA, "song_seconds": SONG_SECONDS, "tasks": TASKS},
    })
    rundir.save_json(run_dir / rundir.METRICS, {"protocol": "none (synthetic test run)", "accuracy": None})
    np.save(run_dir / "verify_audio.npy", _verify_audio(audio, rng))
    np.save(run_dir / "verify_features.npy", features[:12])
    return run_dir


def make_tiny_bundle(out_dir: str | Path, segment_seconds: float = 3.0, seed: int = 0) -> Path:
    """``make_tiny_run`` in ``<out_dir>-run`` then ``export_run`` into ``out_dir``; returns ``out_dir``."""
    from mer_live.export.exporter import export_run

    out_dir = Path(out_dir)
    run = make_tiny_run(out_dir.with_name(out_dir.name + "-run"), segment_seconds, seed)
    return export_run(run, out_dir, log=lambda message: None)
