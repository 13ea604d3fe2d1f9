"""Export: the bundle's ONNX graphs reproduce the run's PyTorch model and pickled aggregator."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from harness.tiny import make_tiny_run
from mer_live.aggregate import SongAggregator
from mer_live.errors import MerLiveError
from mer_live.export.aggregator_onnx import aggregator_to_onnx, run_aggregator_onnx
from mer_live.export.exporter import export_run
from mer_live.nn.frontend import LogMel
from mer_live.nn.model import SegmentProbabilities
from mer_live.runtime.bundle import load_aggregator_pickle, load_bundle
from mer_live.stats import feature_names
from mer_live.train.rundir import open_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_run(tmp_path_factory.mktemp("run") / "run")


@pytest.fixture(scope="module")
def bundle_dir(run_dir: Path) -> Path:
    return export_run(run_dir, run_dir.with_name("bundle"), log=lambda message: None)


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def torch_probs(run_dir: Path, audio: np.ndarray) -> np.ndarray:
    run = open_run(run_dir)
    with torch.no_grad():
        return SegmentProbabilities(run.load_model(), run.model_config.tasks)(torch.from_numpy(audio)).numpy()


def test_round_trip_matches_pytorch_and_pickle(run_dir: Path, bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    audio = np.load(run_dir / "verify_audio.npy")
    expected = torch_probs(run_dir, audio)
    assert expected.std(axis=0).min() > 0.05  # the tiny model's outputs vary, so equality means something
    probs = session(bundle.file("segment.onnx")).run(["probs"], {"audio": audio})[0]
    np.testing.assert_allclose(probs, expected, atol=1e-4)
    logmel = session(bundle.file("frontend.onnx")).run(["logmel"], {"audio": audio})[0]
    assert logmel.shape == (len(audio), bundle.audio.n_mels, bundle.audio.segment_frames)
    chained = session(bundle.file("backbone.onnx")).run(["probs"], {"logmel": logmel})[0]
    np.testing.assert_allclose(chained, expected, atol=1e-4)

    features = np.load(run_dir / "verify_features.npy")
    reference = open_run(run_dir).load_aggregator().predict_proba(features)
    song = run_aggregator_onnx(str(bundle.file("aggregator.onnx")), features)
    np.testing.assert_allclose(song, reference, atol=1e-5)
    np.testing.assert_array_equal(song > 0.5, reference > 0.5)
    np.testing.assert_array_equal(load_aggregator_pickle(bundle).predict_proba(features), reference)


@pytest.mark.parametrize("seconds", [1.0, 4.3])
def test_graphs_take_any_length_and_batch(run_dir: Path, bundle_dir: Path, seconds: float) -> None:
    rng = np.random.default_rng(1)
    audio = (0.2 * rng.standard_normal((3, int(seconds * 22050)))).astype(np.float32)
    expected = torch_probs(run_dir, audio)
    probs = session(bundle_dir / "segment.onnx").run(["probs"], {"audio": audio})[0]
    one = session(bundle_dir / "segment.onnx").run(["probs"], {"audio": audio[:1]})[0]
    np.testing.assert_allclose(probs, expected, atol=1e-4)
    np.testing.assert_allclose(one, expected[:1], atol=1e-4)
    logmel = session(bundle_dir / "frontend.onnx").run(["logmel"], {"audio": audio})[0]
    chained = session(bundle_dir / "backbone.onnx").run(["probs"], {"logmel": logmel})[0]
    np.testing.assert_allclose(chained, expected, atol=1e-4)


def test_manifest_describes_the_bundle(bundle_dir: Path) -> None:
    manifest = load_bundle(bundle_dir).manifest
    assert manifest["tasks"] == ["valence", "arousal"]
    assert set(manifest["files"]) == {"segment.onnx", "frontend.onnx", "backbone.onnx",
                                      "aggregator.onnx", "aggregator.pkl"}
    assert manifest["outputs"]["segment.onnx"]["outputs"][0]["columns"] == ["valence", "arousal"]
    assert "valence is high" in manifest["outputs"]["segment.onnx"]["outputs"][0]["meaning"]["valence"]
    aggregator = manifest["aggregator"]
    assert (manifest["song"]["theta"], manifest["song"]["horizon"]) == (0.5, 30.0)
    assert aggregator["feature_names"] == feature_names(["valence", "arousal"])
    assert set(aggregator["best_params"]) == {"valence", "arousal"}
    assert manifest["model"]["parameters"] > 0 and manifest["model"]["macs_per_segment"] > 0
    assert manifest["training"]["metrics"]["protocol"]
    assert {"torch", "onnx", "onnxruntime", "sklearn", "skl2onnx", "mer_live"} <= set(manifest["versions"])
    check = manifest["verification"]
    assert check["segment_onnx_vs_torch_max_abs"] <= 1e-4
    assert check["frontend_backbone_onnx_vs_torch_max_abs"] <= 1e-4
    assert check["aggregator_onnx_vs_pickle_max_abs"] <= 1e-5


def test_aggregator_graph_matches_predict_proba_where_float32_svm_does_not() -> None:
    """C=100, gamma=1e-3: ONNX-ML's float SVMClassifier was 1.6e-5 off here; the float64 graph is not."""
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, (150, 14))
    y = (x[:, 2] + 0.1 * rng.standard_normal(150) > 0.5).astype(int)
    aggregator = SongAggregator(["valence", "arousal"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        for task, gamma in (("valence", 1e-3), ("arousal", 0.1)):
            svc = SVC(kernel="rbf", C=100.0, gamma=gamma, probability=True, random_state=0)
            aggregator.models[task] = make_pipeline(StandardScaler(), svc).fit(x, y)
    probe = np.concatenate([x, rng.uniform(-1, 2, (300, 14))])  # far points too: P near 0 and 1
    reference = aggregator.predict_proba(probe.astype(np.float32).astype(np.float64))
    song = run_aggregator_onnx(aggregator_to_onnx(aggregator, 14), probe)
    assert np.abs(song - reference).max() < 1e-6
    np.testing.assert_array_equal(song > 0.5, reference > 0.5)


def test_the_coupling_stops_within_the_rounds_the_graph_unrolls(monkeypatch: pytest.MonkeyPatch) -> None:
    """libsvm's k=2 coupling, started at p = (1/2, 1/2), has stopped after ``COUPLING_ROUNDS`` for every clipped
    pairwise probability: more rounds change no bit, and one round fewer does change some."""
    from mer_live.export import aggregator_onnx as graph

    edge = torch.logspace(-7, float(np.log10(0.5)), 200_000, dtype=torch.float64)
    r = torch.cat([torch.linspace(graph.MIN_PROB, 1 - graph.MIN_PROB, 2_000_001, dtype=torch.float64), edge, 1 - edge])
    unrolled = graph._couple_two(r)
    monkeypatch.setattr(graph, "COUPLING_ROUNDS", graph.COUPLING_ROUNDS + 3)
    assert torch.equal(graph._couple_two(r), unrolled)
    monkeypatch.setattr(graph, "COUPLING_ROUNDS", graph.COUPLING_ROUNDS - 4)
    assert not torch.equal(graph._couple_two(r), unrolled)


def test_a_second_view_mixes_a_logistic_regression_into_the_song_svm_and_its_graph_agrees() -> None:
    """`SongConfig.view`: the view's columns (the last `view_dims` of the embedding's mean and of its std) feed a
    logistic regression, the rest the SVM; the estimate is the fixed mix of the two, in the pickle and in
    aggregator.onnx alike. Here the label lives in the view's columns only, so the mix must beat the SVM alone."""
    from mer_live.config import SongConfig
    from mer_live.stats import embedding_statistics, song_vector

    song = SongConfig(embedding=True, view=0.4, view_dims=3)
    rng = np.random.default_rng(2)
    own, view = rng.standard_normal((9, 5)), rng.standard_normal((9, 3))
    vector = song_vector(rng.uniform(0, 1, (9, 2)), np.concatenate([own, view], axis=1))
    np.testing.assert_array_equal(vector[song.view_columns(8)], embedding_statistics(view))
    with pytest.raises(ValueError, match="view_dims"):
        SongConfig(embedding=True, view=0.4)

    n = 240
    x = rng.standard_normal((n, song.n_features(8)))
    columns = song.view_columns(8)
    y = np.stack([x[:, columns[0]] + 0.3 * rng.standard_normal(n) > 0, x[:, columns[4]] > 0], axis=1).astype(int)
    mixed = SongAggregator(["valence", "arousal"], view_columns=columns, view_weight=song.view).fit(x[:160], y[:160])
    alone = SongAggregator(["valence", "arousal"]).fit(np.delete(x[:160], columns, axis=1), y[:160])
    test, truth = x[160:], y[160:]
    assert ((mixed.predict_proba(test) > 0.5) == truth).mean() > ((alone.predict_proba(np.delete(test, columns, axis=1))
                                                                    > 0.5) == truth).mean() + 0.1
    svm = np.stack([mixed.models[t].predict_proba(np.delete(test, columns, axis=1))[:, 1] for t in mixed.tasks], 1)
    heard = np.stack([mixed.view_models[t].predict_proba(test[:, columns])[:, 1] for t in mixed.tasks], 1)
    np.testing.assert_allclose(mixed.predict_proba(test), 0.6 * svm + 0.4 * heard)
    assert {"C", "gamma", "view_C"} <= set(mixed.best_params["valence"])
    song_graph = run_aggregator_onnx(aggregator_to_onnx(mixed, x.shape[1]), test)
    assert np.abs(song_graph - mixed.predict_proba(test.astype(np.float32).astype(np.float64))).max() < 1e-6
    svm_alone = SongAggregator(["valence", "arousal"], view_columns=columns, view_weight=0.0).fit(x[:160], y[:160])
    np.testing.assert_allclose(svm_alone.predict_proba(test), alone.predict_proba(np.delete(test, columns, axis=1)))
    graph_alone = run_aggregator_onnx(aggregator_to_onnx(svm_alone, x.shape[1]), test)
    assert np.abs(graph_alone - svm_alone.predict_proba(test.astype(np.float32).astype(np.float64))).max() < 1e-6
    with pytest.raises(ValueError, match="columns"):
        SongAggregator(["valence"], view_weight=0.5)


def test_int8_variant_is_measured(run_dir: Path, tmp_path: Path) -> None:
    out = export_run(run_dir, tmp_path / "int8", variants=["int8"], log=lambda message: None)
    manifest = load_bundle(out).manifest
    info = manifest["variants"]["int8"]
    assert info["file"] in manifest["files"] and (out / info["file"]).is_file()
    assert 0 <= info["max_abs_prob_change_vs_fp32"] <= 1


def test_refuses_non_empty_out_without_force(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(MerLiveError, match="--force"):
        export_run(run_dir, out, log=lambda message: None)
    assert (out / "keep.txt").read_text() == "mine"
    export_run(run_dir, out, force=True, log=lambda message: None)
    assert not (out / "keep.txt").exists() and load_bundle(out).tasks == ["valence", "arousal"]
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no temporary folders left


def test_missing_verification_data_is_refused(run_dir: Path, tmp_path: Path) -> None:
    run = make_tiny_run(tmp_path / "run")
    (run / "verify_audio.npy").unlink()
    with pytest.raises(MerLiveError, match="verify_audio.npy"):
        export_run(run, tmp_path / "bundle", log=lambda message: None)
    assert not (tmp_path / "bundle").exists()


def mer_live(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mer_live", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_cli_bad_run_dir_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    result = mer_live("export", str(tmp_path / "no-run"), "--out", str(tmp_path / "bundle"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a finished training run" in lines[0]
    assert not (tmp_path / "bundle").exists()


def test_cli_exports_and_refuses_to_overwrite(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    first = mer_live("export", str(run_dir), "--out", str(out))
    assert first.returncode == 0, first.stderr
    assert "segment.onnx" in first.stdout and load_bundle(out)
    second = mer_live("export", str(run_dir), "--out", str(out))
    assert second.returncode == 2
    assert second.stderr.strip().splitlines() == [f"mer-live: error: {out}: directory is not empty; "
                                                  "pass --force to replace it"]
    assert json.loads((out / "bundle.json").read_text())["format"] == "mer-live-bundle"


def test_manifest_carries_the_run_song_config(run_dir: Path, bundle_dir: Path) -> None:
    manifest = load_bundle(bundle_dir).manifest
    config = json.loads((run_dir / "config.json").read_text())
    assert manifest["song"] == open_run(run_dir).song.to_dict() == config["song"]


def test_a_run_of_the_real_trainer_exports_loads_and_labels(tmp_path: Path) -> None:
    """`mer-live train`'s own code path on a tiny synthetic corpus, then export, load_bundle and a prediction."""
    import mer_live
    from mer_live.config import AudioConfig, SongConfig
    from mer_live.nn.model import ModelConfig
    from mer_live.train.command import prepare_data, train_run
    from mer_live.train.settings import DataConfig, RunSettings, TrainConfig

    torch.set_num_threads(2)
    audio = AudioConfig(segment_seconds=2.0)
    data = DataConfig(dataset="synth", root=tmp_path / "synth", cache_dir=tmp_path / "cache", synth_clips=12,
                      synth_seconds=5.0, workers=1)
    cfg = TrainConfig(epochs=2, warmup_epochs=1, batch_size=16, device="cpu")
    dataset, clips, logmels = prepare_data(data, audio)
    run = train_run(RunSettings(tmp_path / "run"), data, cfg, audio, ModelConfig(arch="compact"), SongConfig(),
                    dataset, clips, logmels)
    config = json.loads((run / "config.json").read_text())
    assert config["song"]["horizon"] == pytest.approx(5.0, abs=0.2)  # the measured median clip length
    bundle = load_bundle(export_run(run, tmp_path / "bundle", log=lambda message: None))
    assert bundle.song == SongConfig.from_dict(config["song"]) and bundle.audio == audio
    sr = audio.sample_rate
    t = np.arange(6 * sr) / sr
    result = mer_live.load(bundle.path).predict((0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), sr)
    assert 0 <= result.valence <= 1 and 0 <= result.arousal <= 1 and result.quadrant in ("Q1", "Q2", "Q3", "Q4")


def test_upgrade_bundle_rebuilds_the_graphs_without_weights_checks_them_and_rehashes(
        bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """scripts/upgrade_bundle.py on a bundle made "older" (an all-float64 song graph, a front end exported at
    another opset, segment.onnx's tensors in a file beside it): it rebuilds the front end, segment.onnx and the song
    graph, checks them through the runtime on real songs first, and re-hashes; a file that does not decode is
    skipped, a tampered bundle refused in one line, the file only the old segment.onnx read is removed, and a
    second run finds nothing to do."""
    import shutil

    import soundfile as sf

    from mer_live.export import aggregator_onnx
    from mer_live.runtime.bundle import write_manifest

    bundle = tmp_path / "bundle"
    shutil.copytree(bundle_dir, bundle)
    old = load_bundle(bundle)
    monkeypatch.setattr(aggregator_onnx, "FLOAT32_BUDGET", -1.0)  # every product in float64, as releases before
    (bundle / "aggregator.onnx").write_bytes(aggregator_to_onnx(load_aggregator_pickle(old), old.n_features))
    example = torch.zeros(2, old.audio.segment_samples)
    torch.onnx.export(LogMel(old.audio).eval(), (example,), str(bundle / "frontend.onnx"),
                      input_names=["audio"], output_names=["logmel"], opset_version=18, dynamo=False,
                      dynamic_axes={"audio": {0: "batch", 1: "samples"}, "logmel": {0: "batch", 2: "frames"}})
    # segment.onnx's tensors in a file beside it, as the direct-DFT bundles kept theirs (stft_kernels.bin)
    onnx.save(onnx.load(str(bundle / "segment.onnx")), str(bundle / "segment.onnx"), save_as_external_data=True,
              location="stft_kernels.bin", size_threshold=0)
    manifest = {k: v for k, v in old.manifest.items() if k not in ("format", "format_version")}
    write_manifest(bundle, manifest | {"files": [*manifest["files"], "stft_kernels.bin"]})
    sr = old.audio.sample_rate
    rng = np.random.default_rng(3)
    songs = []
    for i in range(3):
        t = np.arange(int(sr * (4 + i))) / sr
        path = tmp_path / f"song{i}.wav"
        sf.write(path, (0.3 * np.sin(2 * np.pi * (220 + 110 * i) * t) + 0.05 * rng.standard_normal(len(t))), sr)
        songs.append(str(path))
    (tmp_path / "broken.wav").write_bytes(b"not audio")

    def upgrade() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "scripts/upgrade_bundle.py", str(bundle), *songs,
                               str(tmp_path / "broken.wav")], cwd=REPO, capture_output=True, text=True)

    older = (bundle / "aggregator.onnx").read_bytes()
    (bundle / "aggregator.onnx").write_bytes(b"tampered")
    done = upgrade()
    assert done.returncode != 0 and "aggregator.onnx" in done.stderr and "Traceback" not in done.stderr
    (bundle / "aggregator.onnx").write_bytes(older)
    done = upgrade()
    assert done.returncode == 0, done.stderr
    assert "broken.wav: skipped" in done.stdout
    upgraded = load_bundle(bundle)  # every hash checks
    figures = upgraded.manifest["verification"]["upgraded"]
    assert figures["rebuilt"] == ["frontend.onnx", "segment.onnx", "aggregator.onnx"] and figures["songs"] == 3
    assert figures["removed"] == ["stft_kernels.bin"] and not (bundle / "stft_kernels.bin").exists()
    assert "stft_kernels.bin" not in upgraded.manifest["files"]
    assert figures["song_graph_vs_pickle_max_abs"] <= 1e-5 and figures["segment_vs_frontend_backbone_max_abs"] <= 1e-4
    assert (bundle / "backbone.onnx").read_bytes() == (bundle_dir / "backbone.onnx").read_bytes()
    assert (bundle / "aggregator.onnx").read_bytes() == (bundle_dir / "aggregator.onnx").read_bytes()
    features = np.load(bundle_dir.parent / "run" / "verify_features.npy")
    np.testing.assert_allclose(run_aggregator_onnx(str(upgraded.file("aggregator.onnx")), features),
                               load_aggregator_pickle(upgraded).predict_proba(features), atol=1e-5)
    assert "nothing to do" in upgrade().stdout
