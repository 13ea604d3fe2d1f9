"""The SSSL loss terms against values computed by hand."""

import math

import numpy as np
import torch

from mer_live.train import losses


def t(*rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_sharpen():
    out = losses.sharpen(t([0.6, 0.4]), 0.5)
    assert torch.allclose(out, t([0.36 / 0.52, 0.16 / 0.52]))


def test_refine_labels_then_sharpen():
    out = losses.refine_labels(t([0.0, 1.0]), torch.tensor([0.8], dtype=torch.float64), t([0.5, 0.5]), 0.5)
    # 0.8*[0,1] + 0.2*[.5,.5] = [.1,.9] -> squared [.01,.81] / .82
    assert torch.allclose(out, t([0.01 / 0.82, 0.81 / 0.82]))


def test_soft_cross_entropy_and_mse():
    logits = t([0.0, 0.0])
    assert math.isclose(losses.soft_cross_entropy(logits, t([0.25, 0.75])).item(), math.log(2), rel_tol=1e-9)
    assert math.isclose(losses.mse_probabilities(logits, t([1.0, 0.0])).item(), 0.25, rel_tol=1e-9)


def test_prior_penalty_uniform_prior():
    logits = torch.log(t([0.8, 0.2]))
    expected = 0.5 * math.log(0.5 / 0.8) + 0.5 * math.log(0.5 / 0.2)
    assert math.isclose(losses.prior_penalty(logits).item(), expected, rel_tol=1e-9)
    assert abs(losses.prior_penalty(torch.log(t([0.5, 0.5])))) < 1e-12


def test_symmetric_kl():
    p, q = t([0.5, 0.5]), t([0.9, 0.1])
    kl_pq = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    kl_qp = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    got = losses.symmetric_kl(torch.log(p), torch.log(q)).item()
    assert math.isclose(got, 0.5 * (kl_pq + kl_qp), rel_tol=1e-9)
    assert losses.symmetric_kl(torch.log(p), torch.log(p)).item() == 0


def test_kl_to_target_follows_the_target_and_leaves_it_alone():
    target = t([math.log(0.8), math.log(0.2)])  # softmax [0.8, 0.2]
    logits = t([0.0, 0.0]).requires_grad_()  # softmax [0.5, 0.5]
    target.requires_grad_()
    kl = losses.kl_to_target(logits, target)
    assert math.isclose(kl.item(), 0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.5), rel_tol=1e-9)
    kl.backward()
    assert target.grad is None and logits.grad is not None and logits.grad.abs().sum() > 0
    assert losses.kl_to_target(target.detach(), target.detach()).item() == 0.0


def test_rampup_and_mixup_lambda():
    assert losses.linear_rampup(12, 4, 25.0) == 12.5
    assert losses.linear_rampup(2, 4, 25.0) == 0 and losses.linear_rampup(40, 4, 25.0) == 25
    rng = np.random.default_rng(0)
    lams = [losses.mixup_lambda(4.0, rng) for _ in range(200)]
    assert min(lams) >= 0.5 and max(lams) <= 1.0


def test_tag_cross_entropy_scores_each_row_s_tags_as_one_distribution_and_skips_untagged_rows():
    logits = t([0.0, 0.0, 0.0], [math.log(2), 0.0, 0.0], [5.0, -1.0, 2.0])
    tags = t([1, 1, 0], [0, 0, 2], [0, 0, 0])  # the second row's mass is renormalised; the third has no tags
    first = -(0.5 * math.log(1 / 3) + 0.5 * math.log(1 / 3))
    second = -math.log(1 / 4)  # softmax [2, 1, 1] / 4
    assert math.isclose(losses.tag_cross_entropy(logits, tags).item(), (first + second) / 2, rel_tol=1e-9)
    untagged = losses.tag_cross_entropy(logits.requires_grad_(), torch.zeros_like(tags))
    assert untagged.item() == 0.0
    untagged.backward()
    assert logits.grad.abs().sum() == 0
