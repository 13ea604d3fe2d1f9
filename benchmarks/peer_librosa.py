"""A peer: labeling as one would write it with librosa and ONNX Runtime, without mer-live's runtime.

librosa.load (decode + resample) and librosa.stft with the bundle's settings (uncentered, its window
and pre-emphasis), its mel filters (librosa's Slaney ones, or the AudioSet front end's Kaldi triangles,
which librosa lacks), natural log, then the bundle's backbone.onnx on the segments, the
shared segment statistics and aggregator.onnx. Decoding and the mel run in worker processes,
as mer-live's do, so the comparison is of the pipelines and not of the parallelism. Runs in the
peers' venv (``benchmarks/peers.py``) with the repository on PYTHONPATH for mer_live.stats.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import librosa
import numpy as np
import onnxruntime as ort
import scipy.signal

from mer_live.config import AudioConfig, SongConfig
from mer_live.stats import song_vector

_config: AudioConfig | None = None
_filters: np.ndarray | None = None


def _init(config_json: str) -> None:
    global _config, _filters
    _config = AudioConfig.from_json(config_json)
    _filters = filterbank(_config)


def filterbank(c: AudioConfig) -> np.ndarray:
    """librosa's Slaney filters; the AudioSet front end's Kaldi triangles (linear in mel, which librosa's
    ``htk=True`` is not) from the bundle's own NumPy definition."""
    if c.mel_scale == "kaldi":
        from mer_live.nn.mel import kaldi_filterbank

        return kaldi_filterbank(c)
    return librosa.filters.mel(sr=c.sample_rate, n_fft=c.n_fft, n_mels=c.n_mels, fmin=c.fmin, fmax=c.fmax)


def logmel(path: str) -> tuple[str, np.ndarray, float]:
    c = _config
    y, _ = librosa.load(path, sr=c.sample_rate, mono=True)
    duration = len(y) / c.sample_rate
    if len(y) < c.segment_samples:
        y = np.pad(y, (0, c.segment_samples - len(y)))
    if c.preemphasis:
        y = np.append(y[1:] - c.preemphasis * y[:-1], np.float32(0.0))
    window = scipy.signal.get_window("hann", c.window_length, fftbins=not c.symmetric_window)
    power = np.abs(librosa.stft(y, n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.window_length,
                                window=window, center=False)) ** 2
    mel = _filters @ power
    logmel = np.log(mel + c.log_floor) if c.log_offset else np.log(np.maximum(mel, c.log_floor))
    return path, logmel.astype(np.float32), duration


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    manifest = json.loads((args.bundle / "bundle.json").read_text())
    config = AudioConfig.from_dict(manifest["audio"])
    song = SongConfig.from_record(manifest)
    tasks, theta = list(song.tasks), song.theta
    dims = int(manifest["aggregator"].get("embedding_dims", 0))
    backbone, aggregator = session(args.bundle / "backbone.onnx"), session(args.bundle / "aggregator.onnx")
    rows = []
    with ProcessPoolExecutor(args.workers, initializer=_init, initargs=(config.to_json(),)) as pool:
        for path, mel, duration in pool.map(logmel, args.files, chunksize=2):
            n = 1 + (mel.shape[1] - config.segment_frames) // config.hop_frames
            segments = np.stack([mel[:, i * config.hop_frames : i * config.hop_frames + config.segment_frames]
                                 for i in range(n)])
            outputs = np.concatenate([np.concatenate(backbone.run(None, {"logmel": segments[i : i + 64]}), axis=1)
                                      for i in range(0, n, 64)])  # probabilities, then any embedding
            embedding = outputs[:, len(tasks) :] if dims else None
            features = song_vector(outputs[:, : len(tasks)], embedding, theta)[None].astype(np.float32)
            song = aggregator.run(None, {"features": features})[0][0]
            rows.append({"path": path, "duration_s": round(duration, 3), "segments": n,
                         **{task: round(float(p), 6) for task, p in zip(tasks, song)}})
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
