"""Training throughput: segments per second per epoch, data loading timed apart from compute.

One epoch of each phase runs the trainer's own epoch, ``mer_live.train.sssl.run_epoch``, with
its timers on: ``SegmentSet.batch`` (cache slicing, time shift and SpecAugment; two views in the
SSSL phase) is the data loading; ``warmup_step`` or ``sssl_step`` with the backward pass and the
optimizer step is the compute; the SSSL phase's per-epoch GMM division (``divide``) is timed on
its own. Log-mel comes from a real
cache folder when given, else random log-mel of the right shape (speed does not depend on it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks import common

CLIP_SECONDS = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_common_arguments(parser)
    parser.add_argument("--cache-dir", type=Path, help="a log-mel cache folder (*.npy clips) to train on; "
                        "default random log-mel")
    parser.add_argument("--clips", type=int, default=100, help="clips of 30 s (random) or the first N cached ones")
    parser.add_argument("--segment-seconds", type=float, default=3.0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--archs", default="compact,vgg16")
    parser.add_argument("--devices", default="auto", help="cpu, cuda or both as a comma list; auto: cpu and cuda "
                        "when torch sees a GPU")
    parser.add_argument("--max-steps", type=int, default=0, help="steps per epoch at most (0: the whole epoch)")
    parser.add_argument("--vgg-steps", type=int, default=4, help="steps per epoch at most for vgg16 on the CPU")
    parser.add_argument("--vgg-clips", type=int, default=8,
                        help="clips for vgg16 on the CPU (its per-epoch division predicts every segment)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")


def clips(args: argparse.Namespace, audio) -> tuple[list[np.ndarray], str]:
    n = 4 if args.quick else args.clips
    if args.cache_dir is not None:
        files = sorted(args.cache_dir.rglob("*.npy"))[:n]
        mels = [m for m in (np.load(f).astype(np.float32) for f in files)
                if m.ndim == 2 and m.shape[0] == audio.n_mels and m.shape[1] >= audio.segment_frames]
        if mels:
            return mels, f"{len(mels)} cached clips from {args.cache_dir}"
    frames = round(CLIP_SECONDS * audio.sample_rate / audio.hop_length)
    rng = np.random.default_rng(0)
    return [rng.normal(-4.0, 4.0, (audio.n_mels, frames)).astype(np.float32) for _ in range(n)], \
        f"{n} random log-mel clips of {CLIP_SECONDS:g} s"


def epoch(backbone, segments, labels, tasks, cfg, device, phase: str, max_steps: int, rng) -> dict:
    """One epoch of ``phase`` ("warmup" or "sssl") through the trainer's ``run_epoch``, timed."""
    import dataclasses

    import torch

    from mer_live.train.comm import Solo
    from mer_live.train.sssl import Training, run_epoch

    optimizer = torch.optim.Adam(backbone.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    # epoch 0 of a run without warm-up is an SSSL epoch; with warm-up throughout it is a warm-up one
    cfg = dataclasses.replace(cfg, warmup_epochs=0 if phase == "sssl" else 1)
    run = Training(backbone, segments, labels, tasks, cfg, optimizer, scaler, Solo(device))
    done = run_epoch(run, 0, rng, max_steps=max_steps, timed=True)
    n = done.steps * cfg.batch_size
    load, compute, division = done.load_s, done.compute_s, done.division_s
    full_steps = max(1, done.segments // cfg.batch_size)
    total = load + compute + division * done.steps / full_steps
    return {"phase": done.phase, "steps": done.steps, "segments": n, "epoch_segments": done.segments,
            "load_s": round(load, 4), "compute_s": round(compute, 4), "division_s": round(division, 4),
            "load_segments_per_s": round(n / load, 1) if load else None,
            "compute_segments_per_s": round(n / compute, 1) if compute else None,
            "segments_per_s": round(n / total, 1), "load_share": round(load / (load + compute), 3)}


def measure(arch: str, device_name: str, mels, audio, args, max_steps: int) -> list[dict]:
    import torch

    from mer_live.nn.model import ModelConfig, SegmentNet
    from mer_live.train.segments import SegmentSet
    from mer_live.train.settings import TrainConfig

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cfg = TrainConfig(batch_size=args.batch_size)
    model_config = ModelConfig(arch=arch)
    labels_np = rng.integers(0, 2, (len(mels), len(model_config.tasks)))
    segments = SegmentSet.from_clips(mels, labels_np, audio)
    labels = torch.from_numpy(segments.segment_labels.astype(np.int64))
    device = torch.device(device_name)
    backbone = SegmentNet(audio, model_config).backbone.to(device)
    # one untimed step per phase: allocations, cuDNN autotuning
    for phase in ("warmup", "sssl"):
        epoch(backbone, segments, labels, model_config.tasks, cfg, device, phase, 1, rng)
    rows = []
    for phase in ("warmup", "sssl"):
        row = epoch(backbone, segments, labels, model_config.tasks, cfg, device, phase, max_steps, rng)
        rows.append({"arch": arch, "device": device_name, "threads": torch.get_num_threads()
                     if device.type == "cpu" else None, **row})
    return rows


def devices(spec: str) -> list[str]:
    import torch

    if spec == "auto":
        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    return spec.split(",")


def print_table(rows: list[dict]) -> None:
    from rich.table import Table

    table = Table(title="training throughput (segments/s; one epoch per phase)")
    for col in ("arch", "device", "phase", "steps", "total seg/s", "compute seg/s", "loading seg/s", "loading share",
                "division s"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["arch"], r["device"], r["phase"], str(r["steps"]), common.fmt(r["segments_per_s"]),
                      common.fmt(r["compute_segments_per_s"]), common.fmt(r["load_segments_per_s"]),
                      f"{100 * r['load_share']:.0f} %", common.fmt(r["division_s"], 2))
    common.console.print(table)


def plot(rows: list[dict], path: Path) -> None:
    fig, ax = common.figure(figsize=(8, 3.6))
    names = [f"{r['arch']} {r['device']} {r['phase']}" for r in rows]
    compute = [r["compute_s"] / r["segments"] * 1e3 for r in rows]
    load = [r["load_s"] / r["segments"] * 1e3 for r in rows]
    ax.barh(names, load, label="data loading", color="tab:orange")
    ax.barh(names, compute, left=load, label="compute (forward + backward + step)", color="tab:blue")
    ax.set(xlabel="ms per segment (log)", xscale="log", title="training cost per segment")
    ax.invert_yaxis()
    ax.legend(fontsize=8)
    common.save_figure(fig, path)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    import torch

    from mer_live.config import AudioConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    audio = AudioConfig(segment_seconds=args.segment_seconds)
    mels, source = clips(args, audio)
    archs = args.archs.split(",")[:1] if args.quick else args.archs.split(",")
    common.console.print(f"training data: {source}", highlight=False)
    rows = []
    for device in devices(args.devices):
        for arch in archs:
            limit = 2 if args.quick else args.max_steps
            if arch == "vgg16" and device == "cpu":
                limit = min(limit, args.vgg_steps) if limit else args.vgg_steps
            subset = mels[: args.vgg_clips] if arch == "vgg16" and device == "cpu" else mels
            common.console.print(f"[{arch} on {device}, {len(subset)} clips]", highlight=False)
            rows += measure(arch, device, subset, audio, args, limit)
    print_table(rows)
    plot(rows, args.results_dir / "train.png")
    common.write_result(args.results_dir, "train", argv, {
        "what": "segments/s over one epoch per phase; loading = SegmentSet.batch views + host-to-device copy; "
                "compute = step + backward + optimizer; division = the SSSL phase's per-epoch GMM split "
                "(counted pro rata when the epoch is cut short)",
        "data": source, "segment_seconds": args.segment_seconds, "batch_size": args.batch_size,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "rows": rows,
    })
    return 0
