"""The run directory: what `mer-live train` leaves and `mer-live export` reads.

RUN_DIR/
  config.json        {"audio": AudioConfig.to_dict(), "model": ModelConfig.to_dict(),
                      "train": {...hyperparameters...}, "dataset": {...name, root, binarization...},
                      "aggregator": {"theta": float, "song_seconds": float, "tasks": [...]}}
  checkpoint.pt      {"model": SegmentNet.state_dict(), "epoch": int, ...} (written atomically)
  aggregator.pkl     pickled mer_live.aggregate.SongAggregator
  metrics.json       training history and validation metrics
  verify_audio.npy   float32 (n, segment_samples): real segments the exporter checks ORT against
  verify_features.npy float64 (m, n_features): song statistics the exporter checks the aggregator on
  plots/*.png
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from mer_live.aggregate import SongAggregator
from mer_live.atomic import atomic_write_text
from mer_live.config import AudioConfig
from mer_live.errors import MerLiveError
from mer_live.model import ModelConfig, SegmentNet

CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
AGGREGATOR = "aggregator.pkl"
METRICS = "metrics.json"


@dataclass
class Run:
    path: Path
    config: dict
    audio: AudioConfig
    model_config: ModelConfig

    def load_model(self) -> SegmentNet:
        net = SegmentNet(self.audio, self.model_config)
        net.load_state_dict(torch.load(self.path / CHECKPOINT, map_location="cpu", weights_only=True)["model"])
        return net.eval()

    def load_aggregator(self) -> SongAggregator:
        with open(self.path / AGGREGATOR, "rb") as f:
            return pickle.load(f)

    def metrics(self) -> dict:
        path = self.path / METRICS
        return json.loads(path.read_text()) if path.is_file() else {}


def save_json(path: str | os.PathLike, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """torch.save to a temporary file then rename, so a kill never leaves a torn checkpoint."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def save_aggregator(path: str | os.PathLike, aggregator: SongAggregator) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        pickle.dump(aggregator, f)
    os.replace(tmp, path)


def open_run(path: str | os.PathLike) -> Run:
    path = Path(path)
    for name in (CONFIG, CHECKPOINT, AGGREGATOR):
        if not (path / name).is_file():
            raise MerLiveError(f"{path}: not a finished training run (no {name}); train with `mer-live train`")
    config = json.loads((path / CONFIG).read_text())
    return Run(path, config, AudioConfig.from_dict(config["audio"]), ModelConfig.from_dict(config["model"]))
