"""Compute once, pool many, measured: an AudioSet MobileNet run's song labels when the windows every second
are pooled from a feature map computed once, against running the network on every window.

    python scripts/compute_once.py RUN_DIR --dataset 4q --root path/to/MER_audio_taffc_dataset [--out once.json]

RUN_DIR is a finished `mer-live train` run of ``--arch mn04``. Four ways of labeling every clip, each through
the run's own song SVM: the network on 3 s windows every second (the default's labeling) and every 3 s
(``fast``'s), and windows every second pooled from the last feature map of (a) the non-overlapping 3 s windows
side by side, ``fast``'s work, or (b) one pass over the whole clip. mn04's squeeze-excitation layers average
over their whole input, so no pooled map equals the per-window one exactly: the script prints how often each
way gives the song the default's quadrant, and the network's time (one thread).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from mer_live.nn import mobilenet
from mer_live.stats import song_vector
from mer_live.train.cache import LogMelCache
from mer_live.train.datasets import load_dataset
from mer_live.train.rundir import open_run
from mer_live.train.segments import SegmentSet
from mer_live.train.settings import default_cache_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--dataset", default="4q")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("compute_once.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    run = open_run(args.run)
    net, aggregator, song = run.load_model(), run.load_aggregator(), run.song
    if not net.config.audioset or net.config.bodies != 1:
        raise SystemExit(f"{args.run}: a run of one AudioSet MobileNet (--arch mn04) is needed")
    backbone = net.backbone
    clips = load_dataset(args.dataset, args.root).clips
    mels, failures = LogMelCache(default_cache_dir(), run.audio).build(clips)
    every_second, every_3s = run.audio.replace(segment_hop_seconds=1.0), run.audio.replace(segment_hop_seconds=3.0)
    frames, hop = run.audio.segment_frames, every_second.hop_frames

    def outputs(embedding: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        logits = net.split(backbone.classify(embedding))
        return torch.stack([torch.softmax(v, 1)[:, 1] for v in logits.values()], 1).numpy(), embedding.numpy()

    def windows(mel: np.ndarray, audio) -> torch.Tensor:
        segments = SegmentSet.from_clips([mel], np.zeros((1, 2), np.int64), audio)
        return torch.from_numpy(segments.batch(np.arange(len(segments))))

    def pooled(maps: torch.Tensor, n_frames: int, frames_per_column: float) -> tuple[np.ndarray, np.ndarray]:
        """Windows every second, each the mean of the (frequency, time) columns of ``maps`` it covers."""
        starts = np.arange(max(1, every_second.segments_in_frames(n_frames))) * hop
        columns = [(int(round(s / frames_per_column)), int(round((s + frames) / frames_per_column))) for s in starts]
        return outputs(torch.stack([maps[:, :, a : max(b, a + 1)].mean(dim=(1, 2)) for a, b in columns]))

    def once_in_chunks(mel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        maps = backbone.body.features(mobilenet.normalize(windows(mel, every_3s)))
        return pooled(torch.cat(list(maps), dim=2), mel.shape[1], frames / maps.shape[3])

    def once_whole(mel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        maps = backbone.body.features(mobilenet.normalize(torch.from_numpy(mel[None])))[0]
        return pooled(maps, mel.shape[1], mel.shape[1] / maps.shape[2])

    ways = {
        "per window, every second (default)": lambda mel: outputs(backbone.embed(windows(mel, every_second))),
        "per window, every 3 s (fast)": lambda mel: outputs(backbone.embed(windows(mel, every_3s))),
        "once on 3 s chunks, pooled every second": once_in_chunks,
        "once on the whole clip, pooled every second": once_whole,
    }
    vectors: dict[str, list[np.ndarray]] = {name: [] for name in ways}
    seconds = dict.fromkeys(ways, 0.0)
    with torch.no_grad():
        for clip in clips:
            if clip.path not in mels:
                continue
            for name, way in ways.items():
                started = time.perf_counter()
                probs, embedding = way(mels[clip.path])
                seconds[name] += time.perf_counter() - started
                vectors[name].append(song_vector(probs, embedding if song.embedding else None, song.theta))
    quadrants = {name: aggregator.predict_proba(np.stack(v)) > 0.5 for name, v in vectors.items()}
    reference = quadrants[next(iter(ways))]
    report = {"run": str(args.run), "clips": len(reference), "failures": len(failures), "ways": {
        name: {"quadrant_same_as_default": float(np.mean(np.all(q == reference, axis=1))),
               "network_seconds": seconds[name]} for name, q in quadrants.items()}}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for name, row in report["ways"].items():
        print(f"{name:50s} quadrant as the default's: {100 * row['quadrant_same_as_default']:5.1f} %   "
              f"network {row['network_seconds']:6.1f} s")


if __name__ == "__main__":
    main()
