"""The loss terms of SSSL (DivideMix with one network, plus R-Drop), as small pure functions.

Each follows the reference implementations of DivideMix and R-Drop the paper builds on; the tests
check them against hand-computed values.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """p^(1/T) renormalised: lower entropy targets (DivideMix, MixMatch)."""
    powered = probs ** (1.0 / temperature)
    return powered / powered.sum(dim=1, keepdim=True)


def refine_labels(onehot: torch.Tensor, clean: torch.Tensor, predicted: torch.Tensor, temperature: float
                  ) -> torch.Tensor:
    """Label refinement w*y + (1-w)*p, then sharpening (DivideMix co-refinement, one network)."""
    w = clean.unsqueeze(1)
    return sharpen(w * onehot + (1 - w) * predicted, temperature)


def mixup_lambda(alpha: float, rng: np.random.Generator) -> float:
    """l ~ Beta(alpha, alpha), l = max(l, 1 - l): the mix stays closer to its first input."""
    lam = float(rng.beta(alpha, alpha))
    return max(lam, 1.0 - lam)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Batch mean of -sum_c t_c log softmax(z)_c (L_x)."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def mse_probabilities(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error between softmax and targets over all elements (L_u)."""
    return ((torch.softmax(logits, dim=1) - targets) ** 2).mean()


def prior_penalty(logits: torch.Tensor) -> torch.Tensor:
    """sum_c pi_c log(pi_c / mean_batch p_c) with a uniform prior: discourages one-class collapse."""
    mean_probs = torch.softmax(logits, dim=1).mean(dim=0)
    prior = torch.full_like(mean_probs, 1.0 / mean_probs.numel())
    return (prior * torch.log(prior / mean_probs)).sum()


def symmetric_kl(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """R-Drop: 1/2 [KL(P_a||P_b) + KL(P_b||P_a)], summed over classes, mean over the batch."""
    log_a, log_b = F.log_softmax(logits_a, dim=1), F.log_softmax(logits_b, dim=1)
    kl_ab = (log_a.exp() * (log_a - log_b)).sum(dim=1)
    kl_ba = (log_b.exp() * (log_b - log_a)).sum(dim=1)
    return 0.5 * (kl_ab + kl_ba).mean()


def kl_to_target(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """KL(P_target || P), summed over classes, mean over the batch; no gradient reaches the target
    (UDA's consistency loss: the augmented view follows the clean one, not the other way)."""
    target = F.log_softmax(target_logits.detach(), dim=1)
    return (target.exp() * (target - F.log_softmax(logits, dim=1))).sum(dim=1).mean()


def bernoulli_kl(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """KL(target || sigmoid(logits)) of independent tags, summed over tags, mean over the batch: the
    soft-target BCE less the targets' own entropy, so it is 0 where the network agrees with them."""
    target = target.detach().clamp(1e-7, 1 - 1e-7)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    entropy = -(target * target.log() + (1 - target) * (1 - target).log())
    return (bce - entropy).sum(dim=1).mean()


def tag_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy against each row's tags as one distribution, rows without tags left out (0 when
    none has any): many-label weak supervision as Mahajan et al. 2018 train on hashtags, where a softmax over
    the tags beat one sigmoid per tag. Rows are renormalised, so mixed targets stay distributions."""
    mass = targets.sum(dim=1)
    rows = mass > 0
    if not rows.any():
        return logits.sum() * 0.0
    return soft_cross_entropy(logits[rows], targets[rows] / mass[rows].unsqueeze(1))


def linear_rampup(epoch_progress: float, warmup_epochs: int, lambda_u: float, length: int = 16) -> float:
    """lambda_u * clip((t - warm_up) / 16, 0, 1), t in fractional epochs (DivideMix)."""
    return lambda_u * float(np.clip((epoch_progress - warmup_epochs) / length, 0.0, 1.0))

