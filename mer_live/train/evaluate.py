"""Cross-validated evaluation: SSSL vs the naive segment and clip-level baselines, per segment length.

Every stage (segment model, GMM, SVM) is refit per fold on that fold's training songs only;
the test songs are seen once, for prediction.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score

from mer_live.config import DEFAULT_SONG, TASKS, AudioConfig, SongConfig
from mer_live.errors import MerLiveError
from mer_live.nn.model import ModelConfig, SegmentNet
from mer_live.stats import quadrant
from mer_live.train.conditions import air_condition
from mer_live.train.datasets import Clip
from mer_live.train.loop import LoopOptions
from mer_live.train.rundir import save_checkpoint
from mer_live.train.settings import TrainConfig
from mer_live.train.splits import song_folds, stratified_share
from mer_live.train.trainer import (
    Fitted,
    Recipe,
    clip_labels,
    fit,
    fit_aggregator,
    predict_songs,
    song_outputs,
    with_aggregator,
)

QUADRANT_ORDER = ("Q1", "Q2", "Q3", "Q4")
METRICS = ("valence_acc", "valence_f1", "arousal_acc", "arousal_f1", "quadrant_acc", "quadrant_f1",
           "valence_acc_low_arousal", "valence_acc_high_arousal")


def song_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 per task and for the quadrant implied by both labels, and valence accuracy among
    the songs annotated low and high in arousal apart (NaN where a side has none): most valence errors are
    sad songs heard as calm and calm ones as sad, which the overall figure hides."""
    pred = (probs > 0.5).astype(int)
    out = {}
    for t, task in enumerate(TASKS):
        out[f"{task}_acc"] = float(accuracy_score(labels[:, t], pred[:, t]))
        out[f"{task}_f1"] = float(f1_score(labels[:, t], pred[:, t], average="macro", labels=[0, 1],
                                           zero_division=0))
    true_q = [quadrant(bool(v), bool(a)) for v, a in labels]
    pred_q = [quadrant(bool(v), bool(a)) for v, a in pred]
    out["quadrant_acc"] = float(accuracy_score(true_q, pred_q))
    out["quadrant_f1"] = float(f1_score(true_q, pred_q, average="macro", labels=list(QUADRANT_ORDER),
                                        zero_division=0))
    valence, arousal = TASKS.index("valence"), TASKS.index("arousal")
    right = pred[:, valence] == labels[:, valence]
    for level, side in enumerate(("low", "high")):
        songs = labels[:, arousal] == level
        out[f"valence_acc_{side}_arousal"] = float(right[songs].mean()) if songs.any() else float("nan")
    return out


def summarise(per_fold: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and std over folds of every metric all the folds have (a row's ``fold`` number and ``predictions`` are
    not metrics; a report written before a metric existed lacks it)."""
    return {m: {"mean": float(np.mean([f[m] for f in per_fold])), "std": float(np.std([f[m] for f in per_fold]))}
            for m in per_fold[0] if m not in ("fold", "predictions") and all(m in f for f in per_fold)}


def fold_row(fold: int, songs: list[str], labels: np.ndarray, probs: np.ndarray, **extra: float) -> dict:
    """One fold's metrics with the test songs' probabilities, which merging and fusing reports need."""
    return {"fold": fold, **song_metrics(labels, probs), **extra,
            "predictions": {"songs": songs, "labels": labels.tolist(), "probs": np.round(probs, 5).tolist()}}


def folds_note(numbers: list[int], n_folds: int) -> str:
    """The protocol's note on a report of some of the folds: merged reports of disjoint folds lose it."""
    if len(numbers) == n_folds:
        return ""
    if numbers == list(range(1, len(numbers) + 1)):
        return f", first {len(numbers)} of the {n_folds} folds only"
    return f", folds {', '.join(map(str, numbers))} of the {n_folds} only"


def quadrant_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of songs whose quadrant (both labels at 0.5) is the same under two predictions."""
    return float(((a > 0.5) == (b > 0.5)).all(axis=1).mean())


Inputs = Callable[[AudioConfig, float], dict[Path, np.ndarray]]


def cross_validate(
    clips: list[Clip],
    inputs: Inputs,
    audio: AudioConfig,
    model_config: ModelConfig,
    cfg: TrainConfig,
    n_folds: int,
    methods: tuple[str, ...],
    segment_seconds: list[float],
    song: SongConfig = DEFAULT_SONG,
    log: Callable[[str], None] = print,
    max_folds: int = 0,
    run_folds: tuple[int, ...] = (),
    gains: tuple[float, ...] = (),
    strides: tuple[int, ...] = (),
    conditions: tuple[str, ...] = (),
    test_hops: tuple[float, ...] = (),
    svm_copies: tuple[int, ...] = (),
    train_share: float = 1.0,
    interpolate: tuple[float, ...] = (),
    on_fold: Callable[[dict], None] | None = None,
    outputs_dir: Path | None = None,
) -> dict:
    """Run every (segment length, method) on every fold (or the first ``max_folds``, or the fold numbers
    ``run_folds``, counted from 1); returns the report. Every fold row keeps its fold number and the test songs'
    probabilities (``predictions``), so reports of disjoint folds merge and two models' reports can be fused.

    ``inputs(audio, gain_db)`` gives each clip's model input (log-mel or cached body features) at a
    segment setting and input gain. With ``gains`` every fit also predicts its test songs as if
    recorded that many dB quieter or louder: rows "svm @ -10 dB" etc., plus the share of songs
    whose quadrant stays what it was at 0 dB. With ``strides`` (pretrained models) the test songs are
    also predicted from every k-th segment only: how many segments a song really needs (batch labeling
    at a larger hop costs that much less). With ``conditions`` (``inputs(audio, 0, condition)``) the test
    songs are also heard through a room, noise or a telephone band: rows "svm @ room" etc., with the share
    of songs whose quadrant stays what it was on the clean input. With ``test_hops`` (log-mel models) the
    test songs are also cut into segments at these hops in seconds: rows "svm @ hop 1 s" etc., how a model
    trained on one hop labels songs at a denser or sparser one; with ``conditions`` too, also through the air
    at each of those hops (rows "svm @ room, hop 1 s", agreement against "svm @ hop 1 s"). ``cfg.air_copies``
    adds that many random recordings of every training song (``inputs(audio, 0, "air-K")``) to the training
    set; with ``svm_copies`` every fold's network also gets song SVMs fit on the clean songs and only that many
    of those recordings (rows "svm (K copies)", with every test variant): the same network, paired. With
    ``train_share`` below 1 every fold fits on that stratified share of its training songs only (drawn in an
    order seeded by the fold) and tests on all of its test songs: one point of a learning curve. With
    ``interpolate`` (one AudioSet network fine-tuned end to end) every fold's network is also scored with its body's
    weights each share A of the way from the pretrained network to the fine-tuned one (WiSE-FT), the heads as
    trained and its song SVMs refit on the same songs: rows of method "<method>, body A", paired. ``on_fold``
    gets the report so far after every fold (a study stopped halfway keeps the folds it finished). With
    ``outputs_dir`` every fold also writes what its network gives every segment of its songs, and the network
    itself (``save_outputs``), so song aggregators and test-time views can be studied on the same networks without
    training them again.
    """
    if strides and (not model_config.pretrained or model_config.caches_front_maps):
        raise MerLiveError("--strides needs a pretrained model with a frozen body (its inputs are one row per segment)")
    if test_hops and model_config.pretrained:
        raise MerLiveError("--test-hops needs a log-mel model (a pretrained one's cached rows are at one hop)")
    if not 0 < train_share <= 1:
        raise MerLiveError(f"--train-share F needs 0 < F <= 1 (a share of each fold's training songs): {train_share:g}")
    numbered = [(k, (stratified_share(train, clips, train_share, cfg.seed + k), test))
                for k, (train, test) in enumerate(song_folds(clips, n_folds, cfg.seed), 1)]
    if run_folds:
        unknown = sorted(set(run_folds) - {k for k, _ in numbered})
        if unknown:
            raise MerLiveError(f"--run-folds {unknown}: there are folds 1-{n_folds} only")
        numbered = [(k, fold) for k, fold in numbered if k in run_folds]
    elif max_folds:
        numbered = numbered[:max_folds]

    def report(rows: list[dict], folds_done: list[int]) -> dict:
        return {
            "protocol": f"stratified {n_folds}-fold cross-validation by song (seed {cfg.seed})"
                        + folds_note(sorted(set(folds_done)), n_folds)
                        + "; segment model, GMM and SVM refit on each fold's training songs"
                        + (f" (a stratified {train_share:.0%} of them)" if train_share < 1 else ""),
            "n_songs": len(clips), "folds": n_folds, "train_share": train_share,
            "audio": audio.to_dict(), "model": model_config.to_dict(), "train": cfg.to_dict(), "song": song.to_dict(),
            "machine": {"platform": platform.platform(), "processor": platform.processor(),
                        "python": platform.python_version()},
            "results": rows,
        }

    results: list[dict] = []
    done: list[int] = []
    for seconds in segment_seconds:
        seg_audio = audio.replace(segment_seconds=seconds)
        clip_inputs = inputs(seg_audio, 0.0)
        # the training songs' other versions, (name, inputs): at other gains, then through the air
        augmented = [(f"{g:+g} dB", inputs(seg_audio, g)) for g in cfg.gain_augment_db]
        augmented += [(name, inputs(seg_audio, 0.0, name))
                      for name in (air_condition(k, cfg.air_phone) for k in range(cfg.air_copies))]
        gained = {g: inputs(seg_audio, g) for g in gains}
        heard = {c: inputs(seg_audio, 0.0, c) for c in conditions}
        for method in methods:
            if method == "clip" and seconds != segment_seconds[0]:
                continue  # the clip-level baseline does not depend on the segment length
            # per network (the fold's own, then its body interpolated towards the pretrained one), its fold rows
            per_fold: dict[str, dict[str, list[dict]]] = {name: {} for name in
                                                          [method] + [f"{method}, body {a:g}" for a in interpolate]}
            started = time.perf_counter()
            for k, (train_idx, test_idx) in numbered:
                log(f"[{seconds:g} s] {method}: fold {k}/{n_folds} "
                    f"({len(train_idx)} training songs, {len(test_idx)} test songs)")
                # only the training songs' log-mels go in: held-out songs cannot reach the model, GMM or SVM
                train_mels = {clips[i].path: clip_inputs[clips[i].path] for i in train_idx}
                train_aug = [{clips[i].path: version[clips[i].path] for i in train_idx} for _, version in augmented]
                fitted = fit(clips, train_mels, train_idx, Recipe(seg_audio, model_config, cfg, method, song),
                             LoopOptions(log=lambda line: log("    " + line)), train_aug, score_members=True)
                test_mels = [clip_inputs[clips[i].path] for i in test_idx]
                truth = clip_labels(clips, test_idx)
                songs = [clips[i].path.name for i in test_idx]
                labels = clip_labels(clips, train_idx)
                # the same test songs from fewer segments, at another input gain or through the air, built once
                # for every network below
                variants = [(f" @ every {k} segments", [clip_inputs[clips[i].path][:, ::k] for i in test_idx])
                            for k in strides]
                variants += [(f" @ {gain:+g} dB", [per_clip[clips[i].path] for i in test_idx])
                             for gain, per_clip in gained.items()]
                variants += [(f" @ {condition}", [per_clip[clips[i].path] for i in test_idx])
                             for condition, per_clip in heard.items()]
                # WiSE-FT: the same network with its body part of the way back to the pretrained weights, the heads
                # as trained, its song SVM refit on the same training songs and recordings
                networks = [(method, fitted)] + [(f"{method}, body {share:g}", with_aggregator(
                    Fitted(fitted.net.toward_pretrained(share), None, method, seg_audio, [], {}, fitted.val_indices),
                    clips, train_mels, train_aug, train_idx, song, cfg)) for share in interpolate]
                for name, network in networks:  # every row of each network on the fold's test songs
                    rows = per_fold[name]
                    # the same network with song SVMs fit on fewer of the other recordings: rows "svm (K copies)"
                    svms = {f" ({copies} copies)": fit_aggregator(network, labels, song, cfg.seed, copies)
                            for copies in svm_copies}
                    if song.view:  # the song SVM without the second view: rows "svm (no view)", paired in the run
                        svms[" (no view)"] = fit_aggregator(network, labels, song, cfg.seed, cfg.svm_copies, view=0)
                    preds = predict_songs(network, test_mels, song, svms)
                    # (row suffix, model, test inputs, other SVMs, the row whose quadrants its agreement is against)
                    hopped = []
                    for hop in test_hops:
                        at_hop = dataclasses.replace(network, audio=network.audio.replace(segment_hop_seconds=hop))
                        hopped.append((f" @ hop {hop:g} s", at_hop, test_mels, svms, ""))
                        # through the air at this hop too, against the clean songs at the same hop
                        hopped += [(f" @ {condition}, hop {hop:g} s", at_hop,
                                    [per_clip[clips[i].path] for i in test_idx], svms, f" @ hop {hop:g} s")
                                   for condition, per_clip in heard.items()]
                    # an ensemble's bodies alone, each with its own SVM: the paired comparison in the same run; at
                    # the training hop a body's agreement is with the ensemble, at another hop with itself
                    hopped += [(f" @ body {b}{hop_suffix}", dataclasses.replace(
                        member, audio=member.audio.replace(segment_hop_seconds=hop)), test_mels, {},
                        f" @ body {b}" if hop_suffix else "")
                        for b, member in enumerate(network.members, 1)
                        for hop, hop_suffix in [(seg_audio.segment_hop_seconds, "")] + [(h, f", hop {h:g} s")
                                                                                         for h in test_hops]]
                    predicted = {"": preds}
                    for suffix, variant, test_inputs, others, against in [(s, network, x, svms, "")
                                                                          for s, x in variants] + hopped:
                        predicted[suffix] = predict_songs(variant, test_inputs, song, others)
                        for aggregation, probs in predicted[suffix].items():
                            rows.setdefault(aggregation + suffix, []).append(fold_row(k, songs, truth, probs,
                                quadrant_agreement=quadrant_agreement(probs, predicted[against][aggregation])))
                    for aggregation, probs in preds.items():
                        fold_metrics = fold_row(k, songs, truth, probs)
                        rows.setdefault(aggregation, []).append(fold_metrics)
                        log(f"    fold {k} {name} {aggregation}: "
                            + " ".join(f"{m}={fold_metrics[m]:.3f}" for m in METRICS))
                done.append(k)
                if on_fold is not None:
                    on_fold(report(results + rows_of(seconds, seg_audio, per_fold, started), done))
                # after the fold's report: outputs that fail to save cost no scores
                if outputs_dir is not None and method != "clip":
                    save_outputs(outputs_dir / f"{seconds:g}s-{method}-fold{k}.npz", fitted, song, cfg.seed,
                                 tuple(dict.fromkeys((seg_audio.segment_hop_seconds, *test_hops))),
                                 {"train": {name: [version[clips[i].path] for i in train_idx]
                                            for name, version in [("clean", clip_inputs), *augmented]},
                                  "test": {name: [version[clips[i].path] for i in test_idx]
                                           for name, version in {"clean": clip_inputs, **heard}.items()}},
                                 clips, {"train": train_idx, "test": test_idx, "validation": fitted.val_indices})
            results += rows_of(seconds, seg_audio, per_fold, started)

    return report(results, [k for k, _ in numbered])


def save_outputs(path: Path, fitted: Fitted, song: SongConfig, seed: int, hops: tuple[float, ...],
                 songs: dict[str, dict[str, list[np.ndarray]]], clips: list[Clip], indices: dict[str, list[int]]
                 ) -> None:
    """One fold's network on every version of its songs at every hop, in one ``.npz``: per set (``train``,
    ``test``), version (``clean``, ``air-0``, ``room``...) and hop, the segments' probabilities of "high"
    (``<set>/<version>/hop <s>/probs``, segments x tasks), what the heads read (``.../embeddings``) and each
    song's segment count (``.../counts``), songs in the order of ``indices/<set>`` (their positions in the clip
    list), with their file names (``songs/<set>``) and 0/1 labels (``labels/<set>``, songs x tasks). The first
    of ``hops`` is the one the network trained at (``training_hop``); ``theta`` and ``seed`` are what the run's
    song SVMs used, so a refit can repeat them. Beside it, ``<path stem>.pt`` keeps the network (``fold_network``
    reads it back), so a study can hear the songs another way through the same weights."""
    arrays: dict[str, np.ndarray] = {"training_hop": np.float64(hops[0]), "theta": np.float64(song.theta),
                                     "seed": np.int64(seed)}
    for name, idx in indices.items():
        arrays[f"indices/{name}"] = np.asarray(idx, dtype=np.int64)
        arrays[f"songs/{name}"] = np.array([clips[i].path.name for i in idx])
        arrays[f"labels/{name}"] = clip_labels(clips, idx).astype(np.int64)
    for hop in hops:
        model = dataclasses.replace(fitted, audio=fitted.audio.replace(segment_hop_seconds=hop))
        for name, versions in songs.items():
            for version, logmels in versions.items():
                key = f"{name}/{version}/hop {hop:g}"
                probs, embeddings = song_outputs(model, logmels, song.embedding)
                arrays[f"{key}/counts"] = np.array([len(p) for p in probs], dtype=np.int64)
                arrays[f"{key}/probs"] = np.concatenate(probs).astype(np.float32)
                if song.embedding:
                    arrays[f"{key}/embeddings"] = np.concatenate(embeddings).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    save_checkpoint(path.with_suffix(".pt"), {"model": fitted.net.state_dict(), "audio": fitted.audio.to_dict(),
                                             "model_config": fitted.net.config.to_dict()})


def fold_network(path: Path) -> SegmentNet:
    """A fold's network as ``save_outputs`` kept it (``<outputs stem>.pt``), in eval mode, at its training hop."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = SegmentNet(AudioConfig.from_dict(state["audio"]), ModelConfig.from_dict(state["model_config"]))
    net.load_state_dict(state["model"])
    return net.eval()


def rows_of(seconds: float, seg_audio: AudioConfig, per_fold: dict[str, dict[str, list[dict]]], started: float
            ) -> list[dict]:
    """The report's rows of one segment length from the fold rows of each method (or network)."""
    return [{
        "segment_seconds": None if method == "clip" else seconds,
        "effective_segment_seconds": None if method == "clip" else seg_audio.effective_segment_seconds,
        "method": method, "aggregation": aggregation,
        "summary": summarise(rows), "folds": [{m: v for m, v in r.items() if m != "predictions"} for r in rows],
        "predictions": [r["predictions"] for r in rows],
        "seconds": time.perf_counter() - started,
    } for method, by_aggregation in per_fold.items() for aggregation, rows in by_aggregation.items()]


def markdown_table(report: dict) -> str:
    head = ("| segment | method | song aggregation | valence acc | valence F1 | arousal acc | arousal F1 "
            "| quadrant acc | quadrant F1 | valence acc, low arousal | valence acc, high arousal |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|\n")
    rows = []
    for r in report["results"]:
        seg = "whole clip" if r["segment_seconds"] is None else f"{r['segment_seconds']:g} s"
        cells = [f"{100 * r['summary'][m]['mean']:.1f} ± {100 * r['summary'][m]['std']:.1f}"
                 if m in r["summary"] else "-" for m in METRICS]
        rows.append(f"| {seg} | {r['method']} | {r['aggregation']} | " + " | ".join(cells) + " |")
    table = head + "\n".join(rows) + "\n"
    agreement = [r for r in report["results"] if "quadrant_agreement" in r["summary"]]
    if agreement:
        table += "\n| segment | method | song aggregation | quadrant same as in the plain row |\n|---|---|---|---|\n"
        for r in agreement:
            same = r["summary"]["quadrant_agreement"]
            table += (f"| {r['segment_seconds']:g} s | {r['method']} | {r['aggregation']} | "
                      f"{100 * same['mean']:.1f} ± {100 * same['std']:.1f} |\n")
    return table


def write_report(report: dict, out_dir: Path, command: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {**report, "command": command}
    json_path, md_path = out_dir / "evaluation.json", out_dir / "evaluation.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(
        f"# Evaluation: {report['n_songs']} songs, {report['protocol']}\n\n"
        f"Command: `{command}`\n\nMean ± std over folds, in %.\n\n{markdown_table(report)}"
    )
    return json_path, md_path
