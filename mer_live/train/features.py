"""Frozen-body feature cache: a pretrained body's pooled vector for every segment of every clip (or, when
musicnn's mid-end is fine-tuned, its front end's maps of every segment).

The body of a pretrained backbone never changes during training, so its output for a segment
is a pure function of the clip's log-mel, the segment settings, the weights and the input gain.
It is computed once, with ONNX Runtime (about twice as fast as eager PyTorch on this kind of
CPU), and stored on disk beside the log-mel cache; training the top and the SSSL loop on it take
minutes where running the body every step would take hours. ``SegmentSet`` reads a clip's
(features, segments) array as a clip of one-frame "segments", one per real segment; front-end maps are
stored as (561, segments x segment frames), each segment's maps side by side.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from mer_live.config import FRONTEND_FIELDS, AudioConfig
from mer_live.nn import musicnn
from mer_live.nn.model import ModelConfig
from mer_live.train.cache import save_atomic
from mer_live.train.segments import segment_frame_starts

CACHE_VERSION = 2  # 2: the real-input two-stage DFT (log-mels within float32 rounding of version 1)
BATCH = 32


def apply_gain(logmel: np.ndarray, gain_db: float, audio: AudioConfig) -> np.ndarray:
    """The log-mel of the same audio scaled by ``gain_db`` (power scales by 10^(dB/10)); no clipping."""
    if gain_db == 0:
        return logmel
    if audio.log_offset:  # ln(mel + floor): scale the mel power under the offset
        power = np.maximum(np.exp(logmel) - np.float32(audio.log_floor), 0.0)
        return np.log(power * np.float32(10 ** (gain_db / 10)) + np.float32(audio.log_floor)).astype(np.float32)
    return np.maximum(logmel + np.float32(gain_db * math.log(10) / 10), np.float32(math.log(audio.log_floor)))


def segment_windows(logmel: np.ndarray, audio: AudioConfig) -> np.ndarray:
    """(segments, n_mels, segment_frames) views of a padded clip log-mel, as ``SegmentSet`` cuts them."""
    starts = segment_frame_starts(logmel.shape[1], audio)
    return np.stack([logmel[:, s : s + audio.segment_frames] for s in starts])


class FrontMaps(torch.nn.Module):
    """A musicnn body's frozen front end alone: (batch, 96, frames) -> (batch, 561, frames)."""

    def __init__(self, body: musicnn.MusicnnBody) -> None:
        super().__init__()
        self.body = body

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.body.front(logmel)


class FeatureCache:
    """``get(logmel, gain_db)`` -> float32 (features, segments) of the frozen body, or (channels, segments x
    frames) of its front end (``model_config.caches_front_maps``), cached on disk."""

    def __init__(self, cache_dir: str | os.PathLike, audio: AudioConfig, model_config: ModelConfig,
                 threads: int = 0) -> None:
        import onnxruntime as ort

        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.audio = audio
        body = musicnn.pretrained_body(model_config.arch, model_config.loudness)
        self.maps = model_config.caches_front_maps
        graph = io.BytesIO()
        example = torch.zeros(2, audio.n_mels, audio.segment_frames)
        frozen = FrontMaps(body) if self.maps else body
        torch.onnx.export(frozen.eval(), (example,), graph, input_names=["logmel"], output_names=["features"],
                          dynamic_axes={"logmel": {0: "batch"}, "features": {0: "batch"}}, opset_version=17,
                          dynamo=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(graph.getvalue(), options, providers=["CPUExecutionProvider"])
        settings = {"version": CACHE_VERSION, "arch": model_config.arch, "loudness": model_config.loudness,
                    "reference_level": musicnn.REFERENCE_LEVEL, "silence_level": musicnn.SILENCE_LEVEL,
                    "weights": hashlib.sha256(musicnn.weights_path(model_config.arch).read_bytes()).hexdigest(),
                    "segment_frames": audio.segment_frames, "hop_frames": audio.hop_frames,
                    **{name: getattr(audio, name) for name in FRONTEND_FIELDS}}
        if self.maps:  # only then: the pooled vectors cached before this setting existed keep their keys
            settings["part"] = "front end"
        self.fingerprint = json.dumps(settings, sort_keys=True).encode()
        self.computed = 0

    def compute(self, logmel: np.ndarray) -> np.ndarray:
        windows = segment_windows(logmel, self.audio)
        parts = [self.session.run(None, {"logmel": windows[i : i + BATCH]})[0] for i in range(0, len(windows), BATCH)]
        out = np.concatenate(parts).astype(np.float32)
        if self.maps:  # (segments, channels, frames) -> (channels, segments x frames)
            return np.ascontiguousarray(out.transpose(1, 0, 2).reshape(out.shape[1], -1))
        return out.T

    def get(self, logmel: np.ndarray, gain_db: float = 0.0) -> np.ndarray:
        key = hashlib.sha256(self.fingerprint + f"gain={gain_db:g}".encode() + logmel.tobytes()).hexdigest()
        entry = self.cache_dir / f"{key}.npy"
        if entry.is_file():
            try:
                return np.load(entry)
            except (OSError, ValueError):
                pass  # unreadable entry: recompute and overwrite it
        features = self.compute(apply_gain(logmel, gain_db, self.audio))
        save_atomic(entry, features)
        self.computed += 1
        return features

    def build(self, logmels: dict[Path, np.ndarray], gain_db: float = 0.0,
              progress: Callable[[int, int], None] | None = None) -> dict[Path, np.ndarray]:
        out = {}
        for i, (path, logmel) in enumerate(logmels.items()):
            out[path] = self.get(logmel, gain_db)
            if progress is not None:
                progress(i + 1, len(logmels))
        return out
