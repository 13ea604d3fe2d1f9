"""The training loop over epochs, whatever each epoch does (warm-up, or SSSL's division and steps).

Read top to bottom: ``train`` builds the network and optimizer, resumes from a checkpoint when
asked, then runs ``run_epoch`` (``mer_live.train.sssl``: the division and the steps) once per
epoch, validates, keeps the best epoch and saves a checkpoint. The segments come from
``mer_live.train.segments``, the hyperparameters from ``mer_live.train.settings``, the process
group from ``mer_live.train.comm`` (one process or several, the loop is the same).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from mer_live.config import AudioConfig
from mer_live.nn.model import ModelConfig, SegmentNet
from mer_live.train.comm import Communicator, Solo, pick_device
from mer_live.train.rundir import save_checkpoint
from mer_live.train.segments import SegmentSet
from mer_live.train.settings import TrainConfig
from mer_live.train.sssl import Diverged, Epoch, Training, param_groups, predict, run_epoch

Log = Callable[[str], None]


def song_accuracy(backbone: torch.nn.Module, segments: SegmentSet, tasks: dict[str, int],
                  device: torch.device) -> dict[str, float]:
    """Segment accuracy, song accuracy and song ROC AUC (plain mean of segment probabilities) per task.

    Model selection uses the AUC: mixup and soft targets pull probabilities towards 0.5, so a
    small calibration shift flips accuracy at 0.5 while the ranking, which the song-level SVM
    uses, is unchanged.
    """
    if len(segments) == 0:
        return {}
    probs = predict(backbone, segments, tasks, device)
    labels = segments.segment_labels
    result = {}
    for t, task in enumerate(tasks):
        p_high = probs[task][:, 1]
        result[f"{task}_segment_acc"] = float(((p_high > 0.5) == labels[:, t]).mean())
        song = np.array([p_high[segments.clip_of == c].mean() for c in range(len(segments.logmels))])
        result[f"{task}_song_acc"] = float(((song > 0.5) == segments.labels[:, t]).mean())
        both = len(np.unique(segments.labels[:, t])) == 2
        result[f"{task}_song_auc"] = float(roc_auc_score(segments.labels[:, t], song)) if both else 0.5
    result["song_acc"] = float(np.mean([result[f"{t}_song_acc"] for t in tasks]))
    result["song_auc"] = float(np.mean([result[f"{t}_song_auc"] for t in tasks]))
    return result


@dataclass(frozen=True)
class LoopOptions:
    """How a training run keeps and reports itself: its checkpoint (and whether to resume from it), log
    lines, step progress, and its process group (default: this process alone, on ``cfg.device``)."""

    checkpoint: Path | None = None
    resume: bool = False
    log: Log = print
    progress: Callable[[int, int], None] | None = None
    comm: Communicator | None = None


DEFAULT_OPTIONS = LoopOptions()


def warmup_cosine(warmup_epochs: float, epochs: int, steps_per_epoch: int) -> Callable[[int], float]:
    """Learning-rate factor per optimizer step: linear from 1/steps up to 1 over the warm-up, then a cosine to 0."""
    warm = max(1, round(warmup_epochs * steps_per_epoch))
    total = max(warm + 1, epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / (total - warm))))

    return factor


def train(train_set: SegmentSet, val_set: SegmentSet, audio: AudioConfig, model_config: ModelConfig,
          cfg: TrainConfig, options: LoopOptions = DEFAULT_OPTIONS) -> tuple[SegmentNet, list[dict], dict]:
    """Train a SegmentNet's backbone on cached log-mel; return the best net, history, GMM records.

    The best epoch is chosen by validation song ROC AUC (plain mean aggregation). With a
    ``checkpoint`` every epoch is saved atomically; ``resume`` continues from it. A non-finite
    loss stops the run with ``Diverged`` and leaves the last good checkpoint in place. Under
    data-parallel training every process runs this loop on its share of each batch; only the first
    one writes the checkpoint.
    """
    checkpoint, log = options.checkpoint, options.log
    comm = options.comm or Solo(pick_device(cfg.device))
    device = comm.device
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = SegmentNet(audio, model_config)
    backbone = net.trainable.to(device)
    tasks = model_config.tasks
    optimizer = torch.optim.Adam(param_groups(backbone, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_step = cfg.lr_warmup_epochs > 0
    if per_step:
        n = len(train_set)
        steps = max(1, min(n, cfg.segments_per_epoch or n) // comm.world_size // cfg.batch_size)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(cfg.lr_warmup_epochs, cfg.epochs, steps))
        optimizer.register_step_post_hook(lambda *_: scheduler.step())
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, cfg.epochs))
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    labels = torch.from_numpy(train_set.segment_labels.astype(np.int64))
    teacher = moving_average(backbone, cfg.ema) if cfg.ema > 0 else None
    kept = backbone if teacher is None else teacher.module  # what is validated and kept
    run = Training(comm.wrap(backbone), train_set, labels, tasks, cfg, optimizer, scaler, comm, teacher)
    history: list[dict] = []
    gmm_records: dict[int, dict] = {}
    best = {"song_auc": -1.0, "state": copy.deepcopy(net.state_dict()), "epoch": -1}
    start_epoch = 0
    if options.resume and checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        net.load_state_dict(state["last"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, best, start_epoch = state["history"], state["best"], state["epoch"] + 1
        if teacher is not None:
            teacher.load_state_dict(state["ema"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        log(f"resumed from {checkpoint} at epoch {start_epoch}")
    gmm_plot_epochs = {cfg.warmup_epochs, (cfg.warmup_epochs + cfg.epochs) // 2, cfg.epochs - 1}

    for epoch in range(start_epoch, cfg.epochs):
        started = time.perf_counter()
        rng = comm.epoch_rng(cfg.seed, epoch, rng)
        try:
            done = run_epoch(run, epoch, rng, progress=options.progress)
        except Diverged as exc:
            raise Diverged(exc.epoch, exc.step, checkpoint) from None
        if done.record is not None and epoch in gmm_plot_epochs:
            gmm_records[epoch] = done.record
        if not per_step:
            scheduler.step()
        comm.same_buffers(backbone)  # batch-norm statistics as the first process has them
        val = song_accuracy(kept, val_set, tasks, device)
        row = epoch_row(epoch, done, val, cfg, tasks, time.perf_counter() - started)
        history.append(row)
        if val.get("song_auc", 0.0) > best["song_auc"] or not val:
            best = {"song_auc": val.get("song_auc", 0.0), "state": kept_state(net, kept), "epoch": epoch + 1}
        log(format_epoch(row, tasks))
        if checkpoint is not None and comm.is_first:
            save_checkpoint(checkpoint, {
                "model": best["state"], "last": net.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": epoch, "history": history, "best": best,
                "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                "train_config": cfg.to_dict(), "ema": None if teacher is None else teacher.state_dict(),
            })
    net.load_state_dict(best["state"])
    return net.cpu().eval(), history, gmm_records


def moving_average(backbone: torch.nn.Module, decay: float) -> AveragedModel:
    """The weights' exponential moving average, batch-norm statistics included (a teacher with the
    student's running statistics would normalise with another network's)."""
    return AveragedModel(backbone, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def kept_state(net: SegmentNet, kept: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole network's state with its trainable part's weights taken from ``kept`` (itself, or the
    moving average)."""
    state = copy.deepcopy(net.state_dict())
    if kept is not net.trainable:
        names = {id(module): name for name, module in net.named_modules()}
        trainable = net.trainable
        # a view over the backbone's parts (musicnn's mid-end and top) is keyed as the backbone that holds them
        prefix = names[id(trainable)] if id(trainable) in names else names[id(trainable.top)].rpartition(".")[0]
        state.update({f"{prefix}.{k}": v.detach().clone() for k, v in kept.state_dict().items()})
    return state


def epoch_row(epoch: int, done: Epoch, val: dict[str, float], cfg: TrainConfig, tasks: dict[str, int],
              seconds: float) -> dict:
    """One line of the training history (metrics.json)."""
    return {"epoch": epoch + 1, "phase": done.phase, **done.means,
            **{f"clean_{task}": float((done.clean[:, t] > cfg.tau).mean()) for t, task in enumerate(tasks)},
            **{f"val_{k}": v for k, v in val.items()},
            "seconds": seconds, "segments": done.segments}


def format_epoch(row: dict, tasks: dict[str, int]) -> str:
    clean = " ".join(f"clean_{t[0]}={row[f'clean_{t}']:.2f}" for t in tasks)
    val = " ".join(f"val_{t[0]} acc={row.get(f'val_{t}_song_acc', float('nan')):.3f} "
                   f"auc={row.get(f'val_{t}_song_auc', float('nan')):.3f}" for t in tasks)
    return (f"epoch {row['epoch']:3d} {row['phase']:6s} loss={row['loss']:.4f} lx={row['lx']:.3f} "
            f"lu={row['lu']:.4f} kl={row['kl']:.4f} {clean} {val} ({row['seconds']:.0f}s)")
