"""The run directory: what `mer-live train` leaves and `mer-live export` reads. This module writes it.

RUN_DIR/
  config.json        {"audio": AudioConfig.to_dict(), "model": ModelConfig.to_dict(),
                      "train": {...hyperparameters...}, "method": str, "dataset": {...name, root, binarization...},
                      "song": SongConfig.to_dict() (horizon: the median training clip length)}
  checkpoint.pt      {"model": SegmentNet.state_dict(), "epoch": int, ...} (written atomically)
  aggregator.pkl     pickled mer_live.aggregate.SongAggregator
  metrics.json       training history and validation metrics
  verify_audio.npy   float32 (n, segment_samples): real segments the exporter checks ORT against
  verify_features.npy float64 (m, n_features): song statistics the exporter checks the aggregator on
  plots/*.png

Every file goes through ``mer_live.atomic.atomic_file``: a kill never leaves half of one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mer_live.aggregate import SongAggregator
from mer_live.atomic import atomic_file, atomic_write_text
from mer_live.config import AudioConfig, SongConfig
from mer_live.errors import MerLiveError
from mer_live.nn.model import ModelConfig, SegmentNet
from mer_live.train.settings import TRAIN_DEFAULTS

CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
AGGREGATOR = "aggregator.pkl"
METRICS = "metrics.json"
VERIFY_AUDIO = "verify_audio.npy"
VERIFY_FEATURES = "verify_features.npy"
PLOTS = "plots"
# settings a checkpoint may be resumed under although they differ: more epochs extend a run; where it runs
# does not change what it learns; the song SVM is refit at the end of every run, the network untouched
RESUMABLE_CHANGES = {"train": ("epochs", "device", "svm_copies")}


def run_config(audio: AudioConfig, model_config: ModelConfig, train: dict, song: SongConfig, **extra: object
               ) -> dict:
    """config.json's content: the settings every reader needs, and ``extra`` records (method, dataset, device)."""
    return {"audio": audio.to_dict(), "model": model_config.to_dict(), "train": train, **extra,
            "song": song.to_dict()}


@dataclass
class Run:
    path: Path
    config: dict
    audio: AudioConfig
    model_config: ModelConfig
    dropped_columns: tuple[int, ...] = ()  # ``without_view``: the song vector's view columns, left out

    @property
    def song(self) -> SongConfig:
        return SongConfig.from_record(self.config)

    def without_view(self) -> Run:
        """This run as one trained without ``--pretrained-view``: training never sees the view, so leaving it
        out gives the network and song SVM such a run trains (a cheaper tier from the same run)."""
        if not self.model_config.view:
            raise MerLiveError(f"{self.path}: has no pretrained view to leave out (trained without "
                               "--pretrained-view)")
        columns = self.song.view_columns(self.song.view_dims + self.load_model().backbone.width)
        config = {**self.config, "model": {**self.config["model"], "view": False},
                  "song": {**self.config["song"], "view": 0.0, "view_dims": 0}}
        return dataclasses.replace(self, config=config, model_config=dataclasses.replace(self.model_config, view=False),
                                   dropped_columns=tuple(int(c) for c in columns))

    def load_model(self) -> SegmentNet:
        net = SegmentNet(self.audio, self.model_config)
        state = torch.load(self.path / CHECKPOINT, map_location="cpu", weights_only=True)["model"]
        if self.dropped_columns:  # the view's weights are AudioSet's, not trained: a network without it lacks them
            state = {key: value for key, value in state.items() if not key.startswith("backbone.view.")}
        net.load_state_dict(state)
        return net.eval()

    def load_aggregator(self) -> SongAggregator:
        with open(self.path / AGGREGATOR, "rb") as f:
            aggregator = pickle.load(f)
        return aggregator.without_view() if self.dropped_columns else aggregator

    def verification_features(self) -> np.ndarray:
        """Song statistics the exporter checks the aggregator on, as this run's song vector has them."""
        features = np.load(self.path / VERIFY_FEATURES).astype(np.float64)
        return np.delete(features, self.dropped_columns, axis=1) if self.dropped_columns else features

    def metrics(self) -> dict:
        path = self.path / METRICS
        return json.loads(path.read_text()) if path.is_file() else {}


def save_json(path: str | os.PathLike, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """torch.save through a temporary file, so a kill never leaves a torn checkpoint."""
    with atomic_file(path) as f:
        torch.save(state, f)


def save_aggregator(path: str | os.PathLike, aggregator: SongAggregator) -> None:
    with atomic_file(path) as f:
        pickle.dump(aggregator, f)


def save_array(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_file(path) as f:
        np.save(f, array)


def write_config(path: str | os.PathLike, config: dict) -> None:
    """Start a run directory: the folder, its plots folder and config.json."""
    path = Path(path)
    (path / PLOTS).mkdir(parents=True, exist_ok=True)
    save_json(path / CONFIG, config)


def write_run(path: str | os.PathLike, config: dict, aggregator: SongAggregator, metrics: dict,
              verify_audio: np.ndarray, verify_features: np.ndarray, model_state: dict | None = None) -> Path:
    """Write a complete run directory; ``model_state`` also writes checkpoint.pt (the trainer's own
    checkpoint, written every epoch, is already there). Returns the folder."""
    path = Path(path)
    write_config(path, config)
    if model_state is not None:
        save_checkpoint(path / CHECKPOINT, {"model": model_state, "epoch": 0})
    save_aggregator(path / AGGREGATOR, aggregator)
    save_array(path / VERIFY_AUDIO, np.asarray(verify_audio, dtype=np.float32))
    save_array(path / VERIFY_FEATURES, np.asarray(verify_features, dtype=np.float64))
    save_json(path / METRICS, metrics)
    return path


def open_run(path: str | os.PathLike) -> Run:
    path = Path(path)
    for name in (CONFIG, CHECKPOINT, AGGREGATOR):
        if not (path / name).is_file():
            raise MerLiveError(f"{path}: not a finished training run (no {name}); train with `mer-live train`")
    config = json.loads((path / CONFIG).read_text())
    return Run(path, config, AudioConfig.from_dict(config["audio"]), ModelConfig.from_dict(config["model"]))


def resume_conflicts(saved: dict, new: dict) -> list[str]:
    """The settings of ``new`` (a config.json about to be written) that differ from the ``saved`` run's,
    as "section.key: saved -> new"; those in ``RESUMABLE_CHANGES`` may change, and a training or model setting
    the saved run predates counts as its default."""
    changes = []
    # a training or model setting added since the saved run had its default
    predates = {"train": TRAIN_DEFAULTS.to_dict(), "model": ModelConfig().to_dict()}
    for section in ("audio", "model", "train", "song", "method"):
        old, now = saved.get(section), new.get(section)
        if not isinstance(old, dict) or not isinstance(now, dict):
            if old != now and old is not None:
                changes.append(f"{section}: {old} -> {now}")
            continue
        for key in sorted(set(old) | set(now)):
            if key in ("derived", "horizon") or key in RESUMABLE_CHANGES.get(section, ()):
                continue
            a, b = old.get(key, predates.get(section, {}).get(key)), now.get(key)
            if isinstance(a, list | tuple) and isinstance(b, list | tuple):
                a, b = list(a), list(b)
            if a != b:
                changes.append(f"{key} {a} -> {b}")
    return changes


def check_resume(path: str | os.PathLike, config: dict) -> None:
    """Refuse to resume the checkpoint in ``path`` under settings other than the ones it was trained with."""
    path = Path(path)
    if not (path / CHECKPOINT).is_file() or not (path / CONFIG).is_file():
        return
    changes = resume_conflicts(json.loads((path / CONFIG).read_text()), config)
    if changes:
        raise MerLiveError(f"--resume: {path / CHECKPOINT} was trained with other settings ({'; '.join(changes)}); "
                           f"resume with the checkpoint's settings (see {path / CONFIG}), or train into a new --out")
