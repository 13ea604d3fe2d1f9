"""The training loop over epochs, whatever each epoch does (warm-up, or SSSL's division and steps).

Read top to bottom: ``train`` builds the network and optimizer, resumes from a checkpoint when
asked, then runs ``run_epoch`` (``mer_live.train.sssl``: the division and the steps) once per
epoch, validates, keeps the best epoch and saves a checkpoint. The segments come from
``mer_live.train.segments``, the hyperparameters from ``mer_live.train.settings``, the process
group from ``mer_live.train.comm`` (one process or several, the loop is the same).
"""

from __future__ import annotations

import copy
import dataclasses
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
from mer_live.errors import MerLiveError
from mer_live.nn import mobilenet
from mer_live.nn.model import Bodies, ModelConfig, SegmentNet
from mer_live.train.comm import Communicator, Solo, pick_device
from mer_live.train.rundir import save_checkpoint
from mer_live.train.segments import SegmentSet
from mer_live.train.settings import NAIVE_OVERRIDES, TrainConfig
from mer_live.train.sssl import (
    Distill,
    Diverged,
    Epoch,
    Training,
    divide,
    param_groups,
    predict,
    pretrained_parts,
    run_epoch,
)

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


def stepped_schedule(optimizer: torch.optim.Optimizer, warmup_epochs: float, epochs: int, segments: int,
                     cfg: TrainConfig, comm: Communicator) -> torch.optim.lr_scheduler.LambdaLR:
    """``warmup_cosine`` set after every optimizer step, over epochs of ``segments`` training segments (or
    ``cfg.segments_per_epoch`` of them) shared by the process group."""
    steps = max(1, min(segments, cfg.segments_per_epoch or segments) // comm.world_size // cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup_epochs, epochs, steps))
    optimizer.register_step_post_hook(lambda *_: scheduler.step())
    return scheduler


@dataclass
class Learner:
    """One network of a run and what steps it; under co-divide a run has two, the bodies of one ensemble."""

    run: Training
    scheduler: torch.optim.lr_scheduler.LRScheduler
    kept: torch.nn.Module  # what is validated and kept: the network, or its moving average

    def state(self) -> dict:
        """What resuming it needs besides the weights (the run's checkpoint holds every network's)."""
        return {"optimizer": self.run.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "ema": None if self.run.teacher is None else self.run.teacher.state_dict()}

    def load(self, state: dict) -> None:
        self.run.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.run.teacher is not None:
            self.run.teacher.load_state_dict(state["ema"])


def learner(part: torch.nn.Module, train_set: SegmentSet, labels: torch.Tensor, tasks: dict[str, int],
            cfg: TrainConfig, comm: Communicator, distill: Distill | None = None) -> Learner:
    """The optimizer, schedule and (``cfg.ema``) moving average of one network ``part``; ``distill``: the
    pretrained network its tags are pulled towards (one for every network of the run)."""
    optimizer = torch.optim.Adam(param_groups(part, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.lr_warmup_epochs > 0:
        scheduler = stepped_schedule(optimizer, cfg.lr_warmup_epochs, cfg.epochs, len(train_set), cfg, comm)
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, cfg.epochs))
    scaler = torch.amp.GradScaler("cuda", enabled=comm.device.type == "cuda")
    teacher = moving_average(part, cfg.ema) if cfg.ema > 0 else None
    run = Training(comm.wrap(part), train_set, labels, tasks, cfg, optimizer, scaler, comm, teacher, distill=distill)
    return Learner(run, scheduler, part if teacher is None else teacher.module)


def train(train_set: SegmentSet, val_set: SegmentSet, audio: AudioConfig, model_config: ModelConfig,
          cfg: TrainConfig, options: LoopOptions = DEFAULT_OPTIONS) -> tuple[SegmentNet, list[dict], dict]:
    """Train a SegmentNet's backbone on cached log-mel; return the best net, history, GMM records.

    The best epoch is chosen by validation song ROC AUC (plain mean aggregation). With a
    ``checkpoint`` every epoch is saved atomically; ``resume`` continues from it. A non-finite
    loss stops the run with ``Diverged`` and leaves the last good checkpoint in place. Under
    data-parallel training every process runs this loop on its share of each batch; only the first
    one writes the checkpoint. Under ``cfg.co_divide`` the ensemble's two bodies train in lockstep
    (DivideMix): each epoch both divide the segments first, then each steps on the other's division
    with the other co-guessing; the history has a row per body and epoch, validated together.
    """
    checkpoint, log = options.checkpoint, options.log
    comm = options.comm or Solo(pick_device(cfg.device))
    device = comm.device
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = SegmentNet(audio, model_config)
    backbone = net.trainable.to(device)
    parts = list(backbone.members) if isinstance(backbone, Bodies) else [backbone]
    if len(parts) > 1 and (not cfg.co_divide or len(parts) > 2 or cfg.ema):
        raise MerLiveError("an ensemble's bodies train one at a time (trainer.train_bodies), or two together under "
                           "--co-divide without --ema")
    tasks = model_config.tasks
    labels = torch.from_numpy(train_set.segment_labels.astype(np.int64))
    distill = Distill(mobilenet.pretrained().requires_grad_(False).to(device), cfg.distill) if cfg.distill else None
    resuming = options.resume and checkpoint is not None and checkpoint.is_file()
    if cfg.probe_epochs and not resuming:  # before the learners: a moving average starts from the probed heads
        for k, part in enumerate(parts):
            probe(part, train_set, val_set, labels, tasks, cfg, comm, rng, options, k + 1 if len(parts) > 1 else 0)
    learners = [learner(part, train_set, labels, tasks, cfg, comm, distill) for part in parts]
    for k, one in enumerate(learners):
        one.run.peer = learners[1 - k].kept if len(learners) == 2 else None
    kept = learners[0].kept if len(learners) == 1 else backbone  # co-divide: no moving average (cli)
    history: list[dict] = []
    gmm_records: dict[int, dict] = {}
    best = {"song_auc": -1.0, "state": copy.deepcopy(net.state_dict()), "epoch": -1}
    start_epoch = 0
    if resuming:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        net.load_state_dict(state["last"])
        for one, saved in zip(learners, [state, *state.get("peers", [])]):
            one.load(saved)
        history, best, start_epoch = state["history"], state["best"], state["epoch"] + 1
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        log(f"resumed from {checkpoint} at epoch {start_epoch}")
    gmm_plot_epochs = {cfg.warmup_epochs, (cfg.warmup_epochs + cfg.epochs) // 2, cfg.epochs - 1}

    for epoch in range(start_epoch, cfg.epochs):
        started = time.perf_counter()
        rng = comm.epoch_rng(cfg.seed, epoch, rng)
        divisions = co_divisions(learners, epoch, cfg)
        dones = []
        for k, one in enumerate(learners):
            try:
                dones.append(run_epoch(one.run, epoch, rng, progress=options.progress, division=divisions[1 - k]))
            except Diverged as exc:
                raise Diverged(exc.epoch, exc.step, checkpoint) from None
            if dones[-1].record is not None and epoch in gmm_plot_epochs and k == 0:
                gmm_records[epoch] = dones[-1].record
            if cfg.lr_warmup_epochs <= 0:  # a per-epoch cosine; a per-step schedule steps with the optimizer
                one.scheduler.step()
            comm.same_buffers(parts[k])  # batch-norm statistics as the first process has them
        val = song_accuracy(kept, val_set, tasks, device)
        seconds = time.perf_counter() - started
        rows = [epoch_row(epoch, done, val, cfg, tasks, seconds) for done in dones]
        history += rows if len(rows) == 1 else [{**row, "body": k + 1} for k, row in enumerate(rows)]
        if val.get("song_auc", 0.0) > best["song_auc"] or not val:
            best = {"song_auc": val.get("song_auc", 0.0), "state": kept_state(net, kept), "epoch": epoch + 1}
        for row in rows:
            log(format_epoch(row, tasks))
        if checkpoint is not None and comm.is_first:
            save_checkpoint(checkpoint, {
                "model": best["state"], "last": net.state_dict(), **learners[0].state(),
                "peers": [one.state() for one in learners[1:]], "epoch": epoch, "history": history, "best": best,
                "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "train_config": cfg.to_dict(),
            })
    net.load_state_dict(best["state"])
    return net.cpu().eval(), history, gmm_records


def probe(part: torch.nn.Module, train_set: SegmentSet, val_set: SegmentSet, labels: torch.Tensor,
          tasks: dict[str, int], cfg: TrainConfig, comm: Communicator, rng: np.random.Generator,
          options: LoopOptions, body: int = 0) -> None:
    """LP-FT's first stage (``cfg.probe_epochs``): plain cross-entropy steps, through the air too under
    ``cfg.consistency``, on the heads alone at the heads' rate with a cosine to 0, the pretrained parts frozen
    and restored after; ``body``: its number in an ensemble (0: a single network). One process: a data-parallel
    wrapper would have to be rebuilt for the whole network."""
    if comm.world_size > 1:
        raise MerLiveError("--probe-epochs trains in one process: drop it, or run without torchrun")
    frozen = [(p, p.requires_grad) for module in pretrained_parts(part) for p in module.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)
    heads = [p for p in part.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(heads, lr=cfg.lr, weight_decay=cfg.weight_decay)
    stepped_schedule(optimizer, 0.0, cfg.probe_epochs, len(train_set), cfg, comm)
    plain = dataclasses.replace(cfg, warmup_epochs=cfg.probe_epochs, **NAIVE_OVERRIDES)
    scaler = torch.amp.GradScaler("cuda", enabled=comm.device.type == "cuda")
    run = Training(part, train_set, labels, tasks, plain, optimizer, scaler, comm)
    for epoch in range(cfg.probe_epochs):
        started = time.perf_counter()
        done = run_epoch(run, epoch, comm.epoch_rng(cfg.seed, epoch, rng), progress=options.progress)
        val = song_accuracy(part, val_set, tasks, comm.device)
        row = epoch_row(epoch, done, val, cfg, tasks, time.perf_counter() - started)
        options.log(format_epoch({**row, "phase": "heads", **({"body": body} if body else {})}, tasks, "probe"))
    for p, flag in frozen:
        p.requires_grad_(flag)


def co_divisions(learners: list[Learner], epoch: int, cfg: TrainConfig) -> list[tuple[np.ndarray, dict] | None]:
    """Under co-divide after the warm-up, every network's division of the segments, all made before any network
    steps this epoch (DivideMix's eval_train of both); else none (each network divides for itself in
    ``run_epoch``). Network k steps on ``divisions[1 - k]``: its peer's."""
    if len(learners) == 1 or epoch < cfg.warmup_epochs or not cfg.gmm:
        return [None, None]
    return [divide(one.kept, one.run.segments, one.run.tasks, one.run.comm, cfg.seed + epoch, cfg.gmm_per_class,
                   cfg.gmm_input) for one in learners]


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


def format_epoch(row: dict, tasks: dict[str, int], kind: str = "epoch") -> str:
    """One log line of a history row; ``kind`` names the loop it came from (``probe``: the heads alone)."""
    clean = " ".join(f"clean_{t[0]}={row[f'clean_{t}']:.2f}" for t in tasks)
    val = " ".join(f"val_{t[0]} acc={row.get(f'val_{t}_song_acc', float('nan')):.3f} "
                   f"auc={row.get(f'val_{t}_song_auc', float('nan')):.3f}" for t in tasks)
    body = f" body {row['body']}" if "body" in row else ""
    extras = "".join(f" {part}={row[part]:.4f}" for part in ("distill", "moods", "song") if row.get(part))
    return (f"{kind} {row['epoch']:3d}{body} {row['phase']:6s} loss={row['loss']:.4f} lx={row['lx']:.3f} "
            f"lu={row['lu']:.4f} kl={row['kl']:.4f}{extras} {clean} {val} ({row['seconds']:.0f}s)")
