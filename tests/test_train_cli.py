"""`mer-live train` and `mer-live evaluate` end to end as a user runs them (tiny synthetic corpus)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO

TINY = ["--dataset", "synth", "--synth-clips", "16", "--synth-seconds", "6", "--epochs", "2", "--warmup-epochs", "1",
        "--batch-size", "16", "--threads", "2"]


def mer_live(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mer_live", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(cwd)})


def test_train_writes_a_complete_run_directory(tmp_path: Path):
    out = tmp_path / "run"
    result = mer_live("train", *TINY, "--root", str(tmp_path / "synth"), "--out", str(out),
                      "--segment-seconds", "2", "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("checkpoint.pt", "config.json", "aggregator.pkl", "metrics.json", "verify_audio.npy",
                 "verify_features.npy", "plots/training_curves.png", "plots/gmm_valence.png", "plots/gmm_arousal.png"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["audio"]["segment_seconds"] == 2.0 and config["device"] in ("cpu", "cuda")
    assert "epoch   2 sssl" in result.stderr  # one line per epoch, with clean shares and validation per task
    assert "clean_v=" in result.stderr and "val_a acc=" in result.stderr
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [row["phase"] for row in history] == ["warmup", "sssl"]


def test_without_validation_songs_every_song_trains_and_the_last_epoch_is_kept(tmp_path: Path):
    """--val-fraction 0: no song is held out to choose the epoch; the run keeps the last one, and the export's
    checks read training songs, so the run exports and labels as any other."""
    out = tmp_path / "run"
    result = mer_live("train", *TINY, "--root", str(tmp_path / "synth"), "--out", str(out), "--method", "naive",
                      "--epochs", "3", "--segment-seconds", "2", "--val-fraction", "0",
                      "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "val_v acc=nan" in result.stderr  # nothing to validate on
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["validation_songs"] == 0 and metrics["best_epoch"] == 3 and "validation_svm_acc" not in metrics
    assert json.loads((out / "config.json").read_text())["train"]["val_fraction"] == 0
    assert len(np.load(out / "verify_audio.npy")) > 0 and len(np.load(out / "verify_features.npy")) > 0
    bundle = tmp_path / "bundle"
    exported = mer_live("export", str(out), "--out", str(bundle), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    clip = next((tmp_path / "synth").rglob("*.wav"))
    labeled = mer_live("label", str(clip), "--model", str(bundle), "--format", "json", cwd=tmp_path)
    assert labeled.returncode == 0, labeled.stderr
    assert json.loads(labeled.stdout)["files"][0]["quadrant"] in ("Q1", "Q2", "Q3", "Q4")


def test_evaluate_writes_json_and_markdown_reports(tmp_path: Path):
    out = tmp_path / "eval"
    result = mer_live("evaluate", *TINY, "--root", str(tmp_path / "synth"), "--folds", "2", "--segment-seconds", "2",
                      "--methods", "sssl,naive,clip", "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                      "--gmm-input", "clip-relative", "--gmm-per-class", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "evaluation.json").read_text())
    got = {(r["method"], r["aggregation"]) for r in report["results"]}
    assert got == {("sssl", "svm"), ("sssl", "mean"), ("naive", "svm"), ("naive", "mean"), ("clip", "clip")}
    assert all(len(r["folds"]) == 2 for r in report["results"])
    assert report["train"]["gmm_input"] == "clip-relative" and report["train"]["gmm_per_class"] is True
    markdown = (out / "evaluation.md").read_text()
    assert "| 2 s | sssl | svm |" in markdown and "| valence acc, low arousal | valence acc, high arousal |" in markdown
    for row in report["results"]:  # valence among the quiet songs and the loud ones apart, from the songs' labels
        for fold, predicted in zip(row["folds"], row["predictions"]):
            labels, probs = np.array(predicted["labels"]), np.array(predicted["probs"])
            right = (probs[:, 0] > 0.5) == labels[:, 0]
            assert fold["valence_acc_low_arousal"] == pytest.approx(right[labels[:, 1] == 0].mean())
            assert fold["valence_acc_high_arousal"] == pytest.approx(right[labels[:, 1] == 1].mean())


def test_compare_evaluations_pairs_folds_and_splits_valence_by_arousal():
    """Two published reports of the default's recipe, paired per fold: the three headline metrics, then valence
    among low- and high-arousal songs, computed from the predictions of reports that predate those metrics."""
    reports = REPO / "docs" / "evaluation"
    row = "naive:svm @ hop 1 s"
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "compare_evaluations.py"),
                             f"{reports / 'mn04-default-weight-decay-1e-3' / 'evaluation.json'}:{row}",
                             f"{reports / 'mn04-default-rerun-2026-12' / 'evaluation.json'}:{row}"],
                            capture_output=True, text=True, env={"PYTHONPATH": str(REPO)}, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "valence: 81.8 ± 6.5 vs 81.8 ± 6.7; paired +0.0 (2 won, 2 lost)"
    assert lines[3] == "valence, low arousal: 73.0 ± 8.9 vs 72.0 ± 8.7; paired +1.0 (2 won, 1 lost)"
    assert lines[4] == "valence, high arousal: 90.5 ± 7.3 vs 91.5 ± 6.2; paired -1.0 (1 won, 2 lost)"


def test_folds_run_apart_merge_into_the_whole_study_and_fuse(tmp_path: Path):
    """--run-folds 1 and --run-folds 2 in two runs, merged, are the 2-fold study; fusing a report with itself
    gives its own scores (the ensemble of one model)."""
    common = [*TINY, "--root", str(tmp_path / "synth"), "--folds", "2", "--segment-seconds", "2", "--methods",
              "naive", "--cache-dir", str(tmp_path / "cache")]
    for name, extra in (("whole", []), ("f1", ["--run-folds", "1"]), ("f2", ["--run-folds", "2"])):
        result = mer_live("evaluate", *common, *extra, "--out", str(tmp_path / name), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    part = json.loads((tmp_path / "f2" / "evaluation.json").read_text())
    assert "folds 2 of the 2 only" in part["protocol"] and [f["fold"] for f in part["results"][0]["folds"]] == [2]
    scripts = REPO / "scripts"
    merged = subprocess.run([sys.executable, str(scripts / "merge_evaluations.py"), str(tmp_path / "merged"),
                             str(tmp_path / "f2" / "evaluation.json"), str(tmp_path / "f1" / "evaluation.json")],
                            capture_output=True, text=True, env={"PYTHONPATH": str(REPO)}, timeout=120)
    assert merged.returncode == 0, merged.stderr
    whole = json.loads((tmp_path / "whole" / "evaluation.json").read_text())
    joined = json.loads((tmp_path / "merged" / "evaluation.json").read_text())
    assert joined["protocol"] == whole["protocol"]
    for a, b in zip(joined["results"], whole["results"]):
        assert [f["fold"] for f in a["folds"]] == [1, 2]
        assert a["summary"] == b["summary"] and a["predictions"] == b["predictions"]
    report = str(tmp_path / "whole" / "evaluation.json")
    fused = subprocess.run([sys.executable, str(scripts / "fuse_evaluations.py"), f"{report}:naive:svm",
                            f"{report}:naive:svm"], capture_output=True, text=True, env={"PYTHONPATH": str(REPO)},
                           timeout=120)
    assert fused.returncode == 0, fused.stderr
    assert "quadrant F1: +0.0 (0 won, 0 lost)" in fused.stdout


def test_a_learning_curve_from_two_train_shares(tmp_path: Path):
    """evaluate --train-share 0.5 beside the whole training set, same folds, read by scripts/learning_curve.py:
    a table, a JSON and a PNG; a share out of range is one line, no traceback."""
    common = [*TINY, "--root", str(tmp_path / "synth"), "--folds", "2", "--segment-seconds", "2", "--methods",
              "naive", "--cache-dir", str(tmp_path / "cache"), "--conditions", "noise"]
    for name, share in (("half", "0.5"), ("whole", "1")):
        result = mer_live("evaluate", *common, "--train-share", share, "--out", str(tmp_path / name), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert f"({4 if name == 'half' else 8} training songs, 8 test songs)" in result.stderr
    half = json.loads((tmp_path / "half" / "evaluation.json").read_text())
    assert half["train_share"] == 0.5 and "(a stratified 50% of them)" in half["protocol"]
    out = tmp_path / "curve"
    curve = subprocess.run([sys.executable, str(REPO / "scripts" / "learning_curve.py"), str(out),
                            f"{tmp_path / 'whole' / 'evaluation.json'}:naive:svm",
                            f"{tmp_path / 'half' / 'evaluation.json'}:naive:svm", "--targets", "84,91,77"],
                           capture_output=True, text=True, env={"PYTHONPATH": str(REPO)}, timeout=120)
    assert curve.returncode == 0, curve.stderr
    result = json.loads((out / "learning_curve.json").read_text())
    assert [s["train_songs"] for s in result["sizes"]] == [4, 8] and result["folds"] == [1, 2]
    whole = json.loads((tmp_path / "whole" / "evaluation.json").read_text())
    svm = next(r for r in whole["results"] if r["aggregation"] == "svm")
    assert result["sizes"][1]["quadrant_f1"]["mean"] == pytest.approx(100 * svm["summary"]["quadrant_f1"]["mean"])
    assert result["sizes"][1]["quadrant_f1"]["vs_largest"] == 0 and "| 4 |" in curve.stdout
    noise = next(r for r in whole["results"] if r["aggregation"] == "svm @ noise")
    assert result["conditions"] == ["noise"] and "quadrant holds: noise" in curve.stdout
    held = 100 * noise["summary"]["quadrant_agreement"]["mean"]
    assert result["sizes"][1]["agreement"]["noise"] == pytest.approx(held)
    assert (out / "learning_curve.png").stat().st_size > 10_000
    mixed = subprocess.run([sys.executable, str(REPO / "scripts" / "merge_evaluations.py"), str(tmp_path / "mixed"),
                            str(tmp_path / "half" / "evaluation.json"), str(tmp_path / "whole" / "evaluation.json")],
                           capture_output=True, text=True, env={"PYTHONPATH": str(REPO)}, timeout=120)
    assert mixed.returncode != 0 and "'train_share'" in mixed.stderr  # two sizes are not one study's folds
    refused = mer_live("evaluate", *common, "--train-share", "0", "--out", str(tmp_path / "no"), cwd=tmp_path)
    assert refused.returncode == 2 and "--train-share" in refused.stderr and "Traceback" not in refused.stderr


def test_bad_root_is_one_line_error(tmp_path: Path):
    result = mer_live("train", "--dataset", "4q", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "r"),
                      cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "nope" in result.stderr


def test_pretrained_model_trains_exports_and_labels(tmp_path: Path):
    """musicnn-msd end to end: frozen-body features cached, top trained, bundle exported and verified, labels."""
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    common = ["--root", str(tmp_path / "synth"), "--cache-dir", str(tmp_path / "cache"), "--arch", "musicnn-msd",
              "--finetune", "top", "--song-embedding"]
    result = mer_live("train", *TINY, *common, "--out", str(run), "--segment-seconds", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "musicnn-msd body features for 16 clips" in result.stderr
    config = json.loads((run / "config.json").read_text())
    assert config["audio"]["sample_rate"] == 16000 and config["model"]["arch"] == "musicnn-msd"
    again = mer_live("train", *TINY, *common, "--out", str(tmp_path / "run2"), "--segment-seconds", "3", cwd=tmp_path)
    assert again.returncode == 0 and "body features" not in again.stderr  # the cache served every clip
    exported = mer_live("export", str(run), "--out", str(bundle), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["verification"]["segment_onnx_vs_torch_max_abs"] < 1e-4
    assert manifest["aggregator"]["embedding_dims"] == 250  # 200-d penultimate layer + 50 tags
    assert len(manifest["aggregator"]["feature_names"]) == 2 * 7 + 2 * 250
    assert manifest["model"]["pretrained"]["licence"].startswith("ISC") and (bundle / "NOTICE").is_file()
    clip = next((tmp_path / "synth").rglob("*.wav"))
    labeled = mer_live("label", str(clip), "--model", str(bundle), "--format", "json", cwd=tmp_path)
    assert labeled.returncode == 0, labeled.stderr
    row = json.loads(labeled.stdout)["files"][0]
    assert 0 <= row["valence"] <= 1 and row["quadrant"] in ("Q1", "Q2", "Q3", "Q4")
    streamed = mer_live("--file", str(clip), "--fast", "--jsonl", "--model", str(bundle), cwd=tmp_path)
    assert streamed.returncode == 0, streamed.stderr
    ends = [json.loads(line) for line in streamed.stdout.splitlines() if '"song_end"' in line]
    assert len(ends) == 1 and abs(ends[0]["valence"] - row["valence"]) < 1e-4  # the stream ends where label is


def test_musicnn_mid_end_fine_tunes_on_cached_front_end_maps_and_exports(tmp_path: Path):
    """--finetune mid: front-end maps cached once, mid-end and back end trained on them, the bundle's ONNX graph
    (the whole network on raw audio) agrees with the trained PyTorch model, and it labels a file."""
    import torch

    from mer_live.nn.musicnn import load_pretrained

    run, bundle = tmp_path / "run", tmp_path / "bundle"
    result = mer_live("train", *TINY, "--root", str(tmp_path / "synth"), "--cache-dir", str(tmp_path / "cache"),
                      "--arch", "musicnn-msd", "--finetune", "mid", "--song-embedding", "--segment-seconds", "3",
                      "--out", str(run), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "musicnn-msd front-end maps for 16 clips" in result.stderr
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]
    pretrained = load_pretrained("musicnn-msd", "body")
    moved = {k for k, v in pretrained.items() if not torch.equal(state[f"backbone.body.{k}"].reshape(v.shape), v)}
    assert moved and all(k.startswith(("midend.", "midend_bn.")) for k in moved)  # the front end stays frozen
    assert any(k.startswith("midend.") and k.endswith("weight") for k in moved)
    exported = mer_live("export", str(run), "--out", str(bundle), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["verification"]["segment_onnx_vs_torch_max_abs"] < 1e-4
    assert manifest["model"]["finetune"] == "mid" and "mid-end" in manifest["model"]["pretrained"]["weights"]
    clip = next((tmp_path / "synth").rglob("*.wav"))
    labeled = mer_live("label", str(clip), "--model", str(bundle), "--format", "json", cwd=tmp_path)
    assert labeled.returncode == 0, labeled.stderr
    assert json.loads(labeled.stdout)["files"][0]["quadrant"] in ("Q1", "Q2", "Q3", "Q4")


def test_evaluate_reports_gain_rows_and_quadrant_agreement(tmp_path: Path):
    out = tmp_path / "eval"
    result = mer_live("evaluate", *TINY, "--root", str(tmp_path / "synth"), "--folds", "2", "--segment-seconds", "2",
                      "--methods", "naive", "--gains=-10,6", "--gain-augment=-10", "--out", str(out),
                      "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "evaluation.json").read_text())
    rows = {r["aggregation"]: r for r in report["results"]}
    assert {"svm", "mean", "svm @ -10 dB", "svm @ +6 dB", "mean @ -10 dB"} <= set(rows)
    agreement = rows["svm @ -10 dB"]["summary"]["quadrant_agreement"]["mean"]
    assert 0.0 <= agreement <= 1.0
    assert "quadrant same as in the plain row" in (out / "evaluation.md").read_text()
    assert report["train"]["gain_augment_db"] == [-10.0]


def _parse(*argv: str):
    from mer_live.cli import build_parser

    return build_parser().parse_args(["train", "--dataset", "synth", "--out", "unused", *argv])


def test_option_defaults_are_the_train_config_defaults():
    from mer_live.train.cli import train_config
    from mer_live.train.settings import TrainConfig

    assert train_config(_parse()) == TrainConfig()
    changed = train_config(_parse("--no-gmm", "--epochs", "3", "--warmup-epochs", "9", "--gain-augment=-10,6"))
    assert (changed.gmm, changed.epochs, changed.warmup_epochs, changed.gain_augment_db) == (False, 3, 3, (-10.0, 6.0))


def test_augmentation_and_smoothing_outside_their_range_are_refused_in_one_line():
    from mer_live.errors import MerLiveError
    from mer_live.train.cli import train_config

    with pytest.raises(MerLiveError, match="--freq-mixstyle P is a share of batches"):
        train_config(_parse("--freq-mixstyle", "1.5"))
    with pytest.raises(MerLiveError, match="--label-smoothing E needs 0 <= E < 1"):
        train_config(_parse("--label-smoothing", "1"))
    with pytest.raises(MerLiveError, match="--quiet-valence W weighs a loss: it needs W > 0, got 0"):
        train_config(_parse("--quiet-valence", "0"))
    assert train_config(_parse("--quiet-valence", "2")).quiet_valence == 2
    with pytest.raises(MerLiveError, match="--sam RHO is a radius: it needs RHO >= 0, got -0.05"):
        train_config(_parse("--sam=-0.05"))
    assert train_config(_parse("--sam", "0.05")).sam == 0.05
    with pytest.raises(MerLiveError, match="--song-loss W is a share of the loss: it needs 0 <= W <= 1, got 1.5"):
        train_config(_parse("--song-loss", "1.5"))
    with pytest.raises(MerLiveError, match="--ce-mixup mixes segments of two songs: drop one of them"):
        train_config(_parse("--song-loss", "0.5", "--ce-mixup", "0.3"))
    assert train_config(_parse("--song-loss", "0.5")).song_loss == 0.5
    with pytest.raises(MerLiveError, match="--freq-mask and --time-mask are widths"):
        train_config(_parse("--time-mask", "-1"))
    with pytest.raises(MerLiveError, match="--val-fraction F is a share of the training songs"):
        train_config(_parse("--val-fraction", "1"))
    assert train_config(_parse("--val-fraction", "0")).val_fraction == 0
    wider = train_config(_parse("--freq-mask", "48", "--time-mask", "60"))
    assert (wider.freq_mask, wider.time_mask) == (48, 60)


def test_pitch_shift_needs_a_network_that_reads_log_mels():
    """`--pitch-shift S` reaches TrainConfig; a negative S and a cached-feature network are refused in one line."""
    from mer_live.errors import MerLiveError
    from mer_live.train.cli import _configs, train_config

    assert train_config(_parse("--pitch-shift", "2")).pitch_shift == 2.0
    assert _configs(_parse("--arch", "compact", "--pitch-shift", "2"))
    for argv in (("--arch", "musicnn-msd", "--pitch-shift", "2"), ("--arch", "compact", "--pitch-shift", "-1")):
        with pytest.raises(MerLiveError, match="--pitch-shift S shifts the log-mels"):
            _configs(_parse(*argv))


def test_probe_epochs_need_a_fine_tuned_pretrained_network(tmp_path: Path, monkeypatch):
    """`--probe-epochs N` reaches TrainConfig for a network whose pretrained parts fine-tune; a frozen body (heads
    only), a network trained from scratch, a negative N and a torchrun process group are refused in one line,
    the last before any data is read."""
    from mer_live.errors import MerLiveError
    from mer_live.train.cli import _configs, run_train

    monkeypatch.setenv("WORLD_SIZE", "2")
    args = _parse("--arch", "mn04", "--finetune", "full", "--probe-epochs", "1", "--root", str(tmp_path / "none"))
    with pytest.raises(MerLiveError, match="--probe-epochs trains in one process"):
        run_train(args)
    assert not (tmp_path / "none").exists()
    monkeypatch.delenv("WORLD_SIZE")

    assert _configs(_parse("--arch", "mn04", "--finetune", "full", "--probe-epochs", "1"))[0].probe_epochs == 1
    assert _configs(_parse("--arch", "musicnn-msd", "--finetune", "top", "--probe-epochs", "2"))[0].probe_epochs == 2
    for argv in (("--arch", "mn04", "--finetune", "heads", "--probe-epochs", "1"),
                 ("--arch", "compact", "--probe-epochs", "1"),
                 ("--arch", "mn04", "--finetune", "full", "--probe-epochs", "-1")):
        with pytest.raises(MerLiveError, match="--probe-epochs N trains the heads before"):
            _configs(_parse(*argv))


def test_resume_under_other_settings_is_refused_in_one_line(tmp_path: Path):
    from mer_live.train import rundir
    from mer_live.train.cli import _configs
    from mer_live.train.command import run_record
    from mer_live.train.settings import RunSettings

    out = tmp_path / "run"
    args = [*TINY, "--root", str(tmp_path / "synth"), "--segment-seconds", "2"]
    cfg, audio, model_config, song, _ = _configs(_parse(*args))
    rundir.write_config(out, run_record(RunSettings(out), cfg, audio, model_config, song))
    (out / rundir.CHECKPOINT).write_bytes(b"a checkpoint")
    result = mer_live("train", *args, "--out", str(out), "--segment-seconds", "3", "--arch", "vgg16", "--resume",
                      cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "segment_seconds 2.0 -> 3.0" in line and "arch compact -> vgg16" in line and "new --out" in line
    assert not (tmp_path / "synth").exists()  # refused before any data was made
    assert '"segment_seconds": 2.0' in (out / rundir.CONFIG).read_text()  # config.json is left as it was
    more = run_record(RunSettings(out), dataclasses.replace(cfg, epochs=5), audio, model_config, song)
    assert rundir.resume_conflicts(json.loads((out / rundir.CONFIG).read_text()), more) == []  # more epochs resume
    older = json.loads((out / rundir.CONFIG).read_text())
    del older["train"]["consistency"]  # a run made before the setting existed had its default
    del older["model"]["body_finetune"]  # a model setting too
    assert rundir.resume_conflicts(older, more) == []
    assert rundir.resume_conflicts(older, run_record(RunSettings(out), dataclasses.replace(cfg, consistency=1.0),
                                                     audio, model_config, song)) == ["consistency 0.0 -> 1.0"]


def test_evaluate_hears_test_songs_through_the_air_and_trains_on_air_copies(tmp_path: Path):
    out = tmp_path / "eval"
    result = mer_live("evaluate", *TINY, "--root", str(tmp_path / "synth"), "--folds", "2", "--segment-seconds", "2",
                      "--methods", "naive", "--conditions", "room,noise,phone,late,room+late", "--air-copies", "1",
                      "--compare-svm-copies", "0", "--test-hops", "1", "--out", str(out),
                      "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "evaluation.json").read_text())
    rows = {r["aggregation"]: r for r in report["results"]}
    assert {"svm @ room", "svm @ noise", "svm @ phone", "mean @ phone"} <= set(rows)
    # the same fold networks with a song SVM fit on the clean songs only, under every condition too
    assert {"svm (0 copies)", "svm (0 copies) @ room", "svm (0 copies) @ phone"} <= set(rows)
    assert not any(name.startswith("mean (") for name in rows)  # the plain mean has no SVM to vary
    plain, clean_fit = rows["svm"]["predictions"], rows["svm (0 copies)"]["predictions"]
    assert [f["songs"] for f in plain] == [f["songs"] for f in clean_fit]
    assert [f["probs"] for f in plain] != [f["probs"] for f in clean_fit]
    for condition in ("room", "noise", "phone", "late", "room+late"):
        assert 0.0 <= rows[f"svm @ {condition}"]["summary"]["quadrant_agreement"]["mean"] <= 1.0
    # through the air at the other hop too, its agreement counted against the clean songs at that same hop
    heard, clean = rows["svm @ room, hop 1 s"], rows["svm @ hop 1 s"]
    assert "svm (0 copies) @ phone, hop 1 s" in rows
    for fold, a, b in zip(heard["folds"], heard["predictions"], clean["predictions"]):
        same = [(np.array(x) > 0.5).tolist() == (np.array(y) > 0.5).tolist() for x, y in zip(a["probs"], b["probs"])]
        assert fold["quadrant_agreement"] == pytest.approx(np.mean(same))
    assert report["train"]["air_copies"] == 1
    cached = {p.name.split("-", 1)[-1] for p in (tmp_path / "cache").glob("*-*.npy")}
    assert {"room.npy", "noise.npy", "phone.npy", "late.npy", "room+late.npy", "air-0.npy"} <= cached
    unknown = mer_live("evaluate", *TINY, "--root", str(tmp_path / "synth"), "--conditions", "moon",
                       "--out", str(out), "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert unknown.returncode == 2 and "moon" in unknown.stderr and "Traceback" not in unknown.stderr
    alone = mer_live("evaluate", *TINY, "--root", str(tmp_path / "synth"), "--consistency", "1",
                     "--out", str(out), "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert alone.returncode == 2 and "--air-copies" in alone.stderr and "Traceback" not in alone.stderr
    phone = mer_live("evaluate", *TINY, "--root", str(tmp_path / "synth"), "--air-phone", "0.3",
                     "--out", str(out), "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert phone.returncode == 2 and "--air-copies" in phone.stderr and "Traceback" not in phone.stderr
    for option in ("--svm-copies", "--compare-svm-copies"):
        bare = mer_live("evaluate", *TINY, "--root", str(tmp_path / "synth"), option, "0",
                        "--out", str(out), "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
        assert bare.returncode == 2 and "--air-copies" in bare.stderr and "Traceback" not in bare.stderr
    for decay, named in (("0.8", "--arch mn04"), ("0", "0 < D <= 1")):  # layer-wise rates: an mn04 body's only
        wrong = mer_live("evaluate", *TINY, "--root", str(tmp_path / "synth"), "--layer-decay", decay,
                         "--out", str(out), "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
        assert wrong.returncode == 2 and named in wrong.stderr and "Traceback" not in wrong.stderr
    negative = mer_live("evaluate", *TINY, "--root", str(tmp_path / "synth"), "--weight-decay=-1e-3",
                        "--out", str(out), "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert negative.returncode == 2 and "WD >= 0" in negative.stderr and "Traceback" not in negative.stderr


def test_saved_segment_outputs_rebuild_the_report_s_song_rows(tmp_path: Path):
    """evaluate --save-outputs keeps what every fold's network gives every segment; the plain mean of the saved
    probabilities is the report's "mean" row, and scripts/song_aggregators.py refits the song SVM from them to
    the report's "svm" rows (clean, through the air, at the other hop; on the first of two recordings) before it
    compares other aggregators; scripts/test_time_views.py reads every fold's network back and hears the songs
    again through a telephone view (its plain rows the report's once more), and through a condition the run did
    not save as the run would have."""
    out, outputs = tmp_path / "eval", tmp_path / "outputs"
    result = mer_live("evaluate", *TINY, "--root", str(tmp_path / "synth"), "--folds", "2", "--segment-seconds", "2",
                      "--methods", "naive", "--conditions", "room,late", "--air-copies", "2", "--svm-copies", "1",
                      "--test-hops", "0.5", "--seed", "3", "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                      "--save-outputs", str(outputs), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = {r["aggregation"]: r for r in json.loads((out / "evaluation.json").read_text())["results"]}
    assert sorted(p.name for p in outputs.iterdir()) == [f"2s-naive-fold{k}.{x}" for k in (1, 2) for x in ("npz", "pt")]
    for k in (1, 2):
        z = np.load(outputs / f"2s-naive-fold{k}.npz")
        hop = f"{float(z['training_hop']):g}"
        assert int(z["seed"]) == 3 and float(z["theta"]) == 0.5  # what the run's song SVMs used
        assert {f"train/{v}/hop {h}/probs" for v in ("clean", "air-0", "air-1") for h in (hop, "0.5")} <= set(z.files)
        assert len(np.intersect1d(z["indices/train"], z["indices/test"])) == 0
        assert set(z["indices/validation"]) <= set(z["indices/train"])
        songs = np.split(z[f"test/clean/hop {hop}/probs"], np.cumsum(z[f"test/clean/hop {hop}/counts"])[:-1])
        saved = report["mean"]["predictions"][k - 1]
        assert list(z["songs/test"]) == saved["songs"] and z["labels/test"].tolist() == saved["labels"]
        np.testing.assert_allclose([s.mean(axis=0) for s in songs], saved["probs"], atol=1e-5)
    study = subprocess.run([sys.executable, str(REPO / "scripts" / "song_aggregators.py"), str(outputs), "--out",
                            str(tmp_path / "study.json"), "--only", "logistic regression"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert study.returncode == 0, study.stderr
    rows = {r["row"]: r for r in json.loads((tmp_path / "study.json").read_text())["rows"]}
    hop = f"{float(np.load(outputs / '2s-naive-fold1.npz')['training_hop']):g}"
    for row, reported in ((f"svm @ hop {hop} s", "svm"), (f"svm @ room, hop {hop} s", "svm @ room"),
                          ("svm @ hop 0.5 s", "svm @ hop 0.5 s"), ("svm @ room, hop 0.5 s", "svm @ room, hop 0.5 s")):
        # a condition's agreement is with the clean songs at its hop in both; a clean hop's, with itself in the study
        for metric in ("valence_acc", "arousal_acc", "quadrant_f1") + ("quadrant_agreement",) * ("room" in row):
            expected = [100 * f[metric] for f in report[reported]["folds"]]
            assert rows[row][metric]["per_fold"] == pytest.approx(expected, abs=0.01), (row, metric)
    logistic = rows[f"logistic regression @ room, hop {hop} s"]
    assert 0 <= logistic["quadrant_agreement"]["mean"] <= 100 and len(logistic["valence_acc"]["per_fold"]) == 2
    typo = subprocess.run([sys.executable, str(REPO / "scripts" / "song_aggregators.py"), str(outputs), "--only",
                           "logistic"], capture_output=True, text=True, cwd=tmp_path)
    assert typo.returncode != 0 and "logistic regression" in typo.stderr and "Traceback" not in typo.stderr
    # the saved networks, read back, hear the songs through a telephone view; the shipped SVM's rows stay the report's
    views = [sys.executable, str(REPO / "scripts" / "test_time_views.py"), str(outputs), "--dataset", "synth",
             "--root", str(tmp_path / "synth"), "--cache-dir", str(tmp_path / "cache"), "--weights", "0.5",
             "--out", str(tmp_path / "views.json")]
    study = subprocess.run(views, capture_output=True, text=True, cwd=tmp_path)
    assert study.returncode == 0, study.stderr
    rows = {r["row"]: r for r in json.loads((tmp_path / "views.json").read_text())["rows"]}
    for row, reported in ((f"svm @ hop {hop} s", "svm"), (f"svm @ room, hop {hop} s", "svm @ room"),
                          ("svm @ room, hop 0.5 s", "svm @ room, hop 0.5 s")):
        for metric in ("valence_acc", "arousal_acc", "quadrant_f1") + ("quadrant_agreement",) * ("room" in row):
            expected = [100 * f[metric] for f in report[reported]["folds"]]
            assert rows[row][metric]["per_fold"] == pytest.approx(expected, abs=0.01), (row, metric)
    for view in ("song", "segment", "segment, svm refit"):
        assert 0 <= rows[f"{view}, telephone 0.5 @ room, hop 0.5 s"]["quadrant_agreement"]["mean"] <= 100
    assert (outputs / "2s-naive-fold1.views.json").is_file()  # kept: a rerun scores the folds it finished at once
    rerun = subprocess.run(views, capture_output=True, text=True, cwd=tmp_path)
    assert rerun.returncode == 0 and "| svm @ room, hop 0.5 s |" in rerun.stdout, rerun.stderr
    # the same outputs without the late songs: the read-back network hears them, and scores them as the run did
    unsaved = tmp_path / "unsaved"
    unsaved.mkdir()
    for k in (1, 2):
        z = np.load(outputs / f"2s-naive-fold{k}.npz")
        np.savez(unsaved / f"2s-naive-fold{k}.npz", **{key: z[key] for key in z.files if "/late/" not in key})
        shutil.copy(outputs / f"2s-naive-fold{k}.pt", unsaved)
    late = [sys.executable, str(REPO / "scripts" / "test_time_views.py"), str(unsaved), "--dataset", "synth",
            "--root", str(tmp_path / "synth"), "--cache-dir", str(tmp_path / "cache"), "--weights", "",
            "--conditions", "late", "--out", str(tmp_path / "late.json")]
    heard = subprocess.run(late, capture_output=True, text=True, cwd=tmp_path)
    assert heard.returncode == 0, heard.stderr
    rows = {r["row"]: r for r in json.loads((tmp_path / "late.json").read_text())["rows"]}
    for row, reported in ((f"svm @ late, hop {hop} s", "svm @ late"),
                          ("svm @ late, hop 0.5 s", "svm @ late, hop 0.5 s")):
        for metric in ("valence_acc", "arousal_acc", "quadrant_f1", "quadrant_agreement"):
            expected = [100 * f[metric] for f in report[reported]["folds"]]
            assert rows[row][metric]["per_fold"] == pytest.approx(expected, abs=0.01), (row, metric)
    assert not any("telephone" in row for row in rows)  # no weights: the shipped SVM alone
    typo = subprocess.run([*late[:-4], "--conditions", "moon"], capture_output=True, text=True, cwd=tmp_path)
    assert typo.returncode != 0 and "moon" in typo.stderr and "Traceback" not in typo.stderr


def test_audioset_mobilenet_fine_tunes_end_to_end_exports_and_labels(tmp_path: Path):
    """mn04 through the real trainer, with layer-wise rates: the whole network trains (the body's weights
    move), the run exports with the AudioSet front end and MIT notice, and `label` reads the bundle."""
    import torch

    from mer_live.nn.mobilenet import load_weights

    run, bundle = tmp_path / "run", tmp_path / "bundle"
    result = mer_live("train", *TINY, "--root", str(tmp_path / "synth"), "--cache-dir", str(tmp_path / "cache"),
                      "--arch", "mn04", "--finetune", "full", "--song-embedding", "--lr-warmup-epochs", "0.5",
                      "--method", "naive", "--out", str(run), "--segment-seconds", "3", "--layer-decay", "0.85",
                      "--weight-decay", "1e-3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    checkpoint = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    state = checkpoint["model"]
    assert checkpoint["train_config"]["layer_decay"] == 0.85 and len(checkpoint["optimizer"]["param_groups"]) == 18
    assert {group["weight_decay"] for group in checkpoint["optimizer"]["param_groups"]} == {1e-3}
    pretrained = load_weights()["features.5.block.1.0.weight"]
    assert not torch.equal(state["backbone.body.features.5.block.1.0.weight"], pretrained)
    exported = mer_live("export", str(run), "--out", str(bundle), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["audio"]["sample_rate"] == 32000 and manifest["aggregator"]["embedding_dims"] == 384
    assert manifest["model"]["pretrained"]["licence"].startswith("MIT")
    clip = next((tmp_path / "synth").rglob("*.wav"))
    labeled = mer_live("label", str(clip), "--model", str(bundle), "--format", "json", cwd=tmp_path)
    assert labeled.returncode == 0, labeled.stderr
    assert json.loads(labeled.stdout)["files"][0]["quadrant"] in ("Q1", "Q2", "Q3", "Q4")


def test_an_ensemble_trains_body_by_body_exports_as_one_graph_and_labels(tmp_path: Path):
    """`--bodies 2`: body 1 is exactly the single network of the same settings, body 2 has the next seed; the
    bundle is one graph whose embedding is both bodies' side by side and whose manifest names each; `label`
    reads it; `evaluate` scores each body alone beside the ensemble; a non-AudioSet ensemble is refused."""
    import torch

    common = [*TINY, "--root", str(tmp_path / "synth"), "--cache-dir", str(tmp_path / "cache"), "--arch", "mn04",
              "--finetune", "full", "--song-embedding", "--lr-warmup-epochs", "0.5", "--segment-seconds", "3"]
    single, ensemble, bundle = tmp_path / "single", tmp_path / "ensemble", tmp_path / "bundle"
    for out, extra in ((single, []), (ensemble, ["--bodies", "2"])):
        result = mer_live("train", *common, "--method", "naive", "--out", str(out), *extra, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    alone = torch.load(single / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]
    both = torch.load(ensemble / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]
    key = "body.features.5.block.1.0.weight"
    assert torch.equal(both[f"backbone.members.0.{key}"], alone[f"backbone.{key}"])
    assert not torch.equal(both[f"backbone.members.1.{key}"], alone[f"backbone.{key}"])
    assert (ensemble / "checkpoint.body2.pt").is_file() and (ensemble / "plots" / "training_curves_body2.png").is_file()

    exported = mer_live("export", str(ensemble), "--out", str(bundle), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["model"]["bodies"] == 2 and manifest["aggregator"]["embedding_dims"] == 768
    assert [(m["seed"], m["embedding_columns"]) for m in manifest["model"]["members"]] == [(0, [0, 384]),
                                                                                        (1, [384, 768])]
    clip = next((tmp_path / "synth").rglob("*.wav"))
    labeled = mer_live("label", str(clip), "--model", str(bundle), "--format", "json", cwd=tmp_path)
    assert labeled.returncode == 0, labeled.stderr
    assert json.loads(labeled.stdout)["files"][0]["quadrant"] in ("Q1", "Q2", "Q3", "Q4")

    out = tmp_path / "evaluation"
    evaluated = mer_live("evaluate", *common, "--methods", "naive", "--bodies", "2", "--folds", "2", "--max-folds",
                         "1", "--test-hops", "1.5", "--out", str(out), cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    rows = {r["aggregation"] for r in json.loads((out / "evaluation.json").read_text())["results"]}
    assert {"svm", "svm @ body 1", "svm @ body 2", "svm @ body 2, hop 1.5 s", "svm @ hop 1.5 s"} <= rows
    refused = mer_live("train", *TINY, "--root", str(tmp_path / "synth"), "--bodies", "2", "--out", str(tmp_path / "x"),
                       cwd=tmp_path)
    assert refused.returncode == 2 and "AudioSet" in refused.stderr and "Traceback" not in refused.stderr


def test_a_fine_tuned_body_beside_the_frozen_pretrained_one(tmp_path: Path):
    """`--bodies 2 --finetune full,heads`: body 2 keeps AudioSet's weights (its head alone learns) while body 1
    moves; the manifest says which body is which; `evaluate` scores each alone; a mode list that does not fit
    the bodies, or a mode an AudioSet network has not, is one line on stderr."""
    import torch

    from mer_live.nn import mobilenet

    common = [*TINY, "--root", str(tmp_path / "synth"), "--cache-dir", str(tmp_path / "cache"), "--arch", "mn04",
              "--song-embedding", "--segment-seconds", "3", "--bodies", "2", "--finetune", "full,heads"]
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    result = mer_live("train", *common, "--method", "naive", "--out", str(run), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trained = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]
    audioset = mobilenet.load_weights()
    moved = [k for k, v in audioset.items()
             if not torch.equal(trained[f"backbone.members.1.body.{k}"].reshape(v.shape), v)]
    assert moved == []  # weights and batch-norm statistics: the frozen body is AudioSet's, bit for bit
    assert not torch.equal(trained["backbone.members.0.body.features.5.block.1.0.weight"],
                           audioset["features.5.block.1.0.weight"])

    exported = mer_live("export", str(run), "--out", str(bundle), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert [m["finetune"] for m in manifest["model"]["members"]] == ["full", "heads"]
    assert manifest["model"]["body_finetune"] == ["full", "heads"]
    assert "body 1 fine-tuned end to end; body 2 body frozen" in manifest["model"]["pretrained"]["weights"]
    clip = next((tmp_path / "synth").rglob("*.wav"))
    labeled = mer_live("label", str(clip), "--model", str(bundle), "--format", "json", cwd=tmp_path)
    assert labeled.returncode == 0, labeled.stderr

    out = tmp_path / "evaluation"
    evaluated = mer_live("evaluate", *common, "--methods", "naive", "--folds", "2", "--max-folds", "1",
                         "--test-hops", "1.5", "--out", str(out), cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    rows = {r["aggregation"]: r for r in json.loads((out / "evaluation.json").read_text())["results"]}
    assert {"svm", "svm @ body 1", "svm @ body 2", "svm @ body 2, hop 1.5 s"} <= set(rows)

    def quadrants(row: str) -> np.ndarray:
        return np.array(rows[row]["predictions"][0]["probs"]) > 0.5

    # a body at another hop is compared with itself at the training hop, at the training hop with the ensemble
    for row, against in (("svm @ body 2, hop 1.5 s", "svm @ body 2"), ("svm @ body 2", "svm")):
        same = (quadrants(row) == quadrants(against)).all(axis=1).mean()
        assert float(rows[row]["folds"][0]["quadrant_agreement"]) == pytest.approx(same)
    for extra, said in ((["--bodies", "3"], "one mode per body"), (["--finetune", "full,top"], "not 'top'")):
        refused = mer_live("train", *common, *extra, "--out", str(tmp_path / "x"), cwd=tmp_path)
        assert refused.returncode == 2 and said in refused.stderr and "Traceback" not in refused.stderr


def test_the_pretrained_network_beside_a_fine_tuned_one_is_the_song_stage_s_second_view(tmp_path: Path):
    """`--pretrained-view W`: training moves the fine-tuned body and never the pretrained one beside it, whose
    embedding follows the network's; the bundle's song estimate is the SVM's and the view's logistic regression's
    mix, the same through the runtime as from the pickle; wrong combinations are one line on stderr."""
    import torch

    from mer_live.api import Model
    from mer_live.nn import mobilenet
    from mer_live.runtime.bundle import load_aggregator_pickle, load_bundle

    common = [*TINY, "--root", str(tmp_path / "synth"), "--cache-dir", str(tmp_path / "cache"), "--arch", "mn04",
              "--finetune", "full", "--segment-seconds", "3", "--song-embedding"]
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    result = mer_live("train", *common, "--pretrained-view", "0.25", "--method", "naive", "--out", str(run),
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trained = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]
    audioset = mobilenet.load_weights()
    assert [k for k, v in audioset.items() if not torch.equal(trained[f"backbone.view.{k}"].reshape(v.shape), v)] == []
    moved = trained["backbone.body.features.5.block.1.0.weight"]
    assert not torch.equal(moved, audioset["features.5.block.1.0.weight"])
    alone = mer_live("train", *common, "--method", "naive", "--out", str(tmp_path / "alone"), cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr
    without = torch.load(tmp_path / "alone" / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]
    assert set(trained) - set(without) == {k for k in trained if k.startswith("backbone.view.")}
    assert all(torch.equal(without[k], trained[k]) for k in without)  # the network trained bit for bit as without

    exported = mer_live("export", str(run), "--out", str(bundle), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    opened = load_bundle(bundle)
    assert (opened.song.view, opened.song.view_dims, opened.embedding_dims) == (0.25, 384, 768)
    assert opened.manifest["model"]["view"] and "LogisticRegression" in opened.manifest["aggregator"]["kind"]
    clip = next((tmp_path / "synth").rglob("*.wav"))
    model = Model(opened)
    outputs = model.stages.segment_outputs(model.stages.decode(str(clip)).logmel)
    assert outputs.shape[1] == 2 + 768  # probabilities, the fine-tuned body's embedding, the view's
    pickled = load_aggregator_pickle(opened)
    assert pickled.view_weight == 0.25 and list(pickled.view_columns) == list(opened.song.view_columns(768))
    song = model.predict(clip)
    expected = pickled.predict_proba(opened.song_vector(outputs))[0]
    np.testing.assert_allclose([song.valence, song.arousal], expected, atol=1e-5)
    labeled = mer_live("label", str(clip), "--model", str(bundle), "--format", "json", cwd=tmp_path)
    assert labeled.returncode == 0, labeled.stderr

    # `export --without-view`: the same run without the view is the run trained without it, network and song SVM
    for source, out, extra in ((run, "plain", ["--without-view"]), (tmp_path / "alone", "alone-bundle", [])):
        exported = mer_live("export", str(source), "--out", str(tmp_path / out), *extra, cwd=tmp_path)
        assert exported.returncode == 0, exported.stderr
    plain, alone = Model(load_bundle(tmp_path / "plain")), Model(load_bundle(tmp_path / "alone-bundle"))
    assert not plain.bundle.manifest["model"]["view"] and not plain.bundle.song.view
    assert "view_left_out" in plain.bundle.manifest["model"] and "view_left_out" not in opened.manifest["model"]
    assert plain.bundle.embedding_dims == 384
    assert "LogisticRegression" not in plain.bundle.manifest["aggregator"]["kind"]
    a, b = plain.predict(clip), alone.predict(clip)
    np.testing.assert_allclose(a.segments, b.segments, atol=1e-6)
    np.testing.assert_allclose(a.segments, song.segments, atol=1e-6)
    assert (a.valence, a.arousal) == pytest.approx((b.valence, b.arousal), abs=1e-9)
    svm_alone = load_aggregator_pickle(plain.bundle).predict_proba(plain.bundle.song_vector(outputs[:, :2 + 384]))
    np.testing.assert_allclose([a.valence, a.arousal], svm_alone[0], atol=1e-5)
    refused = mer_live("export", str(tmp_path / "alone"), "--out", str(tmp_path / "z"), "--without-view", cwd=tmp_path)
    assert refused.returncode != 0 and "no pretrained view" in refused.stderr and "Traceback" not in refused.stderr

    for extra, said in ((["--pretrained-view", "1"], "0 < W < 1"), (["--pretrained-view", "0.25", "--bodies", "2"],
                        "one body"), (["--pretrained-view", "0.25", "--finetune", "heads"], "--finetune full")):
        refused = mer_live("train", *common, *extra, "--out", str(tmp_path / "x"), cwd=tmp_path)
        assert refused.returncode == 2 and said in refused.stderr and "Traceback" not in refused.stderr
    plain = [a for a in common if a != "--song-embedding"]
    refused = mer_live("evaluate", *plain, "--pretrained-view", "0.25", "--out", str(tmp_path / "y"), cwd=tmp_path)
    assert refused.returncode == 2 and "--song-embedding" in refused.stderr and "Traceback" not in refused.stderr


def test_co_divide_trains_two_networks_together_and_scores_each(tmp_path: Path):
    """`--co-divide --bodies 2` under SSSL: the two networks train in lockstep (a history row per network and
    epoch, one loop checkpoint holding both), the run is the ensemble (its manifest says how its members were
    trained), and `evaluate` scores each network alone beside it; without two bodies, or with --ema, it is
    refused in one line."""
    import torch

    common = [*TINY, "--root", str(tmp_path / "synth"), "--cache-dir", str(tmp_path / "cache"), "--arch", "mn04",
              "--finetune", "full", "--song-embedding", "--lr-warmup-epochs", "0.5", "--segment-seconds", "3",
              "--bodies", "2", "--co-divide"]
    out = tmp_path / "run"
    result = mer_live("train", *common, "--method", "sssl", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [(row["epoch"], row["body"], row["phase"]) for row in history] == [
        (1, 1, "warmup"), (1, 2, "warmup"), (2, 1, "sssl"), (2, 2, "sssl")]
    loop = torch.load(out / "checkpoint.co-divide.pt", map_location="cpu", weights_only=False)
    assert len(loop["peers"]) == 1 and loop["epoch"] == 1
    model = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]
    key = "body.features.5.block.1.0.weight"
    assert not torch.equal(model[f"backbone.members.0.{key}"], model[f"backbone.members.1.{key}"])
    bundle = tmp_path / "bundle"
    exported = mer_live("export", str(out), "--out", str(bundle), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    members = json.loads((bundle / "bundle.json").read_text())["model"]["members"]
    assert [m["seed"] for m in members] == [0, 0] and all("co-divide" in m["note"] for m in members)

    evaluated = mer_live("evaluate", *common, "--methods", "sssl", "--folds", "2", "--max-folds", "1",
                         "--out", str(tmp_path / "evaluation"), cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads((tmp_path / "evaluation" / "evaluation.json").read_text())
    assert {"svm", "svm @ body 1", "svm @ body 2"} <= {r["aggregation"] for r in report["results"]}
    assert report["train"]["co_divide"] is True
    for extra in (["--bodies", "1"], ["--ema", "0.99"]):
        refused = mer_live("train", *common, *extra, "--out", str(tmp_path / "x"), cwd=tmp_path)
        assert refused.returncode == 2 and "--co-divide" in refused.stderr and "Traceback" not in refused.stderr


def test_the_song_svm_fits_on_as_many_other_recordings_as_asked():
    """``--svm-copies K``: the SVM sees the clean songs and the first K other versions, so its support
    vectors (the bundle's size) come from those rows only; by default it sees every version."""
    from mer_live.config import DEFAULT_SONG
    from mer_live.train.trainer import Fitted, fit_aggregator

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (40, len(DEFAULT_SONG.tasks)))
    clean = rng.normal(size=(40, 6)) + labels[:, :1]
    others = [clean + rng.normal(0, 0.3, clean.shape) for _ in range(2)]
    fitted = Fitted(None, None, "naive", None, [], {}, [], features=clean, other_features=others)
    for copies, rows in ((0, 40), (1, 80), (None, 120)):
        svm = fit_aggregator(fitted, labels, DEFAULT_SONG, 0, copies).models[DEFAULT_SONG.tasks[0]]
        assert svm[0].n_samples_seen_ == rows
        assert svm[-1].n_support_.sum() <= rows


def test_inner_folds_by_song_see_through_a_song_svm_that_memorises_recordings():
    """A recording through the air is nearly its clean song: inner folds drawn over rows (the shipped song SVM's)
    score an SVM that memorises songs as accurate, inner folds that keep a song's rows together
    (``groups``, scripts/song_aggregators.py's rows "inner folds by song") see chance on labels nothing predicts."""
    from mer_live.aggregate import SongAggregator
    from mer_live.config import DEFAULT_SONG

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, (120, len(DEFAULT_SONG.tasks)))
    clean = rng.normal(size=(120, 8))
    x, y = np.concatenate([clean, clean + rng.normal(0, 0.05, clean.shape)]), np.concatenate([labels, labels])
    by_row = SongAggregator(list(DEFAULT_SONG.tasks)).fit(x, y)
    by_song = SongAggregator(list(DEFAULT_SONG.tasks)).fit(x, y, groups=np.tile(np.arange(120), 2))
    assert min(by_row.inner_accuracy.values()) > 0.8 and max(by_song.inner_accuracy.values()) < 0.65
    assert {p["C"] for p in by_row.best_params.values()} == {100.0}  # the largest C: memorising pays on such folds


def test_a_finished_run_resumes_with_a_song_svm_on_fewer_recordings(tmp_path: Path):
    """``--svm-copies`` changes the song stage only: a finished run resumed with it keeps its network and
    refits the SVM on the clean songs alone, and its config.json says so."""
    import pickle

    import torch

    from mer_live.train import rundir

    out = tmp_path / "run"
    args = [*TINY, "--root", str(tmp_path / "synth"), "--segment-seconds", "2", "--air-copies", "1",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]

    def rows_seen() -> int:
        aggregator = pickle.loads((out / rundir.AGGREGATOR).read_bytes())
        return aggregator.models["valence"][0].n_samples_seen_

    first = mer_live("train", *args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    network = torch.load(out / rundir.CHECKPOINT, weights_only=False)["model"]
    assert rows_seen() == 32  # 16 songs, clean and through the air
    again = mer_live("train", *args, "--svm-copies", "0", "--resume", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert rows_seen() == 16
    kept = torch.load(out / rundir.CHECKPOINT, weights_only=False)["model"]
    assert all(torch.equal(network[k], kept[k]) for k in network)
    assert json.loads((out / rundir.CONFIG).read_text())["train"]["svm_copies"] == 0
    other = mer_live("train", *args, "--resume", "--air-copies", "2", cwd=tmp_path)
    assert other.returncode == 2 and "air_copies 1 -> 2" in other.stderr  # the network's data may not change


MOODS = {"Q1": "happy; exciting", "Q2": "angry; tense", "Q3": "sad; gloomy", "Q4": "calm; soothing"}


def tagged_4q_tree(root: Path, clips: int) -> Path:
    """A 4Q download of generated clips: Q1-Q4 folders, the annotations and the metadata with two mood tags per
    quadrant and one tag of the song's own (too rare for a mood vocabulary)."""
    import csv

    from mer_live.train.synth import make_synth_corpus

    make_synth_corpus(root / "made", clips, seconds=6.0, sr=32000, seed=5)
    rows = list(csv.DictReader((root / "made" / "manifest.csv").open()))
    base = root / "MER_audio_taffc_dataset"
    base.mkdir()
    with (base / "panda_dataset_taffc_annotations.csv").open("w", newline="") as a, \
            (base / "panda_dataset_taffc_metadata.csv").open("w", newline="") as m:
        annotations, metadata = csv.writer(a), csv.writer(m)
        annotations.writerow(["Song", "Quadrant"])
        metadata.writerow(["Song", "Quadrant", "MoodsStrSplit"])
        for row in rows:
            (base / row["quadrant"]).mkdir(exist_ok=True)
            (root / "made" / row["path"]).rename(base / row["quadrant"] / f"{row['song_id']}.wav")
            annotations.writerow([row["song_id"], row["quadrant"]])
            metadata.writerow([row["song_id"], row["quadrant"], f"{MOODS[row['quadrant']]}; Own {row['song_id']}"])
    return base


def test_mood_tags_train_a_second_head_on_the_songs_tags_and_leave_the_bundle_s_outputs_alone(tmp_path: Path):
    """`--mood-tags W` on a 4Q tree whose metadata tags every song: the run's model names the tags enough songs
    carry (not each song's own), the history logs the term, the saved network loads with its mood head, whose
    top tags on the training clips are their quadrant's more often than chance while the task heads' logits are
    the same with it as without; the bundle exports (ONNX checked against the task heads), names the tags and
    labels a file; a network without an AudioSet embedding, or songs without tags,
    are refused in one line."""
    import torch

    from mer_live.audio.read import load_audio
    from mer_live.train.rundir import open_run

    root = tagged_4q_tree(tmp_path, 20)
    common = ["--dataset", "4q", "--root", str(root), "--cache-dir", str(tmp_path / "cache"), "--arch", "mn04",
              "--finetune", "full", "--segment-seconds", "3", "--method", "naive", "--epochs", "3",
              "--batch-size", "8", "--lr", "1e-2", "--threads", "2"]
    result = mer_live("train", *common, "--mood-tags", "1", "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = open_run(tmp_path / "run")
    assert run.model_config.moods == tuple(sorted(t.strip() for v in MOODS.values() for t in v.split(";")))
    assert all(row["moods"] > 0 for row in run.metrics()["history"])
    net = run.load_model()
    hits = []
    for quadrant in MOODS:
        for clip in sorted((root / quadrant).glob("*.wav")):
            audio = torch.from_numpy(load_audio(clip, net.audio.sample_rate)[None, : net.audio.segment_samples])
            with torch.no_grad():
                logits, moods = net.backbone(net.frontend(audio), moods=True)
            top = {run.model_config.moods[k] for k in moods[0].topk(2).indices.tolist()}
            hits.append(len(top & {t.strip() for t in MOODS[quadrant].split(";")}))
            assert torch.equal(logits, net.backbone(net.frontend(audio)))
    assert np.mean(hits) > 0.5, hits  # chance: 2 of 8 tags drawn, 2 of them right, 0.5 on average
    exported = mer_live("export", str(tmp_path / "run"), "--out", str(tmp_path / "bundle"), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr  # ONNX within tolerance of the task heads' PyTorch outputs
    assert json.loads((tmp_path / "bundle" / "bundle.json").read_text())["model"]["moods"] == list(
        run.model_config.moods)
    labeled = mer_live("label", str(clip), "--model", str(tmp_path / "bundle"), "--format", "jsonl", cwd=tmp_path)
    assert labeled.returncode == 0, labeled.stderr
    assert json.loads(labeled.stdout.splitlines()[0])["quadrant"] in MOODS
    refused = mer_live("train", *TINY, "--root", str(tmp_path / "synth"), "--mood-tags", "1", "--out",
                       str(tmp_path / "x"), cwd=tmp_path)
    assert refused.returncode == 2 and "--arch mn04" in refused.stderr and "Traceback" not in refused.stderr
    untagged = mer_live("train", *TINY, "--root", str(tmp_path / "synth"), "--arch", "mn04", "--finetune", "full",
                        "--mood-tags", "1", "--out", str(tmp_path / "y"), cwd=tmp_path)
    assert untagged.returncode == 2 and "mood tags" in untagged.stderr and "Traceback" not in untagged.stderr


def test_a_mood_head_learns_the_annotated_quadrant_as_four_classes(tmp_path: Path):
    """`--mood-tags W --mood-source quadrant`: the mood head's classes are the four quadrants and every song's
    target is its annotated one, so songs without mood tags train it (synth has none); it learns them, above
    chance on the training clips; the source without a head to learn it is refused in one line."""
    import torch

    from mer_live.audio.read import load_audio
    from mer_live.train.datasets import load_dataset
    from mer_live.train.labels import quadrant_of
    from mer_live.train.rundir import open_run
    from mer_live.train.settings import TrainConfig
    from mer_live.train.trainer import song_moods

    common = [*TINY, "--root", str(tmp_path / "synth"), "--cache-dir", str(tmp_path / "cache"), "--arch", "mn04",
              "--finetune", "full", "--segment-seconds", "3", "--method", "naive", "--epochs", "3", "--lr", "1e-2"]
    result = mer_live("train", *common, "--mood-tags", "1", "--mood-source", "quadrant", "--out", str(tmp_path / "run"),
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = open_run(tmp_path / "run")
    assert run.model_config.moods == ("Q1", "Q2", "Q3", "Q4")
    assert all(row["moods"] > 0 for row in run.metrics()["history"])
    clips = load_dataset("synth", tmp_path / "synth").clips
    targets = song_moods(clips, [0, 1], TrainConfig(mood_source="quadrant"))
    assert targets == [(quadrant_of(c.labels),) for c in clips[:2]]
    net = run.load_model()
    hits = []
    for clip in clips:
        audio = torch.from_numpy(load_audio(clip.path, net.audio.sample_rate)[None, : net.audio.segment_samples])
        with torch.no_grad():
            _, moods = net.backbone(net.frontend(audio), moods=True)
        hits.append(run.model_config.moods[int(moods[0].argmax())] == quadrant_of(clip.labels))
    assert np.mean(hits) > 0.4, hits  # chance: 0.25
    refused = mer_live("train", *TINY, "--root", str(tmp_path / "synth"), "--mood-source", "quadrant", "--out",
                       str(tmp_path / "x"), cwd=tmp_path)
    assert refused.returncode == 2 and "add --mood-tags W" in refused.stderr and "Traceback" not in refused.stderr


def test_distillation_keeps_the_fine_tuned_body_s_audioset_tags_near_the_pretrained_network(tmp_path: Path):
    """`--distill W` (Learning without Forgetting): the same tiny mn04 run with and without it, seeded alike; with
    it the history logs the term, and the fine-tuned body's own AudioSet tags on the training clips stay nearer
    the pretrained network's than without; SSSL's steps distil too; a network that has no AudioSet tags is
    refused in one line."""
    import torch

    from mer_live.audio.read import load_audio
    from mer_live.nn import mobilenet
    from mer_live.train.losses import bernoulli_kl
    from mer_live.train.rundir import open_run

    common = [*TINY, "--root", str(tmp_path / "synth"), "--cache-dir", str(tmp_path / "cache"), "--arch", "mn04",
              "--finetune", "full", "--lr", "1e-2", "--lr-warmup-epochs", "0.5", "--segment-seconds", "3",
              "--method", "naive"]
    reference = mobilenet.pretrained()
    drift = {}
    for name, extra in (("plain", []), ("distilled", ["--distill", "3"])):
        result = mer_live("train", *common, "--out", str(tmp_path / name), *extra, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        run = open_run(tmp_path / name)
        assert (run.metrics()["history"][-1].get("distill", 0) > 0) == bool(extra)
        net = run.load_model()
        clips = sorted((tmp_path / "synth").rglob("*.wav"))
        audio = torch.from_numpy(np.stack([load_audio(c, net.audio.sample_rate)[: net.audio.segment_samples]
                                           for c in clips[:8]]))
        with torch.no_grad():
            logmel = net.frontend(audio)
            _, tags = net.backbone(logmel, tags=True)
            drift[name] = bernoulli_kl(tags, torch.sigmoid(reference(mobilenet.normalize(logmel)))).item()
    assert 0 < drift["distilled"] < drift["plain"], drift
    sssl = mer_live("train", *common[:-1], "sssl", "--distill", "3", "--out", str(tmp_path / "sssl"), cwd=tmp_path)
    assert sssl.returncode == 0, sssl.stderr
    last = open_run(tmp_path / "sssl").metrics()["history"][-1]
    assert last["phase"] == "sssl" and last["distill"] > 0
    refused = mer_live("train", *TINY, "--root", str(tmp_path / "synth"), "--distill", "1", "--out",
                       str(tmp_path / "x"), cwd=tmp_path)
    assert refused.returncode == 2 and "--arch mn04" in refused.stderr and "Traceback" not in refused.stderr


def test_evaluate_refuses_interpolation_without_one_fine_tuned_audioset_network(tmp_path: Path):
    """``--interpolate A`` moves a fine-tuned AudioSet body back towards its pretrained weights: refused in one
    line for another network, a frozen body, an ensemble, a share outside [0, 1) or a word, before any data is
    made."""
    common = ["evaluate", *TINY, "--root", str(tmp_path / "synth"), "--out", str(tmp_path / "out")]
    for extra, named in ((("--arch", "compact"), "--arch mn04 --finetune full"),
                         (("--arch", "mn04", "--finetune", "heads"), "--arch mn04 --finetune full"),
                         (("--arch", "mn04", "--finetune", "full", "--bodies", "2"), "--arch mn04 --finetune full"),
                         (("--arch", "mn04", "--finetune", "full", "--interpolate", "1"), "0 <= A < 1"),
                         (("--arch", "mn04", "--finetune", "full", "--interpolate", "half"), "0.5")):
        refused = mer_live(*common, "--interpolate", "0.5", *extra, cwd=tmp_path)
        assert refused.returncode == 2 and named in refused.stderr, (extra, refused.stderr)
        assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "synth").exists() and not (tmp_path / "out").exists()
