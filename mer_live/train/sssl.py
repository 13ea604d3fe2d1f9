"""The SSSL maths, one epoch of it and its parts: prediction, the GMM division, a warm-up step, an SSSL step.

``run_epoch`` is one epoch as the trainer (and the training benchmark) runs it: the per-epoch
clean/noisy division (SSSL phase), then optimizer steps over the epoch's segments in batches.
One network carries both heads, so the division is per task: every segment gets a clean
probability for valence and one for arousal. In a batch, a segment whose valence clean
probability exceeds tau is a *labeled* row for the valence head (soft cross-entropy on its
refined label) and, independently, a labeled or *unlabeled* row for the arousal head (MSE on
a sharpened pseudo-label). So a segment clean for valence and noisy for arousal keeps its
valence label and has its arousal label replaced by the network's own sharpened guess.

Every function runs on a ``comm`` (``mer_live.train.comm``): under data-parallel training it shards
the work (each process predicts its share of the segments for the division, the GMM is fit once on
all of them, each process steps on its share of every batch); for one process (``Solo``) each of
those is the plain computation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel

from mer_live.errors import MerLiveError
from mer_live.nn import mobilenet
from mer_live.nn.mobilenet import MobileNet
from mer_live.nn.model import split_logits
from mer_live.train import losses
from mer_live.train.comm import Communicator
from mer_live.train.division import divide_losses
from mer_live.train.segments import SegmentSet
from mer_live.train.settings import GMM_INPUTS, TrainConfig

LOSS_PARTS = ("loss", "lx", "lu", "penalty", "kl", "distill", "moods", "song")
SONG_RUN = 4  # under cfg.song_loss, a batch holds runs of up to this many segments of one song


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


def divide(backbone: torch.nn.Module, segments: SegmentSet, tasks: dict[str, int], comm: Communicator,
           seed: int, per_class: bool = False, gmm_input: str = "loss") -> tuple[np.ndarray, dict[str, dict]]:
    """Per-task clean probability of every segment from a GMM on its eval-mode CE loss.

    ``gmm_input`` "loss" fits the GMM on the CE loss itself (DivideMix, the paper), and
    "clip-relative" on the loss minus its clip's mean (see ``clip_relative``). Returns
    (segments, tasks) clean probabilities and, per task and class, the normalised losses and
    GMM parameters (for the "GMM separation" plots). Every process predicts its share of the
    segments, the shares are gathered, and the GMM is fit once (first process) and the same
    division sent to every process.
    """
    if gmm_input not in GMM_INPUTS:
        raise MerLiveError(f"unknown GMM input {gmm_input!r}: choose from {', '.join(GMM_INPUTS)}")
    probs = comm.gather_rows(lambda idx: predict(backbone, segments, tasks, comm.device, idx), len(segments))

    def fit() -> tuple[np.ndarray, dict[str, dict]]:
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

    return comm.from_first(fit)


@dataclass(frozen=True)
class Mix:
    """Mixup: every row mixed with row ``perm`` at weight ``lam`` (SSSL's steps mix inputs and soft targets with
    it; the plain cross-entropy steps mix inputs and weigh the two rows' labels)."""

    lam: float
    perm: torch.Tensor

    @classmethod
    def draw(cls, alpha: float, rows: int, rng: np.random.Generator, device: torch.device) -> Mix:
        return cls(losses.mixup_lambda(alpha, rng), torch.from_numpy(rng.permutation(rows)).to(device))

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return self.lam * x + (1 - self.lam) * x[self.perm]

    def cross_entropy(self, logits: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0,
                      weight: torch.Tensor | None = None) -> torch.Tensor:
        """Each row's loss on its own label at ``lam`` and on its partner's at 1 - lam, each label's row ``weight``
        following it."""
        return (self.lam * weighted_ce(logits, y, smoothing, weight)
                + (1 - self.lam) * weighted_ce(logits, y[self.perm], smoothing,
                                               None if weight is None else weight[self.perm]))


def weighted_ce(logits: torch.Tensor, y: torch.Tensor, smoothing: float, weight: torch.Tensor | None
                ) -> torch.Tensor:
    """The batch's mean cross-entropy, each row's times its ``weight`` when there is one."""
    if weight is None:
        return F.cross_entropy(logits, y, label_smoothing=smoothing)
    return (weight * F.cross_entropy(logits, y, label_smoothing=smoothing, reduction="none")).mean()


def quiet_weights(y: torch.Tensor, tasks: list[str], quiet: float) -> torch.Tensor | None:
    """Per row, the weight of the valence head's loss: ``quiet`` where the inherited arousal is low (a sad or
    calm song's segment, where valence is hardest), 1 elsewhere; None when every weight is 1."""
    if quiet == 1:
        return None
    low = y[:, tasks.index("arousal")] == 0
    return torch.where(low, quiet, 1.0).float()


def inherited_ce(logits: dict[str, torch.Tensor], y: torch.Tensor, mix: Mix | None, smoothing: float = 0.0,
                 quiet: float = 1.0) -> torch.Tensor:
    """Cross-entropy on the inherited labels, summed over the heads (of the mixed labels under ``mix``), each
    label smoothed by ``smoothing`` towards the uniform distribution; the valence head's loss on a low-arousal
    label counts ``quiet`` times."""
    weights = quiet_weights(y, list(logits), quiet)
    return sum(weighted_ce(v, y[:, t], smoothing, weights if name == "valence" else None) if mix is None
               else mix.cross_entropy(v, y[:, t], smoothing, weights if name == "valence" else None)
               for t, (name, v) in enumerate(logits.items()))


@dataclass(frozen=True)
class Songs:
    """A batch's songs (``cfg.song_loss``): the clip of every row, and the share of the plain cross-entropy
    that scores each song's mean segment logits instead of its segments one by one."""

    clip: torch.Tensor
    weight: float

    def cross_entropy(self, logits: dict[str, torch.Tensor], y: torch.Tensor, smoothing: float = 0.0
                      ) -> torch.Tensor:
        """Cross-entropy of every song's mean logits over its rows in the batch, on its label, summed over heads."""
        clips, song = torch.unique(self.clip, return_inverse=True)
        songs = len(clips)
        rows = torch.bincount(song, minlength=songs).unsqueeze(1)
        labels = y.new_zeros(songs, y.shape[1]).index_copy_(0, song, y)  # a song's rows share its label
        return sum(F.cross_entropy(v.new_zeros(songs, v.shape[1]).index_add_(0, song, v) / rows, labels[:, t],
                                   label_smoothing=smoothing) for t, v in enumerate(logits.values()))


def plain_ce(logits: dict[str, torch.Tensor], y: torch.Tensor, mix: Mix | None, smoothing: float,
             songs: Songs | None, quiet: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """``inherited_ce``, and under ``songs`` their share of it scored by song instead (with the logged part)."""
    segments = inherited_ce(logits, y, mix, smoothing, quiet)
    if songs is None:
        return segments, {}
    song = songs.cross_entropy(logits, y, smoothing)
    return (1 - songs.weight) * segments + songs.weight * song, {"song": song.item()}


def song_runs(order: np.ndarray, clip_of: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """The epoch's segments ``order`` regrouped into runs of up to ``size`` segments of one clip (in their order
    there), the runs shuffled: consecutive rows of a batch share a song, so the song loss has several to pool."""
    by_clip = order[np.argsort(clip_of[order], kind="stable")]
    clips = clip_of[by_clip]
    firsts = np.flatnonzero(np.r_[True, clips[1:] != clips[:-1]])
    within = np.arange(len(by_clip)) - np.repeat(firsts, np.diff(np.r_[firsts, len(by_clip)]))
    starts = np.flatnonzero(within % size == 0)
    runs = np.split(by_clip, starts[1:])
    return np.concatenate([runs[i] for i in rng.permutation(len(runs))])


@dataclass(frozen=True)
class Distill:
    """Learning without Forgetting (``cfg.distill``): the pretrained AudioSet network, frozen, whose tags on the
    clean segments the fine-tuned body's own tags are pulled towards, at ``weight``."""

    reference: MobileNet
    weight: float

    def term(self, x: torch.Tensor, tags: torch.Tensor, clean_rows: int) -> torch.Tensor:
        """The distillation term: the body's tags on ``x`` (views of the same segments stacked) against the
        reference's on the first ``clean_rows`` rows."""
        with torch.no_grad():
            target = torch.sigmoid(self.reference(mobilenet.normalize(x[:clean_rows])).float())
        return losses.bernoulli_kl(tags.float(), target.repeat(len(x) // clean_rows, 1))


@dataclass(frozen=True)
class Moods:
    """A batch's mood-tag targets (``cfg.mood_tags``): each row's clip's tags as a distribution, learned by the
    network's mood head (softmax cross-entropy on the clean rows) at ``weight``."""

    targets: torch.Tensor
    weight: float


def forward(backbone: torch.nn.Module, x: torch.Tensor, distill: Distill | None, clean_rows: int,
            moods: Moods | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The heads' logits, the distillation term (0 without ``distill``) and the mood head's logits on the first
    ``clean_rows`` rows (None without ``moods``), all from one pass."""
    if distill is None and moods is None:
        return backbone(x).float(), x.new_zeros(()), None
    logits, *extra = backbone(x, tags=distill is not None, moods=moods is not None)
    term = x.new_zeros(()) if distill is None else distill.term(x, extra.pop(0), clean_rows)
    return logits.float(), term, None if moods is None else extra[0][:clean_rows].float()


def with_extras(loss: torch.Tensor, parts: dict[str, float], term: torch.Tensor, distill: Distill | None,
                mood_logits: torch.Tensor | None = None, moods: Moods | None = None, mix: Mix | None = None
                ) -> tuple[torch.Tensor, dict[str, float]]:
    """A step's loss and logged parts, with the distillation term and the mood-tag term (its targets mixed as
    the inputs were under ``mix``) added when there are."""
    if distill is not None:
        loss, parts = loss + distill.weight * term, {**parts, "distill": term.item()}
    if moods is not None:
        targets = moods.targets if mix is None else mix.inputs(moods.targets)
        mood = losses.tag_cross_entropy(mood_logits, targets)
        loss, parts = loss + moods.weight * mood, {**parts, "moods": mood.item()}
    return loss, parts


def warmup_step(backbone: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, tasks: dict[str, int],
                mix: Mix | None = None, distill: Distill | None = None, smoothing: float = 0.0,
                moods: Moods | None = None, songs: Songs | None = None, quiet: float = 1.0
                ) -> tuple[torch.Tensor, dict[str, float]]:
    """Plain cross-entropy on inherited labels, both heads; of mixed segments and labels under ``mix``, partly by
    song under ``songs``, valence on low-arousal labels ``quiet`` times."""
    x = x if mix is None else mix.inputs(x)
    logits, term, mood_logits = forward(backbone, x, distill, len(x), moods)
    loss, parts = plain_ce(split_logits(logits, tasks), y, mix, smoothing, songs, quiet)
    return with_extras(loss, parts, term, distill, mood_logits, moods, mix)


def consistency_step(backbone: torch.nn.Module, x: torch.Tensor, heard: torch.Tensor, y: torch.Tensor,
                     tasks: dict[str, int], weight: float, mix: Mix | None = None, distill: Distill | None = None,
                     smoothing: float = 0.0, moods: Moods | None = None, songs: Songs | None = None,
                     quiet: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy on inherited labels for the clean view (partly by song under ``songs``), plus ``weight``
    times the KL from its softmax (gradient stopped) to the same segments ``heard`` through the air; one pass
    over both, so batch norm sees both. Under ``mix`` both views are mixed with the same partners."""
    if mix is not None:
        x, heard = mix.inputs(x), mix.inputs(heard)
    logits, term, mood_logits = forward(backbone, torch.cat([x, heard]), distill, len(x), moods)
    clean, air = (split_logits(chunk, tasks) for chunk in logits.chunk(2))
    lx, parts = plain_ce(clean, y, mix, smoothing, songs, quiet)
    kl = sum(losses.kl_to_target(air[task], clean[task]) for task in tasks)
    return with_extras(lx + weight * kl, {"lx": lx.item(), "kl": kl.item(), **parts}, term, distill, mood_logits,
                       moods, mix)


def sssl_step(backbone: torch.nn.Module, x1: torch.Tensor, x2: torch.Tensor, y: torch.Tensor,
              clean: torch.Tensor, tasks: dict[str, int], cfg: TrainConfig, lambda_u: float,
              rng: np.random.Generator, teacher: torch.nn.Module | None = None,
              peer: torch.nn.Module | None = None, distill: Distill | None = None, moods: Moods | None = None
              ) -> tuple[torch.Tensor, dict[str, float]]:
    """One semi-supervised step on a batch; returns the loss and its parts for logging.

    Targets come from both views (no grad, eval mode), guessed by the ``teacher`` (the weights'
    moving average) when there is one, else by the network itself; with a ``peer`` (co-divide) the
    unlabeled rows' guess is the mean of both networks' (DivideMix's co-guessing) while the labeled
    rows are refined with this network's own (co-refinement). The mixed batch is built from the
    first view, then passed twice in train mode for R-Drop.
    """
    guesser = backbone if teacher is None else teacher
    guessers = [guesser] if peer is None else [guesser, peer]
    with torch.no_grad():
        guesses = []
        for net in guessers:
            net.eval()
            guesses.append(split_logits(net(torch.cat([x1, x2])).float(), tasks))
    backbone.train()
    targets, labeled = {}, {}
    for t, task in enumerate(tasks):
        own, *other = (torch.softmax(g[task], 1).view(2, len(x1), -1).mean(dim=0) for g in guesses)
        onehot = F.one_hot(y[:, t], tasks[task]).float()
        labeled[task] = clean[:, t] > cfg.tau
        refined = losses.refine_labels(onehot, clean[:, t], own, cfg.temperature) if cfg.refine else onehot
        guessed = losses.sharpen(torch.stack([own, *other]).mean(dim=0), cfg.temperature)
        targets[task] = torch.where(labeled[task].unsqueeze(1), refined, guessed)

    inputs, mix = x1, None
    if cfg.mixup:
        mix = Mix.draw(cfg.alpha, len(x1), rng, x1.device)
        inputs = mix.inputs(inputs)
        targets = {k: mix.inputs(v) for k, v in targets.items()}

    passes = 2 if cfg.rdrop else 1
    logits, term, mood_logits = forward(backbone, inputs.repeat(passes, 1, 1), distill, len(inputs), moods)
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
    return with_extras(total, parts, term, distill, mood_logits, moods, mix)


def pretrained_parts(trainable: torch.nn.Module) -> list[torch.nn.Module]:
    """The pretrained parts a network fine-tunes (musicnn's back end and mid-end, an AudioSet MobileNet's body);
    the rest of it, our heads, starts from random weights."""
    top = getattr(trainable, "top", None)
    parts = [getattr(trainable, "backend", None), getattr(trainable, "body", None), getattr(top, "backend", None)]
    return [part for part in parts if part is not None]


def param_groups(trainable: torch.nn.Module, cfg: TrainConfig) -> list[dict]:
    """Pretrained parts being fine-tuned (musicnn's back end and mid-end, an AudioSet MobileNet's body) learn at
    ``backbone_lr_scale`` of the heads' rate; with ``layer_decay`` < 1 each stage of the body before the last
    learns at that factor of the next one's rate."""
    tuned = [[p for p in stage.parameters() if p.requires_grad] for part in pretrained_parts(trainable)
             for stage in (part.stages() if isinstance(part, MobileNet) else [part])]
    if cfg.layer_decay == 1:  # one group for the body, as checkpoints saved before layer decay have
        tuned = [[p for stage in tuned for p in stage]]
    ids = {id(p) for stage in tuned for p in stage}
    rest = [p for p in trainable.parameters() if id(p) not in ids and p.requires_grad]
    rate = cfg.lr * cfg.backbone_lr_scale
    return [{"params": rest, "lr": cfg.lr}] + [
        {"params": stage, "lr": rate * cfg.layer_decay ** (len(tuned) - 1 - i)}
        for i, stage in enumerate(tuned) if stage]


class Diverged(MerLiveError):
    """A non-finite loss at ``epoch``, ``step`` (both from 1), caught before it reached the weights;
    ``checkpoint``: the last good one, kept (the loop names it when it keeps one)."""

    def __init__(self, epoch: int, step: int, checkpoint: Path | None = None) -> None:
        self.epoch, self.step, self.checkpoint = epoch, step, checkpoint
        kept = f"the last good checkpoint is kept at {checkpoint}; " if checkpoint is not None else ""
        super().__init__(f"training diverged: non-finite loss at epoch {epoch}, step {step}; {kept}"
                         "lower --lr and resume with --resume")


@dataclass
class Training:
    """What every epoch of one run steps with: the network (wrapped by ``comm`` for several processes),
    the training segments and their labels, the settings, the optimizer and the process group."""

    model: torch.nn.Module
    segments: SegmentSet
    labels: torch.Tensor
    tasks: dict[str, int]
    cfg: TrainConfig
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    comm: Communicator
    teacher: AveragedModel | None = None  # the weights' moving average (``cfg.ema``), updated every step
    peer: torch.nn.Module | None = None  # co-divide: the other network, which co-guesses the unlabeled targets
    distill: Distill | None = None  # cfg.distill: the pretrained network whose tags the body's are pulled towards

    @property
    def device(self) -> torch.device:
        return self.comm.device


@dataclass
class Epoch:
    """What one epoch did: summed loss parts, steps, the division, and where the time went."""

    phase: str  # "warmup" or "sssl"
    steps: int
    segments: int  # segments in the epoch's order, all processes together
    clean: np.ndarray  # (train segments, tasks) clean probability (ones in warm-up or without the GMM)
    record: dict | None = None  # the GMM record (plots); None without a division
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(LOSS_PARTS, 0.0))
    load_s: float = 0.0  # building views and copying them to the device
    compute_s: float = 0.0  # forward, backward, optimizer step
    division_s: float = 0.0

    @property
    def means(self) -> dict[str, float]:
        return {k: v / self.steps for k, v in self.sums.items()}


def run_epoch(run: Training, epoch: int, rng: np.random.Generator, *, max_steps: int = 0,
              progress: Callable[[int, int], None] | None = None, timed: bool = False,
              division: tuple[np.ndarray, dict] | None = None) -> Epoch:
    """One epoch: warm-up (plain CE on inherited labels, plus ``consistency_step``'s term when the segments
    have other recordings and ``cfg.consistency`` is on) before ``cfg.warmup_epochs``, else the GMM
    division of every segment then SSSL steps. ``division``: the clean probabilities and GMM record made
    by another network (co-divide: the peer's, before either network stepped this epoch), instead of this
    network's own. ``max_steps`` cuts the epoch short (benchmarks); ``timed`` waits for the device around
    each part so the times are real. A non-finite loss raises ``Diverged`` before it reaches the weights. Under
    ``cfg.sam`` every step is sharpness-aware (``sharpness_aware``): its loss is computed twice."""
    model, segments, tasks, cfg, comm, device = run.model, run.segments, run.tasks, run.cfg, run.comm, run.device
    module = getattr(model, "module", model)  # the network itself under DistributedDataParallel
    warm = epoch < cfg.warmup_epochs
    result = Epoch("warmup" if warm else "sssl", 0, 0, np.ones((len(segments), len(tasks))))
    if not warm and cfg.gmm:
        started = time.perf_counter()
        judge = module if run.teacher is None else run.teacher
        result.clean, result.record = division or divide(judge, segments, tasks, comm, cfg.seed + epoch,
                                                         cfg.gmm_per_class, cfg.gmm_input)
        comm.note_division(epoch, result.clean)
        _sync(device, timed)
        result.division_s = time.perf_counter() - started
    order = comm.epoch_order(len(segments), epoch, cfg.seed, cfg.segments_per_epoch, rng)
    if warm and cfg.song_loss:
        order = song_runs(order, segments.clip_of, SONG_RUN, rng)
    steps = max(1, len(order) // cfg.batch_size)
    result.steps = min(steps, max_steps) if max_steps else steps
    consistent = cfg.consistency > 0 and bool(segments.versions)
    model.train()
    for step in range(result.steps):
        started = time.perf_counter()
        idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
        y = run.labels[idx].to(device)
        views = [torch.from_numpy(segments.batch(idx, rng, cfg)).to(device) for _ in range(1 if warm else 2)]
        heard = torch.from_numpy(segments.heard(idx, rng, cfg)).to(device) if warm and consistent else None
        _sync(device, timed)
        loaded = time.perf_counter()
        mix = Mix.draw(cfg.ce_mixup, len(idx), rng, device) if warm and cfg.ce_mixup > 0 else None
        moods = None if segments.moods is None or not cfg.mood_tags else Moods(
            torch.from_numpy(segments.moods[segments.clip_of[idx]]).to(device), cfg.mood_tags)
        songs = (Songs(torch.from_numpy(segments.clip_of[idx]).to(device), cfg.song_loss)
                 if warm and cfg.song_loss else None)
        if heard is not None:
            loss_of = partial(consistency_step, model, views[0], heard, y, tasks, cfg.consistency, mix, run.distill,
                              cfg.label_smoothing, moods, songs, cfg.quiet_valence)
        elif warm:
            loss_of = partial(warmup_step, model, views[0], y, tasks, mix, run.distill, cfg.label_smoothing, moods,
                              songs, cfg.quiet_valence)
        else:
            w = torch.from_numpy(result.clean[idx]).float().to(device)
            lam_u = losses.linear_rampup(epoch + step / steps, cfg.warmup_epochs, cfg.lambda_u, cfg.rampup_epochs)
            loss_of = partial(sssl_step, model, views[0], views[1], y, w, tasks, cfg, lam_u, rng, run.teacher,
                              run.peer, run.distill, moods)
        batch_loss = partial(step_loss, loss_of, device)
        loss, parts = batch_loss()
        if not comm.all_finite(loss):
            raise Diverged(epoch + 1, step + 1)
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        if cfg.sam:
            sharpness_aware(model, batch_loss, cfg.sam, run.scaler)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        if run.teacher is not None:
            run.teacher.update_parameters(module)
        result.sums["loss"] += loss.item()
        for k, v in parts.items():
            result.sums[k] += v
        _sync(device, timed)
        result.load_s += loaded - started
        result.compute_s += time.perf_counter() - loaded
        if progress:
            progress(step + 1, result.steps)
    result.segments = len(order) * comm.world_size
    result.sums = comm.mean(result.sums)
    return result


def step_loss(loss_of: Callable[[], tuple[torch.Tensor, dict[str, float]]], device: torch.device
              ) -> tuple[torch.Tensor, dict[str, float]]:
    """A step's loss, in half precision on a GPU (its scaler keeps the gradients), in full on a CPU."""
    with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
        return loss_of()


def sharpness_aware(model: torch.nn.Module, batch_loss: Callable[[], tuple[torch.Tensor, dict[str, float]]],
                    rho: float, scaler: torch.amp.GradScaler) -> None:
    """SAM's second pass (Foret et al. 2021): given the batch's gradient in ``.grad``, move the weights ``rho``
    up it (an L2 step over every parameter with a gradient), take the gradient of ``batch_loss`` there, and
    put them back, so the optimizer steps with the gradient of the worst point nearby. The scaled gradient's
    direction is its scale's, so a loss scaler changes nothing; a non-finite gradient is left to the scaler to
    skip. Batch norm's running statistics are put back after the second pass, so they count each batch
    once, as without SAM; SSSL's step guesses its targets and draws its mixup afresh for it."""
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad.float()) for p in params]))
    if not bool(torch.isfinite(norm)) or float(norm) == 0.0:
        return
    kept = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p in params:
            p.add_(p.grad * (rho / norm))
    statistics = [b for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                  for b in m.buffers()]
    counted = [b.clone() for b in statistics]
    try:
        model.zero_grad(set_to_none=True)
        scaler.scale(batch_loss()[0]).backward()
    finally:
        with torch.no_grad():
            for b, before in zip(statistics, counted, strict=True):
                b.copy_(before)
            for p, weights in zip(params, kept, strict=True):
                p.copy_(weights)


def _sync(device: torch.device, timed: bool) -> None:
    if timed and device.type == "cuda":
        torch.cuda.synchronize()
