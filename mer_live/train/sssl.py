"""The SSSL training loop: warm-up, then per-epoch GMM division, refinement, mixup, R-Drop.

Read top to bottom: ``SegmentSet`` holds the segments (slices of cached clip log-mels that
inherit their clip's labels), ``divide`` is the per-epoch clean/noisy split, ``sssl_step`` is
one semi-supervised step, ``train`` is the loop with validation, checkpoints and resume.

One network carries both heads, so the division is per task: every segment gets a clean
probability for valence and one for arousal. In a batch, a segment whose valence clean
probability exceeds tau is a *labeled* row for the valence head (soft cross-entropy on its
refined label) and, independently, a labeled or *unlabeled* row for the arousal head (MSE on
a sharpened pseudo-label). So a segment clean for valence and noisy for arousal keeps its
valence label and has its arousal label replaced by the network's own sharpened guess.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from mer_live.config import AudioConfig
from mer_live.errors import MerLiveError
from mer_live.model import ModelConfig, SegmentNet, split_logits
from mer_live.train import losses
from mer_live.train.division import divide_losses
from mer_live.train.rundir import save_checkpoint


@dataclass(frozen=True)
class TrainConfig:
    """SSSL hyperparameters. [inferred] defaults are not fixed by the paper; measure them."""

    epochs: int = 12
    warmup_epochs: int = 4  # DivideMix uses 10-30 on CIFAR; short runs here [inferred]
    batch_size: int = 64
    lr: float = 1e-3  # Adam; from scratch on a small CNN [inferred]
    backbone_lr_scale: float = 0.1  # pretrained back end, when fine-tuned: a tenth of the heads' rate [inferred]
    weight_decay: float = 1e-4
    tau: float = 0.5  # clean threshold (DivideMix p_threshold)
    temperature: float = 0.5  # sharpening T
    alpha: float = 1.0  # mixup Beta(alpha, alpha); DivideMix CIFAR uses 4 [inferred for spectrograms]
    # unlabeled MSE weight, ramped over `rampup_epochs`. DivideMix uses 25 on CIFAR's synthetic noise but 0 on
    # the real-world noise of Clothing1M and WebVision; inherited segment labels are real-world noise, and on
    # 4Q a first 25 cut validation valence AUC from 0.71 to 0.63 within one epoch [inferred]
    lambda_u: float = 0.0
    rampup_epochs: int = 16
    lambda_kl: float = 1.0  # R-Drop weight
    gmm: bool = True
    gmm_input: str = "loss"  # "loss" (DivideMix) or "clip-relative" (loss minus its clip's mean) [inferred]
    gmm_per_class: bool = False  # one GMM per task and class (optional in the method doc) [inferred]
    mixup: bool = True
    rdrop: bool = True
    refine: bool = True
    shift_frames: int = 8  # view augmentation: random time shift within the clip
    freq_mask: int = 8  # SpecAugment: one frequency mask of up to this many mel bands
    time_mask: int = 12  # and one time mask of up to this many frames
    segments_per_epoch: int = 0  # 0 = every segment each epoch; else a fresh random subset
    gain_augment_db: tuple[float, ...] = ()  # also train on every clip as if recorded at these gains [inferred]
    val_fraction: float = 0.15
    seed: int = 0
    device: str = "auto"

    def to_dict(self) -> dict:
        return asdict(self)


GMM_INPUTS = ("loss", "clip-relative")
NAIVE_OVERRIDES = {"gmm": False, "mixup": False, "rdrop": False, "refine": False}


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA when available (or asked), else the CPU."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise MerLiveError("--device cuda asked for, but torch sees no CUDA GPU")
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(requested)


@dataclass
class SegmentSet:
    """Segments of clips as (clip, start frame) pairs into the clips' cached log-mels."""

    logmels: list[np.ndarray]
    labels: np.ndarray  # (clips, tasks) 0/1
    frames: int
    clip_of: np.ndarray = field(init=False)
    start: np.ndarray = field(init=False)
    hop_frames: int = 0

    def __post_init__(self) -> None:
        clip_of, start = [], []
        for c, mel in enumerate(self.logmels):
            count = 1 + max(0, mel.shape[1] - self.frames) // self.hop_frames
            clip_of.append(np.full(count, c))
            start.append(np.arange(count) * self.hop_frames)
        self.clip_of = np.concatenate(clip_of) if clip_of else np.zeros(0, int)
        self.start = np.concatenate(start) if start else np.zeros(0, int)

    @classmethod
    def from_clips(cls, logmels: list[np.ndarray], labels: np.ndarray, audio: AudioConfig) -> SegmentSet:
        return cls(logmels=logmels, labels=np.asarray(labels), frames=audio.segment_frames,
                   hop_frames=audio.hop_frames)

    def __len__(self) -> int:
        return len(self.clip_of)

    @property
    def segment_labels(self) -> np.ndarray:
        """(segments, tasks): each segment inherits its clip's label."""
        return self.labels[self.clip_of]

    def batch(self, idx: np.ndarray, rng: np.random.Generator | None = None, cfg: TrainConfig | None = None
              ) -> np.ndarray:
        """(len(idx), n_mels, frames) log-mel; with ``rng`` a randomly shifted, masked view."""
        out = np.empty((len(idx), self.logmels[0].shape[0], self.frames), dtype=np.float32)
        for row, i in enumerate(idx):
            mel = self.logmels[self.clip_of[i]]
            start = int(self.start[i])
            if rng is not None and cfg is not None and cfg.shift_frames:
                last = max(0, mel.shape[1] - self.frames)
                start = int(np.clip(start + rng.integers(-cfg.shift_frames, cfg.shift_frames + 1), 0, last))
            piece = mel[:, start : start + self.frames]
            out[row, :, : piece.shape[1]] = piece
            out[row, :, piece.shape[1] :] = piece.min() if piece.size else 0.0
            if rng is not None and cfg is not None:
                _spec_augment(out[row], rng, cfg)
        return out


def _spec_augment(mel: np.ndarray, rng: np.random.Generator, cfg: TrainConfig) -> None:
    floor = mel.min()
    if cfg.freq_mask:
        width = int(rng.integers(0, cfg.freq_mask + 1))
        f0 = int(rng.integers(0, mel.shape[0] - width + 1))
        mel[f0 : f0 + width] = floor
    if cfg.time_mask:
        width = int(rng.integers(0, cfg.time_mask + 1))
        t0 = int(rng.integers(0, mel.shape[1] - width + 1))
        mel[:, t0 : t0 + width] = floor


@torch.no_grad()
def predict(backbone: torch.nn.Module, segments: SegmentSet, tasks: dict[str, int], device: torch.device,
            idx: np.ndarray | None = None, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Eval-mode softmax per task for the given (default: all) segments."""
    backbone.eval()
    idx = np.arange(len(segments)) if idx is None else idx
    out: dict[str, list[np.ndarray]] = {t: [] for t in tasks}
    for s in range(0, len(idx), batch_size):
        x = torch.from_numpy(segments.batch(idx[s : s + batch_size])).to(device)
        for task, logits in split_logits(backbone(x).float(), tasks).items():
            out[task].append(torch.softmax(logits, dim=1).cpu().numpy())
    return {t: np.concatenate(v) if v else np.zeros((0, tasks[t])) for t, v in out.items()}


def clip_relative(losses: np.ndarray, clip_of: np.ndarray) -> np.ndarray:
    """Each segment's loss minus the mean loss of its clip's segments.

    A segment's inherited label is wrong when the emotion moves away from the clip's within
    the clip; a whole clip the network finds hard has high losses everywhere without any
    segment being mislabeled. Relative to its clip, only the segments that disagree with
    their own clip stand out.
    """
    sums = np.bincount(clip_of, weights=losses)
    counts = np.bincount(clip_of)
    return losses - (sums / np.maximum(counts, 1))[clip_of]


def divide(backbone: torch.nn.Module, segments: SegmentSet, tasks: dict[str, int], device: torch.device,
           seed: int, per_class: bool = False, gmm_input: str = "loss") -> tuple[np.ndarray, dict[str, dict]]:
    """Per-task clean probability of every segment from a GMM on its eval-mode CE loss.

    ``gmm_input`` "loss" fits the GMM on the CE loss itself (DivideMix, the paper), and
    "clip-relative" on the loss minus its clip's mean (see ``clip_relative``). Returns
    (segments, tasks) clean probabilities and, per task and class, the normalised losses and
    GMM parameters (for the "GMM separation" plots).
    """
    if gmm_input not in GMM_INPUTS:
        raise MerLiveError(f"unknown GMM input {gmm_input!r}: choose from {', '.join(GMM_INPUTS)}")
    probs = predict(backbone, segments, tasks, device)
    labels = segments.segment_labels
    clean = np.empty((len(segments), len(tasks)))
    record = {}
    for t, task in enumerate(tasks):
        p = probs[task][np.arange(len(segments)), labels[:, t]]
        ce = -np.log(np.clip(p, 1e-12, 1.0))
        if gmm_input == "clip-relative":
            ce = clip_relative(ce, segments.clip_of)
        clean[:, t], record[task] = divide_losses(ce, labels[:, t] if per_class else None, seed)
    return clean, record


def warmup_step(backbone: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, tasks: dict[str, int]
                ) -> torch.Tensor:
    """Plain cross-entropy on inherited labels, both heads."""
    logits = split_logits(backbone(x).float(), tasks)
    return sum(F.cross_entropy(v, y[:, t]) for t, v in enumerate(logits.values()))


def sssl_step(backbone: torch.nn.Module, x1: torch.Tensor, x2: torch.Tensor, y: torch.Tensor,
              clean: torch.Tensor, tasks: dict[str, int], cfg: TrainConfig, lambda_u: float,
              rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, float]]:
    """One semi-supervised step on a batch; returns the loss and its parts for logging.

    Targets come from both views (no grad, eval mode); the mixed batch is built from the
    first view, then passed twice in train mode for R-Drop.
    """
    backbone.eval()
    with torch.no_grad():
        guess = split_logits(backbone(torch.cat([x1, x2])).float(), tasks)
    backbone.train()
    targets, labeled = {}, {}
    for t, task in enumerate(tasks):
        mean_p = torch.softmax(guess[task], 1).view(2, len(x1), -1).mean(dim=0)
        onehot = F.one_hot(y[:, t], tasks[task]).float()
        labeled[task] = clean[:, t] > cfg.tau
        refined = losses.refine_labels(onehot, clean[:, t], mean_p, cfg.temperature) if cfg.refine else onehot
        guessed = losses.sharpen(mean_p, cfg.temperature)
        targets[task] = torch.where(labeled[task].unsqueeze(1), refined, guessed)

    inputs = x1
    if cfg.mixup:
        lam = losses.mixup_lambda(cfg.alpha, rng)
        perm = torch.from_numpy(rng.permutation(len(x1))).to(x1.device)
        inputs = lam * inputs + (1 - lam) * inputs[perm]
        targets = {k: lam * v + (1 - lam) * v[perm] for k, v in targets.items()}

    passes = 2 if cfg.rdrop else 1
    logits = backbone(inputs.repeat(passes, 1, 1)).float()
    per_pass = [split_logits(chunk, tasks) for chunk in logits.chunk(passes)]
    total = torch.zeros((), device=x1.device)
    parts = {"lx": 0.0, "lu": 0.0, "penalty": 0.0, "kl": 0.0}
    for task in tasks:
        rows, target = labeled[task], targets[task]
        for out in per_pass:
            lx = losses.soft_cross_entropy(out[task][rows], target[rows]) if rows.any() else total * 0
            lu = losses.mse_probabilities(out[task][~rows], target[~rows]) if (~rows).any() else total * 0
            penalty = losses.prior_penalty(out[task])
            total = total + (lx + lambda_u * lu + penalty) / passes
            parts["lx"] += lx.item() / passes
            parts["lu"] += lu.item() / passes
            parts["penalty"] += penalty.item() / passes
        if cfg.rdrop:
            kl = losses.symmetric_kl(per_pass[0][task], per_pass[1][task])
            total = total + cfg.lambda_kl * kl
            parts["kl"] += kl.item()
    return total, parts


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


Log = Callable[[str], None]


def train(
    train_set: SegmentSet,
    val_set: SegmentSet,
    audio: AudioConfig,
    model_config: ModelConfig,
    cfg: TrainConfig,
    checkpoint: Path | None = None,
    resume: bool = False,
    log: Log = print,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[SegmentNet, list[dict], dict]:
    """Train a SegmentNet's backbone on cached log-mel; return the best net, history, GMM records.

    The best epoch is chosen by validation song ROC AUC (plain mean aggregation). With
    ``checkpoint`` every epoch is saved atomically; ``resume`` continues from it. A non-finite
    loss stops the run with a MerLiveError and leaves the last good checkpoint in place.
    """
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = SegmentNet(audio, model_config)
    backbone = net.trainable.to(device)
    tasks = model_config.tasks
    optimizer = torch.optim.Adam(param_groups(backbone, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, cfg.epochs))
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    history: list[dict] = []
    gmm_records: dict[int, dict] = {}
    best = {"song_auc": -1.0, "state": copy.deepcopy(net.state_dict()), "epoch": -1}
    start_epoch = 0
    if resume and checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        net.load_state_dict(state["last"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, best, start_epoch = state["history"], state["best"], state["epoch"] + 1
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        log(f"resumed from {checkpoint} at epoch {start_epoch}")
    labels = torch.from_numpy(train_set.segment_labels.astype(np.int64))
    gmm_plot_epochs = {cfg.warmup_epochs, (cfg.warmup_epochs + cfg.epochs) // 2, cfg.epochs - 1}

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        warm = epoch < cfg.warmup_epochs
        clean = np.ones((len(train_set), len(tasks)))
        if not warm and cfg.gmm:
            clean, record = divide(backbone, train_set, tasks, device, cfg.seed + epoch, cfg.gmm_per_class,
                                   cfg.gmm_input)
            if epoch in gmm_plot_epochs:
                gmm_records[epoch] = record
        order = rng.permutation(len(train_set))
        if cfg.segments_per_epoch:
            order = order[: cfg.segments_per_epoch]
        steps = max(1, len(order) // cfg.batch_size)
        sums = {"loss": 0.0, "lx": 0.0, "lu": 0.0, "penalty": 0.0, "kl": 0.0}
        backbone.train()
        for step in range(steps):
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            y = labels[idx].to(device)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                if warm:
                    x = torch.from_numpy(train_set.batch(idx, rng, cfg)).to(device)
                    loss, parts = warmup_step(backbone, x, y, tasks), {}
                else:
                    x1 = torch.from_numpy(train_set.batch(idx, rng, cfg)).to(device)
                    x2 = torch.from_numpy(train_set.batch(idx, rng, cfg)).to(device)
                    w = torch.from_numpy(clean[idx]).float().to(device)
                    lam_u = losses.linear_rampup(epoch + step / steps, cfg.warmup_epochs, cfg.lambda_u,
                                                 cfg.rampup_epochs)
                    loss, parts = sssl_step(backbone, x1, x2, y, w, tasks, cfg, lam_u, rng)
            if not math.isfinite(loss.item()):
                raise MerLiveError(
                    f"training diverged: non-finite loss at epoch {epoch + 1}, step {step + 1}; "
                    f"the last good checkpoint is kept{f' at {checkpoint}' if checkpoint else ''}; "
                    "lower --lr and resume with --resume"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            sums["loss"] += loss.item()
            for k, v in parts.items():
                sums[k] += v
            if progress:
                progress(step + 1, steps)
        scheduler.step()
        val = song_accuracy(backbone, val_set, tasks, device)
        row = {"epoch": epoch + 1, "phase": "warmup" if warm else "sssl",
               **{k: v / steps for k, v in sums.items()},
               **{f"clean_{task}": float((clean[:, t] > cfg.tau).mean()) for t, task in enumerate(tasks)},
               **{f"val_{k}": v for k, v in val.items()},
               "seconds": time.perf_counter() - t0, "segments": int(len(order))}
        history.append(row)
        if val.get("song_auc", 0.0) > best["song_auc"] or not val:
            best = {"song_auc": val.get("song_auc", 0.0), "state": copy.deepcopy(net.state_dict()),
                    "epoch": epoch + 1}
        log(format_epoch(row, tasks))
        if checkpoint is not None:
            save_checkpoint(checkpoint, {
                "model": best["state"], "last": net.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": epoch, "history": history, "best": best,
                "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                "train_config": cfg.to_dict(),
            })
    net.load_state_dict(best["state"])
    return net.cpu().eval(), history, gmm_records


def param_groups(trainable: torch.nn.Module, cfg: TrainConfig) -> list[dict]:
    """A pretrained back end being fine-tuned learns at ``backbone_lr_scale`` of the heads' rate."""
    backend = getattr(trainable, "backend", None)
    tuned = [p for p in backend.parameters() if p.requires_grad] if backend is not None else []
    ids = {id(p) for p in tuned}
    rest = [p for p in trainable.parameters() if id(p) not in ids and p.requires_grad]
    groups = [{"params": rest, "lr": cfg.lr}]
    if tuned:
        groups.append({"params": tuned, "lr": cfg.lr * cfg.backbone_lr_scale})
    return groups


def format_epoch(row: dict, tasks: dict[str, int]) -> str:
    clean = " ".join(f"clean_{t[0]}={row[f'clean_{t}']:.2f}" for t in tasks)
    val = " ".join(f"val_{t[0]} acc={row.get(f'val_{t}_song_acc', float('nan')):.3f} "
                   f"auc={row.get(f'val_{t}_song_auc', float('nan')):.3f}" for t in tasks)
    return (f"epoch {row['epoch']:3d} {row['phase']:6s} loss={row['loss']:.4f} lx={row['lx']:.3f} "
            f"lu={row['lu']:.4f} kl={row['kl']:.4f} {clean} {val} ({row['seconds']:.0f}s)")
