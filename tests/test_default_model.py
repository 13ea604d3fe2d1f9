"""The packaged default model: shipped inside the package, found and loaded without --model."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mer_live.runtime.bundle import DEFAULT_BUNDLE, PACKAGED, load_bundle
from tests.conftest import REPO


def test_default_bundle_loads_and_verifies():
    bundle = load_bundle(None)
    assert bundle.path == DEFAULT_BUNDLE
    assert bundle.tasks == ["valence", "arousal"]
    assert bundle.manifest["training"]["dataset"]["name"] == "4q"
    assert bundle.manifest["model"]["arch"] == "mn04" and bundle.manifest["aggregator"]["embedding_dims"] == 768


@pytest.mark.parametrize(("name", "total_mib"), [("default", 17), ("fast", 13)])
def test_packaged_tiers_are_a_few_megabytes(name: str, total_mib: int):
    """Most of a tier is its song SVMs' support vectors (fit on the clean songs and one recording of each,
    --svm-copies 1) and its networks (the default's graphs hold two mn04s); every file stays under 5 MiB."""
    bundle = load_bundle(name)
    sizes = {file: (bundle.path / file).stat().st_size for file in bundle.manifest["files"]}
    assert max(sizes.values()) < 5 * 2**20 and sum(sizes.values()) < total_mib * 2**20, sizes


def test_wheel_ships_every_packaged_bundle(tmp_path: Path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("mer_live-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for packaged, folder in PACKAGED.items():
        manifest = json.loads((folder / "bundle.json").read_text())
        for name in [*manifest["files"], "bundle.json"]:
            assert f"mer_live/models/{packaged}/{name}" in names, (packaged, name)


def test_installed_package_labels_without_model_flag(tmp_path: Path, write_audio):
    t = np.arange(22050 * 5) / 22050
    path = write_audio("tone.wav", (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 22050)
    result = subprocess.run([sys.executable, "-m", "mer_live", "label", str(path), "--format", "json"],
                            capture_output=True, text=True, cwd=tmp_path)  # outside the repo: the installed package
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["files"]
    assert rows[0]["segments"] >= 1 and 0 <= rows[0]["valence"] <= 1 and rows[0]["quadrant"] in {"Q1", "Q2", "Q3", "Q4"}


def test_packaged_compact_model_is_there_by_name(tmp_path: Path, write_audio):
    """`--model compact`: the fastest model ships beside the default, at its own front end (22.05 kHz)."""
    bundle = load_bundle("compact")
    assert bundle.manifest["model"]["arch"] == "compact" and bundle.audio.sample_rate == 22050
    t = np.arange(22050 * 5) / 22050
    path = write_audio("tone.wav", (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 22050)
    result = subprocess.run([sys.executable, "-m", "mer_live", "label", str(path), "--model", "compact", "--format",
                             "json"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model"].endswith("compact")


def test_default_is_the_fine_tuned_audioset_network(tmp_path: Path):
    """The default: mn04 fine-tuned end to end and through the air (two recorded copies of every clip, 30 % of them
    through a telephone's band, consistency weight 1; the song SVM on the clean songs and the first copy), with the
    pretrained mn04 beside it as the song stage's second view (a quarter of the song estimate), at the AudioSet
    front end (32 kHz), with its MIT notice, trained on 3 s windows every 3 s and labeling with them every second;
    a real input at 44.1 kHz is resampled and labeled."""
    bundle = load_bundle("default")
    model = bundle.manifest["model"]
    assert model["arch"] == "mn04" and model["finetune"] == "full" and bundle.audio.sample_rate == 32000
    assert model["view"] is True and bundle.manifest["song"]["view"] == 0.25
    assert bundle.manifest["song"]["view_dims"] == 384 and "LogisticRegression" in bundle.manifest["aggregator"]["kind"]
    assert model["pretrained"]["licence"].startswith("MIT") and (bundle.path / "NOTICE-EfficientAT").is_file()
    recipe = bundle.manifest["training"]["train"]
    assert recipe["epochs"] == 6 and recipe["lr_warmup_epochs"] == 0.5
    assert (recipe["air_copies"], recipe["air_phone"], recipe["consistency"], recipe["svm_copies"]) == (2, 0.3, 1.0, 1)
    assert bundle.manifest["training"]["segment_hop_seconds"] == 3.0 and bundle.audio.segment_hop_seconds == 1.0
    assert bundle.manifest["verification"]["segment_onnx_vs_torch_max_abs"] < 1e-4
    import mer_live

    rng = np.random.default_rng(0)
    t = np.arange(44100 * 8) / 44100
    song = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 2 * t)) + 0.02 * rng.standard_normal(len(t)))
    result = mer_live.load().predict(song.astype(np.float32), sr=44100)
    assert result.quadrant in {"Q1", "Q2", "Q3", "Q4"} and 0 <= result.valence <= 1


def test_fast_is_the_default_network_alone_every_3_seconds(tmp_path: Path, write_audio):
    """`--model fast`: the default's fine-tuned network and song SVM without the pretrained view, labeling from
    3 s windows every 3 s, as it trained: a sixth of the default's network work, and a live update every 3 s.
    Training never sees the view, so the two bundles' networks are one network: their segment probabilities
    agree. It is named "fast" in what it writes."""
    import mer_live

    fast, default, default3 = mer_live.load("fast"), mer_live.load("default"), mer_live.load("default", stride=3)
    manifest = fast.bundle.manifest
    assert fast.bundle.path != default.bundle.path
    assert not manifest["model"].get("view") and not manifest["song"].get("view")
    assert "export --without-view" in manifest["model"]["view_left_out"]
    trained = default.bundle.manifest["training"]["train"]
    assert {key: trained[key] for key in manifest["training"]["train"]} == manifest["training"]["train"]
    assert (fast.bundle.path / "NOTICE-EfficientAT").is_file()
    assert fast.audio.hop_frames == 3 * default.audio.hop_frames == fast.audio.segment_frames
    assert manifest["audio"]["segment_hop_seconds"] == manifest["training"]["segment_hop_seconds"] == 3.0
    assert (fast.name, default.name, default3.name) == ("fast", "default", "default --stride 3")
    rng = np.random.default_rng(1)
    t = np.arange(32000 * 12) / 32000
    song = (0.3 * np.sin(2 * np.pi * 330 * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32)
    a, b, c = (m.predict(song, sr=32000) for m in (fast, default, default3))
    assert (a.n_segments, b.n_segments, c.n_segments) == (3, 9, 3)  # 3.02 s windows at 0, 3, 6 s; at 0, 1, ..., 8 s
    np.testing.assert_allclose(c.segments, b.segments[::3], atol=1e-5)
    np.testing.assert_allclose(a.segments, c.segments, atol=1e-5)
    path = write_audio("tone.wav", song, 32000)
    result = subprocess.run([sys.executable, "-m", "mer_live", "label", str(path), "--model", "fast", "--report",
                             str(tmp_path / "r.html")], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "fast" in (tmp_path / "r.html").read_text()


def test_previous_default_is_there_by_name():
    """`--model musicnn`: the previous default (pretrained musicnn, fine-tuned top) stays loadable."""
    bundle = load_bundle("musicnn")
    assert bundle.manifest["model"]["arch"] == "musicnn-msd" and bundle.manifest["aggregator"]["embedding_dims"] == 250
