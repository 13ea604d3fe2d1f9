"""The SSSL loop on real (generated) audio: learning, the GMM division, splits, checkpoints."""

from __future__ import annotations

import copy
import dataclasses
import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from mer_live.config import AudioConfig, SongConfig
from mer_live.errors import MerLiveError
from mer_live.nn.model import ModelConfig
from mer_live.train.cache import LogMelCache
from mer_live.train.comm import Solo
from mer_live.train.datasets import load_dataset
from mer_live.train.evaluate import song_metrics
from mer_live.train.loop import LoopOptions, train
from mer_live.train.segments import SegmentSet
from mer_live.train.settings import TrainConfig
from mer_live.train.splits import song_folds
from mer_live.train.sssl import Diverged, divide
from mer_live.train.synth import make_synth_corpus
from mer_live.train.trainer import Recipe, clip_labels, fit, predict_songs

AUDIO = AudioConfig(segment_seconds=2.0)
MODEL = ModelConfig(arch="compact")
FAST = TrainConfig(epochs=6, warmup_epochs=3, batch_size=32, lr=2e-3, seed=0)
QUIET = LoopOptions(log=lambda s: None)
ONE_NAIVE_EPOCH = dataclasses.replace(FAST, epochs=1, warmup_epochs=1, gmm=False, mixup=False, rdrop=False,
                                      refine=False)


def first_epoch_loss(segments: SegmentSet, cfg: TrainConfig) -> float:
    """The mean loss of a run's first epoch, trained and validated on ``segments``."""
    return train(segments, segments, AUDIO, MODEL, cfg, QUIET)[1][0]["loss"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """64 generated 8 s clips (16 per quadrant) with their cached log-mels."""
    root = tmp_path_factory.mktemp("synth")
    make_synth_corpus(root, 64, seconds=8.0, sr=AUDIO.sample_rate, seed=3)
    dataset = load_dataset("synth", root)
    torch.set_num_threads(2)
    logmels, failures = LogMelCache(root / "cache", AUDIO).build(dataset.clips)
    assert not failures
    return dataset.clips, logmels


def test_sssl_learns_well_above_chance_on_held_out_songs(synth):
    clips, logmels = synth
    train_idx, test_idx = song_folds(clips, 4, seed=0)[0]
    train_mels = {clips[i].path: logmels[clips[i].path] for i in train_idx}  # held-out songs absent
    fitted = fit(clips, train_mels, train_idx, Recipe(AUDIO, MODEL, FAST, "sssl"), QUIET)
    preds = predict_songs(fitted, [logmels[clips[i].path] for i in test_idx], SongConfig())
    metrics = song_metrics(clip_labels(clips, test_idx), preds["svm"])
    assert metrics["arousal_acc"] >= 0.8
    assert (metrics["valence_acc"] + metrics["arousal_acc"]) / 2 >= 0.65
    assert fitted.history[-1]["phase"] == "sssl" and 0 < fitted.history[-1]["clean_arousal"] <= 1


def test_gmm_gives_planted_noisy_segments_lower_clean_probability(synth):
    clips, logmels = synth
    rng = np.random.default_rng(0)
    labels = clip_labels(clips, list(range(len(clips))))
    flipped = rng.permutation(len(clips))[: len(clips) // 4]
    noisy = labels.copy()
    noisy[flipped, 1] ^= 1  # plant arousal label noise on a quarter of the clips
    segments = SegmentSet.from_clips([logmels[c.path] for c in clips], noisy, AUDIO)
    cfg = dataclasses.replace(FAST, epochs=4, warmup_epochs=4)
    net, _, _ = train(segments, segments, AUDIO, MODEL, cfg, QUIET)
    clean, record = divide(net.backbone, segments, MODEL.tasks, Solo(torch.device("cpu")), seed=0)
    is_noisy = np.isin(segments.clip_of, flipped)
    auc = roc_auc_score(~is_noisy, clean[:, 1])
    assert auc > 0.8, auc
    assert set(record) == {"valence", "arousal"}


def test_held_out_songs_never_reach_training(synth):
    clips, logmels = synth
    for train_idx, test_idx in song_folds(clips, 4, seed=1):
        assert not {clips[i].song_id for i in train_idx} & {clips[i].song_id for i in test_idx}
    train_idx, test_idx = song_folds(clips, 4, seed=1)[0]
    only_train = {clips[i].path: logmels[clips[i].path] for i in train_idx}
    with pytest.raises(KeyError):  # fit touches nothing but the songs it is given
        fit(clips, only_train, train_idx + test_idx[:1],
            Recipe(AUDIO, MODEL, dataclasses.replace(FAST, epochs=1, warmup_epochs=1), "sssl"), QUIET)


def test_checkpoint_resume_and_reproducibility(synth, tmp_path: Path):
    clips, logmels = synth
    segments = SegmentSet.from_clips([logmels[c.path] for c in clips[:16]], clip_labels(clips, list(range(16))),
                                     AUDIO)
    cfg = dataclasses.replace(FAST, epochs=3, warmup_epochs=1, segments_per_epoch=64)
    ckpt = tmp_path / "checkpoint.pt"
    full, history, _ = train(segments, segments, AUDIO, MODEL, cfg, QUIET)
    again, _, _ = train(segments, segments, AUDIO, MODEL, cfg, QUIET)
    for a, b in zip(full.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)  # seeded CPU training is reproducible
    calls = 0

    def killed_in_epoch_3(step: int, steps: int) -> None:  # a kill after epoch 2's checkpoint
        nonlocal calls
        calls += 1
        if calls > 2 * steps:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(segments, segments, AUDIO, MODEL, cfg, LoopOptions(ckpt, log=lambda s: None, progress=killed_in_epoch_3))
    lines: list[str] = []
    resumed, resumed_history, _ = train(segments, segments, AUDIO, MODEL, cfg, LoopOptions(ckpt, True, lines.append))
    assert any("resumed" in line for line in lines)
    assert [r["epoch"] for r in resumed_history] == [1, 2, 3]
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(synth, tmp_path: Path):
    clips, logmels = synth
    segments = SegmentSet.from_clips([logmels[c.path].copy() for c in clips[:8]], clip_labels(clips, list(range(8))),
                                     AUDIO)  # copies: the NaN below must not reach the module's other tests
    ckpt = tmp_path / "checkpoint.pt"
    cfg = dataclasses.replace(FAST, epochs=1, warmup_epochs=1, segments_per_epoch=64)
    train(segments, segments, AUDIO, MODEL, cfg, LoopOptions(ckpt, log=lambda s: None))
    good = ckpt.read_bytes()
    segments.logmels[0][:] = np.nan
    with pytest.raises(Diverged, match="epoch 2, step 1; the last good checkpoint is kept at") as info:
        train(segments, segments, AUDIO, MODEL, dataclasses.replace(cfg, epochs=2), LoopOptions(ckpt, True, QUIET.log))
    assert (info.value.epoch, info.value.step, info.value.checkpoint) == (2, 1, ckpt)
    assert isinstance(info.value, MerLiveError) and ckpt.read_bytes() == good


def test_segment_sets_cut_clips_as_the_audio_config_frames_them(synth):
    clips, logmels = synth
    mels = [logmels[c.path] for c in clips[:3]]
    labels = clip_labels(clips, [0, 1, 2])
    cut = SegmentSet.from_clips(mels, labels, AUDIO)
    assert [int((cut.clip_of == c).sum()) for c in range(3)] == [AUDIO.segments_in_frames(m.shape[1]) for m in mels]
    assert cut.batch(np.arange(2)).shape == (2, AUDIO.n_mels, AUDIO.segment_frames)
    whole = SegmentSet.one_per_clip(mels, labels, frames=100)
    assert len(whole) == 3 and whole.start.tolist() == [0, 0, 0] and whole.clip_of.tolist() == [0, 1, 2]
    rows = SegmentSet.from_rows([np.zeros((5, 4), np.float32), np.zeros((5, 2), np.float32)], labels[:2])
    assert rows.clip_of.tolist() == [0, 0, 0, 0, 1, 1] and rows.batch(np.arange(6)).shape == (6, 5, 1)
    short = SegmentSet.from_clips([np.zeros((AUDIO.n_mels, 3), np.float32)], labels[:1], AUDIO)
    assert len(short) == 1  # a clip shorter than a segment is padded to one


def test_moving_average_is_what_is_kept_and_resumes(synth, tmp_path: Path):
    clips, logmels = synth
    segments = SegmentSet.from_clips([logmels[c.path] for c in clips[:16]], clip_labels(clips, list(range(16))),
                                     AUDIO)
    one = dataclasses.replace(FAST, epochs=1, warmup_epochs=1, segments_per_epoch=64, ema=0.5)
    kept, _, _ = train(segments, segments, AUDIO, MODEL, one, LoopOptions(tmp_path / "one.pt", log=QUIET.log))
    state = torch.load(tmp_path / "one.pt", weights_only=False)
    average = {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
    last = {k.removeprefix("backbone."): v for k, v in state["last"].items() if k.startswith("backbone.")}
    weights = [k for k in average if k.endswith("weight")]
    assert weights and all(torch.equal(kept.backbone.state_dict()[k], average[k]) for k in average)
    assert any(not torch.equal(average[k], last[k]) for k in weights)  # the average, not the last step's weights

    cfg = dataclasses.replace(one, epochs=3)  # SSSL epochs: the average divides and guesses
    full, _, _ = train(segments, segments, AUDIO, MODEL, cfg, QUIET)
    calls = 0

    def killed_in_epoch_3(step: int, steps: int) -> None:
        nonlocal calls
        calls += 1
        if calls > 2 * steps:
            raise KeyboardInterrupt

    ckpt = tmp_path / "three.pt"
    with pytest.raises(KeyboardInterrupt):
        train(segments, segments, AUDIO, MODEL, cfg, LoopOptions(ckpt, log=QUIET.log, progress=killed_in_epoch_3))
    resumed, _, _ = train(segments, segments, AUDIO, MODEL, cfg, LoopOptions(ckpt, True, QUIET.log))
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5)


def test_evaluation_hands_over_its_report_after_every_fold(synth):
    """A study stopped after its first fold still has that fold's report (the CLI writes each one)."""
    from mer_live.train.evaluate import cross_validate

    clips, logmels = synth
    seen: list[dict] = []

    def stopped_after_the_first(report: dict) -> None:
        seen.append(report)
        raise KeyboardInterrupt

    cfg = dataclasses.replace(FAST, epochs=1, warmup_epochs=1, segments_per_epoch=64)
    with pytest.raises(KeyboardInterrupt):
        cross_validate(clips, lambda audio, gain, condition=None: logmels, AUDIO, MODEL, cfg, 2, ("naive",), [2.0],
                       log=QUIET.log, on_fold=stopped_after_the_first)
    (report,) = seen
    assert "first 1 of the 2 folds only" in report["protocol"]
    assert {r["aggregation"] for r in report["results"]} == {"svm", "mean"}
    assert all([f["fold"] for f in r["folds"]] == [1] and len(r["predictions"]) == 1 for r in report["results"])


def test_a_learning_curve_point_fits_on_a_stratified_share_and_tests_on_every_test_song(synth):
    """--train-share 0.5: each fold's network and SVM see half its training songs, a quarter of them per
    quadrant, and are scored on all of its test songs; a share outside (0, 1] is refused."""
    from collections import Counter

    from mer_live.train.evaluate import cross_validate
    from mer_live.train.splits import stratified_share

    clips, logmels = synth
    lines: list[str] = []
    cfg = dataclasses.replace(FAST, epochs=1, warmup_epochs=1, segments_per_epoch=64)
    report = cross_validate(clips, lambda audio, gain, condition=None: logmels, AUDIO, MODEL, cfg, 2, ("naive",),
                            [2.0], log=lines.append, train_share=0.5)
    assert report["train_share"] == 0.5 and "(a stratified 50% of them)" in report["protocol"]
    assert [line for line in lines if "training songs" in line] == [
        "[2 s] naive: fold 1/2 (16 training songs, 32 test songs)",
        "[2 s] naive: fold 2/2 (16 training songs, 32 test songs)"]
    row = next(r for r in report["results"] if r["aggregation"] == "svm")
    for k, (fold_train, fold_test) in enumerate(song_folds(clips, 2, cfg.seed), 1):
        kept = stratified_share(fold_train, clips, 0.5, cfg.seed + k)
        assert set(kept) < set(fold_train)
        assert Counter(clips[i].quadrant for i in kept) == dict.fromkeys(("Q1", "Q2", "Q3", "Q4"), 4)
        assert sorted(row["predictions"][k - 1]["songs"]) == sorted(clips[i].path.name for i in fold_test)
    for share in (0.0, 1.5):
        with pytest.raises(MerLiveError, match="--train-share"):
            cross_validate(clips, lambda audio, gain, condition=None: logmels, AUDIO, MODEL, cfg, 2, ("naive",),
                           [2.0], log=lines.append, train_share=share)


def test_consistency_pairs_each_segment_with_its_recording_and_pulls_them_together(synth):
    """Under ``consistency`` the other recordings are views of the same segments (not extra ones), and
    training on them makes the network say about the same on both."""
    clips, logmels = synth
    mels = [logmels[c.path] for c in clips[:32]]
    rng = np.random.default_rng(0)
    heard = [(m + rng.normal(1.0, 1.0, m.shape)).astype(np.float32) for m in mels]  # a louder, noisier recording
    segments = dataclasses.replace(SegmentSet.from_clips(mels, clip_labels(clips, list(range(32))), AUDIO),
                                   versions=[heard])
    plain = dataclasses.replace(FAST, shift_frames=0, freq_mask=0, time_mask=0)
    idx = np.array([0, 5, len(segments) - 1])
    for row, i in enumerate(idx):
        start = segments.start[i]
        assert np.array_equal(segments.heard(idx, rng, plain)[row],
                              heard[segments.clip_of[i]][:, start : start + segments.frames])
    with pytest.raises(ValueError, match="shape"):
        dataclasses.replace(segments, versions=[heard[:-1]])

    def disagreement(cfg: TrainConfig) -> float:
        net, history, _ = train(segments, segments, AUDIO, MODEL, cfg, QUIET)
        assert all(row["kl"] > 0 for row in history) == (cfg.consistency > 0)
        with torch.no_grad():
            every = np.arange(len(segments))
            p = torch.softmax(net.trainable(torch.from_numpy(segments.batch(every))).float(), 1)
            q = torch.softmax(net.trainable(torch.from_numpy(segments.heard(every, rng, plain))).float(), 1)
        return float((p - q).abs().mean())

    naive = dataclasses.replace(FAST, epochs=2, warmup_epochs=2, gmm=False, mixup=False, rdrop=False, refine=False)
    assert disagreement(dataclasses.replace(naive, consistency=5.0)) < 0.75 * disagreement(naive)  # about half


def test_mixup_in_the_plain_cross_entropy_steps_mixes_segments_and_labels_alike(synth):
    """``ce_mixup``: a naive step sees mixed segments under the same mix of their labels, both views mixed with
    the same partners under consistency; off (the default), a naive run is what it was."""
    from mer_live.nn.model import SegmentNet
    from mer_live.train.sssl import Mix, consistency_step, warmup_step

    torch.manual_seed(0)
    backbone = SegmentNet(AUDIO, MODEL).trainable.eval()
    backbone.head[-1].weight.data *= 100  # confident logits, so which labels are scored shows in the loss
    tasks = MODEL.tasks
    x, heard = torch.randn(6, AUDIO.n_mels, AUDIO.segment_frames), torch.randn(6, AUDIO.n_mels, AUDIO.segment_frames)
    y = torch.tensor([[0, 1], [1, 0], [1, 1], [0, 0], [1, 0], [0, 1]])
    mix = Mix.draw(0.3, len(x), np.random.default_rng(1), torch.device("cpu"))
    assert 0.5 <= mix.lam <= 1.0 and sorted(mix.perm.tolist()) == list(range(6))
    with torch.no_grad():
        mixed = mix.lam * x + (1 - mix.lam) * x[mix.perm]
        logits = backbone(mixed)
        expected = sum(mix.lam * torch.nn.functional.cross_entropy(logits[:, 2 * t : 2 * t + 2], y[:, t])
                       + (1 - mix.lam) * torch.nn.functional.cross_entropy(logits[:, 2 * t : 2 * t + 2], y[mix.perm, t])
                       for t in range(2))
        assert torch.allclose(warmup_step(backbone, x, y, tasks, mix)[0], expected, atol=1e-6)
        assert not torch.allclose(warmup_step(backbone, x, y, tasks)[0], expected, atol=1e-3)
        _, parts = consistency_step(backbone, x, heard, y, tasks, 1.0, mix)
        assert parts["lx"] == pytest.approx(float(expected), abs=1e-5)

    clips, logmels = synth
    segments = SegmentSet.from_clips([logmels[c.path] for c in clips[:16]], clip_labels(clips, list(range(16))), AUDIO)
    naive = ONE_NAIVE_EPOCH
    losses = [first_epoch_loss(segments, cfg) for cfg in (naive, naive, dataclasses.replace(naive, ce_mixup=0.3))]
    assert losses[0] == losses[1] != losses[2]


def test_co_guessing_averages_the_peer_into_the_unlabeled_targets_only():
    """With a ``peer`` (co-divide) the unlabeled rows' targets are guessed by both networks, the labeled rows'
    refined by this network alone; a peer that is this network itself changes nothing."""
    import copy

    from mer_live.nn.model import SegmentNet
    from mer_live.train.sssl import sssl_step

    torch.manual_seed(0)
    backbone = SegmentNet(AUDIO, MODEL).trainable
    other = SegmentNet(AUDIO, MODEL).trainable
    other.head[-1].weight.data *= 50  # a confident peer: its guesses move the targets
    cfg = dataclasses.replace(FAST, mixup=False, rdrop=False)
    x1, x2 = torch.randn(8, AUDIO.n_mels, AUDIO.segment_frames), torch.randn(8, AUDIO.n_mels, AUDIO.segment_frames)
    y = torch.randint(0, 2, (8, 2))

    def parts(clean: float, peer: str | None) -> dict[str, float]:
        torch.manual_seed(1)  # the same dropout masks in every call
        net = copy.deepcopy(backbone)  # a train-mode pass moves batch-norm statistics: every call from the same
        w = torch.full((8, 2), clean)
        peers = {None: None, "same": copy.deepcopy(net), "other": other}
        return sssl_step(net, x1, x2, y, w, MODEL.tasks, cfg, 1.0, np.random.default_rng(0), peer=peers[peer])[1]

    unlabeled = {peer: parts(0.0, peer)["lu"] for peer in (None, "same", "other")}
    assert unlabeled["same"] == pytest.approx(unlabeled[None], abs=1e-7)
    assert abs(unlabeled["other"] - unlabeled[None]) > 1e-3
    labeled = {peer: parts(0.6, peer)["lx"] for peer in (None, "other")}
    assert labeled["other"] == pytest.approx(labeled[None], abs=1e-6)  # co-refinement is this network's own


def test_co_divide_steps_each_network_on_the_division_its_peer_made(synth):
    """Both divisions are made before either network steps, and network k steps on network 1 - k's."""
    from mer_live.nn.model import SegmentNet
    from mer_live.train.loop import co_divisions, learner
    from mer_live.train.sssl import run_epoch

    clips, logmels = synth
    segments = SegmentSet.from_clips([logmels[c.path] for c in clips[:16]], clip_labels(clips, list(range(16))),
                                     AUDIO)
    labels = torch.from_numpy(segments.segment_labels.astype(np.int64))
    cfg = dataclasses.replace(FAST, epochs=2, warmup_epochs=1, co_divide=True)
    torch.manual_seed(0)
    pair = [learner(SegmentNet(AUDIO, MODEL).trainable, segments, labels, MODEL.tasks, cfg, Solo(torch.device("cpu")))
            for _ in range(2)]
    assert co_divisions(pair, 0, cfg) == [None, None]  # in the warm-up each network is on its own
    divisions = co_divisions(pair, 1, cfg)
    own = [divide(one.kept, segments, MODEL.tasks, Solo(torch.device("cpu")), cfg.seed + 1)[0] for one in pair]
    assert all(np.array_equal(d[0], o) for d, o in zip(divisions, own))
    assert not np.array_equal(divisions[0][0], divisions[1][0])
    for k, one in enumerate(pair):
        done = run_epoch(one.run, 1, np.random.default_rng(0), max_steps=1, division=divisions[1 - k])
        assert done.phase == "sssl" and np.array_equal(done.clean, divisions[1 - k][0])


def test_co_divide_resumes_both_networks_where_they_stopped(tmp_path: Path):
    """A co-divide run killed in an SSSL epoch and resumed ends where the whole run ends: the checkpoint holds
    both networks' weights, optimizers and schedules."""
    model = ModelConfig(arch="mn04", finetune="full", bodies=2)
    audio = model.default_audio().replace(segment_seconds=3.0, segment_hop_seconds=3.0)
    make_synth_corpus(tmp_path / "synth", 8, seconds=6.0, sr=audio.sample_rate, seed=3)
    clips = load_dataset("synth", tmp_path / "synth").clips
    logmels, _ = LogMelCache(tmp_path / "cache", audio).build(clips)
    segments = SegmentSet.from_clips([logmels[c.path] for c in clips], clip_labels(clips, list(range(8))), audio)
    cfg = TrainConfig(epochs=2, warmup_epochs=1, batch_size=4, lr=2e-3, lr_warmup_epochs=0.5, rdrop=False,
                      co_divide=True)
    full, history, _ = train(segments, segments, audio, model, cfg, QUIET)
    assert [(row["epoch"], row["body"], row["phase"]) for row in history] == [
        (1, 1, "warmup"), (1, 2, "warmup"), (2, 1, "sssl"), (2, 2, "sssl")]
    calls = 0

    def killed_in_epoch_2(step: int, steps: int) -> None:  # after network 1's first SSSL step
        nonlocal calls
        calls += 1
        if calls > 2 * steps + 1:
            raise KeyboardInterrupt

    ckpt = tmp_path / "pair.pt"
    with pytest.raises(KeyboardInterrupt):
        train(segments, segments, audio, model, cfg, LoopOptions(ckpt, log=QUIET.log, progress=killed_in_epoch_2))
    assert len(torch.load(ckpt, weights_only=False)["peers"]) == 1
    resumed, _, _ = train(segments, segments, audio, model, cfg, LoopOptions(ckpt, True, QUIET.log))
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5)


def test_freq_mixstyle_mixes_band_statistics_and_keeps_each_view_s_own_course(synth):
    """``freq_mixstyle``: a view's per-band mean and spread over time become a Beta mix of its own and a partner's
    in the batch, its z-scored course in every band stays its own; at 0 (the default) a batch is drawn as before
    and a naive run is what it was (a share outside [0, 1]: tests/test_train_cli.py)."""
    from mer_live.train.segments import MIXSTYLE_ALPHA, freq_mixstyle

    clips, logmels = synth
    segments = SegmentSet.from_clips([logmels[c.path] for c in clips[:16]], clip_labels(clips, list(range(16))), AUDIO)
    idx = np.arange(0, len(segments), 3)[:12]
    views = segments.batch(idx)
    mixed = freq_mixstyle(views, np.random.default_rng(4))
    draws = np.random.default_rng(4)
    lam = draws.beta(MIXSTYLE_ALPHA, MIXSTYLE_ALPHA, size=(len(views), 1, 1))
    perm = draws.permutation(len(views))
    mean, std = views.mean(axis=2, keepdims=True), views.std(axis=2, keepdims=True)
    np.testing.assert_allclose(mixed.mean(axis=2, keepdims=True), lam * mean + (1 - lam) * mean[perm], atol=1e-4)
    np.testing.assert_allclose(mixed.std(axis=2, keepdims=True), lam * std + (1 - lam) * std[perm], atol=1e-3)
    z = (views - mean) / std
    np.testing.assert_allclose((mixed - mixed.mean(axis=2, keepdims=True)) / mixed.std(axis=2, keepdims=True), z,
                               atol=2e-3)
    assert np.abs(mixed - views).max() > 1.0  # the colouring moved, by whole log-mel units somewhere
    same = np.repeat(views[:1], 4, axis=0)
    np.testing.assert_allclose(freq_mixstyle(same, np.random.default_rng(0)), same, atol=1e-4)

    still = dataclasses.replace(FAST, shift_frames=0, freq_mask=0, time_mask=0)
    rng = np.random.default_rng(7)
    np.testing.assert_array_equal(segments.batch(idx, rng, still), views)
    assert rng.bit_generator.state == np.random.default_rng(7).bit_generator.state  # off: no draw taken
    assert not np.allclose(segments.batch(idx, rng, dataclasses.replace(still, freq_mixstyle=1.0)), views)

    naive = ONE_NAIVE_EPOCH
    losses = [first_epoch_loss(segments, cfg) for cfg in (naive, naive, dataclasses.replace(naive, freq_mixstyle=0.5))]
    assert losses[0] == losses[1] != losses[2]


def test_spec_augment_masks_one_band_run_and_one_frame_run_up_to_their_widths():
    """``spec_augment``: one run of whole bands and one run of whole frames, each up to ``freq_mask`` /
    ``time_mask`` wide (`--freq-mask`, `--time-mask`), set to the view's floor; widths are drawn across their
    range; a mask wider than the view covers at most all of it."""
    from mer_live.train.segments import spec_augment

    rng = np.random.default_rng(0)
    view = np.arange(128 * 300, dtype=np.float32).reshape(128, 300) + 1.0  # its floor, 1, in one corner cell
    cfg = dataclasses.replace(FAST, freq_mask=48, time_mask=60)
    widths = []
    for _ in range(200):
        mel = view.copy()
        spec_augment(mel, rng, cfg)
        floor = mel == 1.0
        bands, frames = np.flatnonzero(floor.all(axis=1)), np.flatnonzero(floor.all(axis=0))
        masked = np.zeros_like(floor)
        masked[bands] = masked[:, frames] = True
        masked[0, 0] = True
        assert np.array_equal(floor | masked, masked) and np.array_equal(mel[~floor], view[~floor])
        for run, width in ((bands, 48), (frames, 60)):
            assert len(run) <= width and (len(run) == 0 or np.all(np.diff(run) == 1))
        widths.append((len(bands), len(frames)))
    assert max(w for w, _ in widths) >= 40 and max(w for _, w in widths) >= 50
    small = np.arange(8 * 10, dtype=np.float32).reshape(8, 10) + 1.0
    spec_augment(small, rng, dataclasses.replace(FAST, freq_mask=1000, time_mask=1000))
    assert small.min() == 1.0


def test_pitch_shift_moves_a_tone_to_the_bands_the_shifted_tone_fills(synth):
    """``pitch_shift``: on the reference front end's log-mel of real sine tones (the AudioSet networks' Kaldi
    bands and the 64 Slaney bands of this file's front end), a tone shifted by s semitones peaks in (or next to)
    the band where the tone 2^(s/12) times higher does, and lies much nearer that tone's log-mel than the
    unshifted one does; 0 semitones is the input. In ``batch`` every view draws its own shift within
    +-``pitch_shift``; at 0 (the default) no draw is taken and a naive run is what it was."""
    from mer_live.config import AUDIOSET_AUDIO
    from mer_live.nn.mel import log_mel_reference, mel_band_hz
    from mer_live.train.segments import pitch_shift

    def tone(hz: float, config: AudioConfig) -> np.ndarray:
        t = np.arange(config.sample_rate) / config.sample_rate
        return log_mel_reference(0.3 * np.sin(2 * np.pi * hz * t), config).astype(np.float32)

    # Kaldi's mel scale (128 bands: the peak lands in the target's band) and Slaney's (64: within one band)
    for config, off_by in ((AUDIOSET_AUDIO, 0), (AUDIO, 1)):
        band_hz = mel_band_hz(config)
        assert np.all(np.diff(band_hz) > 0) and config.fmin < band_hz[0] and band_hz[-1] < config.fmax
        for hz, semitones in ((440.0, 12.0), (440.0, -12.0), (1000.0, 3.0), (3000.0, -5.0)):
            heard, target = tone(hz, config), tone(hz * 2 ** (semitones / 12), config)
            shifted = pitch_shift(heard, semitones, band_hz)
            peak = target.mean(axis=1).argmax()
            assert abs(shifted.mean(axis=1).argmax() - peak) <= off_by < abs(heard.mean(axis=1).argmax() - peak)
            assert np.abs(shifted - target).mean() < 0.7 * np.abs(heard - target).mean()
        np.testing.assert_allclose(pitch_shift(heard, 0.0, band_hz), heard, atol=1e-5)

    clips, logmels = synth
    segments = SegmentSet.from_clips([logmels[c.path] for c in clips[:16]], clip_labels(clips, list(range(16))), AUDIO)
    idx = np.arange(0, len(segments), 3)[:12]
    still = dataclasses.replace(FAST, shift_frames=0, freq_mask=0, time_mask=0)
    rng = np.random.default_rng(7)
    np.testing.assert_array_equal(segments.batch(idx, rng, still), segments.batch(idx))
    assert rng.bit_generator.state == np.random.default_rng(7).bit_generator.state  # off: no draw taken
    draws = np.random.default_rng(7).uniform(-2, 2, size=len(idx))
    shifted = segments.batch(idx, np.random.default_rng(7), dataclasses.replace(still, pitch_shift=2.0))
    for row, semitones in enumerate(draws):
        np.testing.assert_allclose(shifted[row], pitch_shift(segments.batch(idx[row : row + 1])[0], semitones,
                                                             segments.band_hz), atol=1e-6)

    naive = ONE_NAIVE_EPOCH
    losses = [first_epoch_loss(segments, cfg) for cfg in (naive, dataclasses.replace(naive, pitch_shift=2.0),
                                                          dataclasses.replace(naive, pitch_shift=2.0))]
    assert losses[0] != losses[1] == losses[2]


def test_label_smoothing_scores_inherited_labels_against_softened_targets(synth):
    """``label_smoothing`` E: a plain step's cross-entropy is against (1 - E/2, E/2) for each head's inherited label,
    mixed labels too; off (the default), a naive run is what it was (E outside [0, 1): tests/test_train_cli.py)."""
    from mer_live.nn.model import SegmentNet
    from mer_live.train.sssl import Mix, consistency_step, warmup_step

    torch.manual_seed(0)
    backbone = SegmentNet(AUDIO, MODEL).trainable.eval()
    backbone.head[-1].weight.data *= 100
    x, heard = torch.randn(6, AUDIO.n_mels, AUDIO.segment_frames), torch.randn(6, AUDIO.n_mels, AUDIO.segment_frames)
    with torch.no_grad():  # labels the network is sure of: smoothing then costs e/2 of every logit margin
        y = torch.stack([backbone(x)[:, 2 * t : 2 * t + 2].argmax(dim=1) for t in range(2)], dim=1)

    def smoothed(logits: torch.Tensor, labels: torch.Tensor, e: float) -> torch.Tensor:
        target = torch.nn.functional.one_hot(labels, 2).float() * (1 - e) + e / 2
        return -(target * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()

    with torch.no_grad():
        logits = backbone(x)
        expected = sum(smoothed(logits[:, 2 * t : 2 * t + 2], y[:, t], 0.2) for t in range(2))
        assert torch.allclose(warmup_step(backbone, x, y, MODEL.tasks, smoothing=0.2)[0], expected, atol=1e-5)
        assert not torch.allclose(warmup_step(backbone, x, y, MODEL.tasks)[0], expected, atol=1e-3)
        _, parts = consistency_step(backbone, x, heard, y, MODEL.tasks, 1.0, smoothing=0.2)
        assert parts["lx"] == pytest.approx(float(expected), abs=1e-4)
        mix = Mix.draw(0.3, len(x), np.random.default_rng(1), torch.device("cpu"))
        mixed = backbone(mix.inputs(x))
        expected_mix = sum(mix.lam * smoothed(mixed[:, 2 * t : 2 * t + 2], y[:, t], 0.2)
                           + (1 - mix.lam) * smoothed(mixed[:, 2 * t : 2 * t + 2], y[mix.perm, t], 0.2)
                           for t in range(2))
        assert torch.allclose(warmup_step(backbone, x, y, MODEL.tasks, mix, smoothing=0.2)[0], expected_mix, atol=1e-5)

    clips, logmels = synth
    segments = SegmentSet.from_clips([logmels[c.path] for c in clips[:16]], clip_labels(clips, list(range(16))), AUDIO)
    naive = ONE_NAIVE_EPOCH
    losses = [first_epoch_loss(segments, cfg) for cfg in (naive, dataclasses.replace(naive, label_smoothing=0.1))]
    assert losses[0] != losses[1]


def test_quiet_valence_weighs_the_valence_loss_of_low_arousal_segments(synth):
    """``quiet_valence`` W: a plain step's valence cross-entropy counts W times on rows whose inherited arousal is
    low, arousal's and the other rows' once, mixed labels carrying their own row's weight; a run with it differs
    from one without (W <= 0: tests/test_train_cli.py)."""
    from mer_live.nn.model import SegmentNet
    from mer_live.train.sssl import Mix, consistency_step, warmup_step

    torch.manual_seed(0)
    backbone = SegmentNet(AUDIO, MODEL).trainable.eval()
    x, heard = torch.randn(8, AUDIO.n_mels, AUDIO.segment_frames), torch.randn(8, AUDIO.n_mels, AUDIO.segment_frames)
    y = torch.tensor([[0, 0], [1, 0], [0, 1], [1, 1]] * 2)
    ce = torch.nn.functional.cross_entropy

    def expected(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        weight = torch.where(labels[:, 1] == 0, 3.0, 1.0)
        return ((weight * ce(logits[:, :2], labels[:, 0], reduction="none")).mean()
                + ce(logits[:, 2:], labels[:, 1]))

    with torch.no_grad():
        logits = backbone(x)
        assert torch.allclose(warmup_step(backbone, x, y, MODEL.tasks, quiet=3.0)[0], expected(logits, y), atol=1e-5)
        assert not torch.allclose(warmup_step(backbone, x, y, MODEL.tasks)[0], expected(logits, y), atol=1e-3)
        _, parts = consistency_step(backbone, x, heard, y, MODEL.tasks, 1.0, quiet=3.0)
        assert parts["lx"] == pytest.approx(float(expected(logits, y)), abs=1e-4)
        mix = Mix.draw(0.3, len(x), np.random.default_rng(1), torch.device("cpu"))
        mixed = backbone(mix.inputs(x))
        expected_mix = mix.lam * expected(mixed, y) + (1 - mix.lam) * expected(mixed, y[mix.perm])
        assert torch.allclose(warmup_step(backbone, x, y, MODEL.tasks, mix, quiet=3.0)[0], expected_mix, atol=1e-5)

    clips, logmels = synth
    segments = SegmentSet.from_clips([logmels[c.path] for c in clips[:16]], clip_labels(clips, list(range(16))), AUDIO)
    naive = ONE_NAIVE_EPOCH
    losses = [first_epoch_loss(segments, cfg) for cfg in (naive, dataclasses.replace(naive, quiet_valence=2.0))]
    assert losses[0] != losses[1]


def test_an_interpolated_body_lies_between_the_pretrained_and_fine_tuned_weights():
    """WiSE-FT's body (``SegmentNet.toward_pretrained``): every weight and batch-norm statistic a share of the way
    from the pretrained network's to the fine-tuned one's; share 0 hears as the pretrained network; the heads and
    the network it came from stay as they were; one AudioSet network only."""
    from mer_live.nn import mobilenet
    from mer_live.nn.model import SegmentNet

    torch.manual_seed(0)
    model = ModelConfig(arch="mn04", finetune="full")
    audio = model.default_audio().replace(segment_seconds=1.0)
    net = SegmentNet(audio, model).eval()
    with torch.no_grad():  # as if fine-tuned: every weight moved, batch-norm statistics too (variances kept > 0)
        for name, value in net.backbone.body.state_dict().items():
            if name.endswith("running_var"):
                value.mul_(1.5)
            elif value.is_floating_point():
                value.add_(0.01 * torch.randn_like(value))
    tuned = copy.deepcopy(net.state_dict())
    start = mobilenet.load_weights()
    half, zero = net.toward_pretrained(0.5), net.toward_pretrained(0.0)
    body = net.backbone.body.state_dict()
    for name, value in half.backbone.body.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, (start[name] + body[name]) / 2, atol=1e-6), name
    assert all(torch.equal(a, b) for a, b in zip(half.backbone.head.state_dict().values(),
                                                 net.backbone.head.state_dict().values()))
    assert all(torch.equal(a, tuned[name]) for name, a in net.state_dict().items())  # the fine-tuned one is kept
    x = torch.randn(2, audio.n_mels, audio.segment_frames)
    with torch.no_grad():
        pretrained = mobilenet.pretrained().pooled(mobilenet.normalize(x))
        assert torch.allclose(zero.backbone.embed(x), pretrained, atol=1e-5)
        assert not torch.allclose(net.backbone.embed(x), pretrained, atol=1e-3)
    for other in (SegmentNet(AUDIO, MODEL), SegmentNet(audio, dataclasses.replace(model, bodies=2))):
        with pytest.raises(ValueError, match="one AudioSet network"):
            other.toward_pretrained(0.5)


def test_evaluation_scores_each_fold_s_network_with_its_body_interpolated_too(tmp_path: Path):
    """``interpolate``: every fold's network is also scored as a network whose body is part of the way back to the
    pretrained one, with its own song SVM, on the same test songs: a method of its own in the report, paired."""
    from mer_live.train.evaluate import cross_validate

    model = ModelConfig(arch="mn04", finetune="full")
    audio = model.default_audio().replace(segment_seconds=3.0, segment_hop_seconds=3.0)
    make_synth_corpus(tmp_path / "synth", 16, seconds=6.0, sr=audio.sample_rate, seed=3)
    clips = load_dataset("synth", tmp_path / "synth").clips
    logmels, _ = LogMelCache(tmp_path / "cache", audio).build(clips)
    cfg = TrainConfig(epochs=1, warmup_epochs=1, batch_size=8, lr=2e-3, seed=0)
    lines: list[str] = []
    report = cross_validate(clips, lambda audio, gain, condition=None: logmels, audio, model, cfg, 2, ("naive",),
                            [3.0], SongConfig(embedding=True), log=lines.append, max_folds=1, interpolate=(0.0, 0.5))
    rows = {(r["method"], r["aggregation"]): r for r in report["results"]}
    assert set(rows) == {(m, a) for m in ("naive", "naive, body 0", "naive, body 0.5") for a in ("svm", "mean")}
    songs = rows["naive", "svm"]["predictions"][0]["songs"]
    assert all(r["predictions"][0]["songs"] == songs and [f["fold"] for f in r["folds"]] == [1] for r in rows.values())
    probs = {m: np.array(rows[m, "mean"]["predictions"][0]["probs"])
             for m in ("naive", "naive, body 0", "naive, body 0.5")}
    assert not np.allclose(probs["naive"], probs["naive, body 0.5"]) and not np.allclose(probs["naive, body 0"],
                                                                                          probs["naive, body 0.5"])
    assert any(line.startswith("    fold 1 naive, body 0.5 svm:") for line in lines)


def test_mood_tags_add_the_mood_head_s_cross_entropy_on_the_clean_rows_to_every_step():
    """``--mood-tags`` W: a plain step's loss is the task heads' cross-entropy plus W times the mood head's softmax
    cross-entropy against each row's tags; under consistency only the clean rows are scored, under mixup the
    tags are mixed as the inputs; SSSL's step scores them too; without tags a step is what it was. (The 4Q
    tags reach the steps end to end: tests/test_train_cli.py.)"""
    from mer_live.nn.model import SegmentNet
    from mer_live.train.losses import tag_cross_entropy
    from mer_live.train.sssl import Mix, Moods, consistency_step, sssl_step, warmup_step

    torch.manual_seed(0)
    model = ModelConfig(arch="mn04", finetune="full", moods=("calm", "sad", "tense"))
    audio = model.default_audio().replace(segment_seconds=1.0)
    backbone = SegmentNet(audio, model).trainable.eval()
    x, heard = torch.randn(4, audio.n_mels, audio.segment_frames), torch.randn(4, audio.n_mels, audio.segment_frames)
    y = torch.tensor([[0, 1], [1, 1], [1, 0], [0, 0]])
    moods = Moods(torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), 0.5)
    with torch.no_grad():
        logits, mood_logits = backbone(x, moods=True)
        ce = sum(torch.nn.functional.cross_entropy(logits[:, 2 * t : 2 * t + 2], y[:, t]) for t in range(2))
        term = tag_cross_entropy(mood_logits, moods.targets)
        loss, parts = warmup_step(backbone, x, y, MODEL.tasks, moods=moods)
        assert torch.allclose(loss, ce + 0.5 * term, atol=1e-5) and parts["moods"] == pytest.approx(float(term))
        plain, plain_parts = warmup_step(backbone, x, y, MODEL.tasks)
        assert torch.allclose(plain, ce, atol=1e-5) and "moods" not in plain_parts
        _, parts = consistency_step(backbone, x, heard, y, MODEL.tasks, 1.0, moods=moods)
        assert parts["moods"] == pytest.approx(float(term), abs=1e-5)  # the air view's rows are not scored
        mix = Mix.draw(0.3, len(x), np.random.default_rng(1), torch.device("cpu"))
        mixed = tag_cross_entropy(backbone(mix.inputs(x), moods=True)[1], mix.inputs(moods.targets))
        assert warmup_step(backbone, x, y, MODEL.tasks, mix, moods=moods)[1]["moods"] == pytest.approx(float(mixed))
    cfg = dataclasses.replace(FAST, mood_tags=0.5)
    clean = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    _, parts = sssl_step(backbone, x, heard, y, clean, MODEL.tasks, cfg, 1.0, np.random.default_rng(0), moods=moods)
    assert parts["moods"] > 0 and np.isfinite(parts["moods"])


def test_sharpness_aware_steps_with_the_gradient_at_the_worst_point_nearby(synth):
    """``--sam`` RHO: the gradient the optimizer steps with is the batch's gradient at the weights moved RHO along
    their own normalised gradient, the weights are back where they were, and batch norm's running statistics
    count the batch once; two whole runs without it train to the same weights, one with it to others."""
    from mer_live.nn.model import SegmentNet
    from mer_live.train.sssl import sharpness_aware, step_loss, warmup_step

    torch.manual_seed(0)
    net = SegmentNet(AUDIO, MODEL).trainable.train()
    x, y = torch.randn(8, AUDIO.n_mels, AUDIO.segment_frames), torch.randint(0, 2, (8, 2))
    cpu, scaler = torch.device("cpu"), torch.amp.GradScaler("cuda", enabled=False)
    batch_loss = functools.partial(step_loss, functools.partial(warmup_step, net, x, y, MODEL.tasks), cpu)
    assert any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())

    def grads_at(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        probe = copy.deepcopy(net)
        probe.load_state_dict(weights)
        probe.zero_grad()
        torch.manual_seed(5)  # the second pass's dropout masks
        warmup_step(probe, x, y, MODEL.tasks)[0].backward()
        return {k: p.grad.clone() for k, p in probe.named_parameters()}

    before = copy.deepcopy(net.state_dict())
    net.zero_grad()
    batch_loss()[0].backward()
    once = copy.deepcopy(net.state_dict())  # the first pass moved the running statistics, as any step does
    g = {k: p.grad.clone() for k, p in net.named_parameters()}
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(v) for v in g.values()]))
    moved = {k: v + 0.05 * g[k] / norm if k in g else v.clone() for k, v in before.items()}
    torch.manual_seed(5)
    sharpness_aware(net, batch_loss, 0.05, scaler)

    expected = grads_at(moved)
    for k, p in net.named_parameters():
        torch.testing.assert_close(p.grad, expected[k], rtol=1e-4, atol=1e-6)
        assert torch.equal(p.detach(), once[k])  # moved back, bit for bit
    for k, v in net.state_dict().items():
        assert torch.equal(v, once[k]), k  # running statistics untouched by the second pass
    assert not all(torch.allclose(net.get_parameter(k).grad, g[k]) for k in g)

    clips, logmels = synth
    segments = SegmentSet.from_clips([logmels[c.path] for c in clips[:16]], clip_labels(clips, list(range(16))), AUDIO)
    naive = ONE_NAIVE_EPOCH
    cfgs = (naive, naive, dataclasses.replace(naive, sam=0.05))
    runs = [train(segments, segments, AUDIO, MODEL, cfg, QUIET)[0] for cfg in cfgs]
    weights = [run.trainable.state_dict() for run in runs]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


def test_song_runs_group_each_songs_segments_and_keep_every_one():
    """``--song-loss``: the epoch's segments come in runs of SONG_RUN of one song (its last run shorter), a song's
    segments taken in the order the epoch drew them, every segment once; the runs' order is the generator's."""
    from mer_live.train.sssl import SONG_RUN, song_runs

    clip_of = np.repeat(np.arange(7), [10, 10, 3, 1, 9, 10, 4])
    order = np.random.default_rng(1).permutation(len(clip_of))
    runs = song_runs(order, clip_of, SONG_RUN, np.random.default_rng(2))
    assert sorted(runs) == sorted(order)
    at = {segment: k for k, segment in enumerate(runs)}
    for clip in range(7):
        drawn = [i for i in order if clip_of[i] == clip]
        for run in (drawn[k : k + SONG_RUN] for k in range(0, len(drawn), SONG_RUN)):
            assert [at[i] for i in run] == list(range(at[run[0]], at[run[0]] + len(run)))
    changes = 1 + np.count_nonzero(np.diff(clip_of[runs]))
    assert changes <= sum(-(-n // SONG_RUN) for n in np.bincount(clip_of))  # 3 runs of a 10-segment song, ...
    assert not np.array_equal(runs, song_runs(order, clip_of, SONG_RUN, np.random.default_rng(3)))


def test_song_loss_scores_each_songs_mean_logits_and_trains_otherwise(synth):
    """The song term is each song's mean segment logits' cross-entropy on its label; at share 0 the plain loss is
    the segments', at 1 the songs' alone; one naive epoch with it trains to other weights."""
    from mer_live.train.sssl import Songs, inherited_ce, plain_ce

    logits = {"valence": torch.randn(6, 2), "arousal": torch.randn(6, 2)}
    clip = torch.tensor([3, 3, 7, 3, 7, 9])
    y = torch.tensor([[1, 0], [1, 0], [0, 1], [1, 0], [0, 1], [1, 1]])
    rows = {3: [0, 1, 3], 7: [2, 4], 9: [5]}
    expected = sum(torch.nn.functional.cross_entropy(
        torch.stack([v[r].mean(0) for r in rows.values()]), torch.tensor([y[r[0], t] for r in rows.values()]))
        for t, v in enumerate(logits.values()))
    torch.testing.assert_close(Songs(clip, 1.0).cross_entropy(logits, y), expected)
    torch.testing.assert_close(plain_ce(logits, y, None, 0.0, Songs(clip, 1.0))[0], expected)
    torch.testing.assert_close(plain_ce(logits, y, None, 0.0, Songs(clip, 0.0))[0], inherited_ce(logits, y, None))
    assert plain_ce(logits, y, None, 0.0, None) == (inherited_ce(logits, y, None), {})

    clips, logmels = synth
    segments = SegmentSet.from_clips([logmels[c.path] for c in clips[:16]], clip_labels(clips, list(range(16))), AUDIO)
    plain, history = train(segments, segments, AUDIO, MODEL, ONE_NAIVE_EPOCH, QUIET)[:2]
    by_song, song_history = train(segments, segments, AUDIO, MODEL, dataclasses.replace(ONE_NAIVE_EPOCH, song_loss=0.5),
                                  QUIET)[:2]
    assert history[0]["song"] == 0 and song_history[0]["song"] > 0 and np.isfinite(song_history[0]["loss"])
    weights = plain.trainable.state_dict(), by_song.trainable.state_dict()
    assert not all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
