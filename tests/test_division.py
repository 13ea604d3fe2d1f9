"""The GMM division on loss vectors with a known answer: per-class fits and clip-relative losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from mer_live.config import AudioConfig
from mer_live.errors import MerLiveError
from mer_live.nn.model import ModelConfig, SegmentNet
from mer_live.train.comm import Solo
from mer_live.train.division import divide_losses, normalise_losses
from mer_live.train.plots import gmm_separation
from mer_live.train.segments import SegmentSet
from mer_live.train.sssl import clip_relative, divide


def _losses(rng: np.random.Generator, clean_mean: float, noisy_mean: float, n: int, noisy_share: float):
    noisy = rng.random(n) < noisy_share
    losses = np.where(noisy, rng.normal(noisy_mean, 0.1, n), rng.normal(clean_mean, 0.1, n))
    return np.abs(losses), noisy


def test_normalise_losses_maps_to_unit_range_and_constant_to_zero():
    np.testing.assert_allclose(normalise_losses(np.array([2.0, 4.0, 3.0])), [0.0, 1.0, 0.5])
    np.testing.assert_array_equal(normalise_losses(np.full(4, 7.0)), np.zeros(4))


def test_per_class_gmm_keeps_the_hard_class_and_finds_its_noise():
    """Class 0 is hard (clean loss 2, noisy 3.5), class 1 easy (0.2 and 1.5): one pooled GMM calls
    nearly all of class 0 noisy; one GMM per class finds the planted noise in both."""
    rng = np.random.default_rng(0)
    hard, hard_noisy = _losses(rng, 2.0, 3.5, 600, 0.2)
    easy, easy_noisy = _losses(rng, 0.2, 1.5, 600, 0.2)
    losses, noisy = np.concatenate([hard, easy]), np.concatenate([hard_noisy, easy_noisy])
    labels = np.repeat([0, 1], 600)

    pooled, pooled_record = divide_losses(losses, None)
    per_class, record = divide_losses(losses, labels)

    assert set(pooled_record) == {"all"} and set(record) == {"class 0", "class 1"}
    assert (pooled[labels == 0] > 0.5).mean() < 0.2
    assert (per_class[labels == 0] > 0.5).mean() > 0.6
    for c in (0, 1):
        rows = labels == c
        assert roc_auc_score(~noisy[rows], per_class[rows]) > 0.95


def test_a_class_with_one_segment_keeps_its_label():
    clean, record = divide_losses(np.array([0.1, 0.2, 3.0, 0.3]), np.array([0, 0, 1, 0]))
    assert clean[2] == 1.0 and "class 1" not in record


def test_clip_relative_subtracts_each_clips_mean():
    losses = np.array([1.0, 3.0, 10.0, 10.0, 16.0])
    clip_of = np.array([0, 0, 1, 1, 1])
    np.testing.assert_allclose(clip_relative(losses, clip_of), [-1.0, 1.0, -2.0, -2.0, 4.0])


def test_clip_relative_division_flags_the_deviating_segment_not_the_hard_clip():
    """Forty clips of ten segments; half the clips are hard (every segment's loss high); one
    segment in each clip deviates. On raw losses the hard clips look noisy; relative to their
    clips the deviating segments do."""
    rng = np.random.default_rng(1)
    clip_of = np.repeat(np.arange(40), 10)
    base = np.where(clip_of < 20, 2.5, 0.3)
    deviating = np.zeros(400, bool)
    deviating[np.arange(40) * 10 + rng.integers(0, 10, 40)] = True
    losses = base + rng.normal(0, 0.1, 400) + 1.5 * deviating

    raw, _ = divide_losses(losses, None)
    relative, _ = divide_losses(clip_relative(losses, clip_of), None)

    assert roc_auc_score(~deviating, raw) < 0.8
    assert roc_auc_score(~deviating, relative) > 0.95
    assert (relative[~deviating] > 0.5).mean() > 0.9


def test_unknown_gmm_input_is_a_clear_error():
    audio = AudioConfig(segment_seconds=1.0)
    model = ModelConfig(arch="compact")
    segments = SegmentSet.from_clips([np.zeros((audio.n_mels, 100), np.float32)], np.array([[0, 1]]), audio)
    net = SegmentNet(audio, model)
    with pytest.raises(MerLiveError, match="unknown GMM input"):
        divide(net.backbone, segments, model.tasks, Solo(torch.device("cpu")), seed=0, gmm_input="nope")


def test_gmm_plot_draws_a_row_per_class(tmp_path):
    import matplotlib.image

    rng = np.random.default_rng(2)
    losses, _ = _losses(rng, 0.5, 2.0, 400, 0.3)
    _, per_class = divide_losses(losses, np.arange(400) % 2)
    _, pooled = divide_losses(losses, None)
    path = tmp_path / "gmm.png"
    gmm_separation({3: {"valence": per_class}, 5: {"valence": per_class}}, "valence", path)
    two_rows = matplotlib.image.imread(path).shape[0]
    gmm_separation({3: {"valence": pooled}}, "valence", path)
    assert two_rows > 1.8 * matplotlib.image.imread(path).shape[0]
