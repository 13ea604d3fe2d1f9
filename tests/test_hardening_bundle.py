"""Bundles through the real command line: every refusal is one line (exit 2) before anything runs, and
the default path never unpickles (tests/test_bundle.py covers `load_bundle` itself)."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mer_live.runtime.bundle import MANIFEST, PICKLE, load_aggregator_pickle, load_bundle
from tests.conftest import REPO
from tests.realtime_helpers import music_wav, tiny_bundle
from tests.test_bundle import Marker


def mer_live(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mer_live", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bundle().path, tmp_path / "bundle"))


def edit_manifest(bundle_dir: Path, change) -> None:
    manifest = json.loads((bundle_dir / MANIFEST).read_text())
    change(manifest)
    (bundle_dir / MANIFEST).write_text(json.dumps(manifest))


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x20
    path.write_bytes(bytes(data))


DAMAGE = {
    "tampered onnx": (lambda b: flip_byte(b / "backbone.onnx"), "SHA-256 does not match"),
    "tampered pickle": (lambda b: flip_byte(b / PICKLE), "SHA-256 does not match"),
    "newer format": (lambda b: edit_manifest(b, lambda m: m.update(format_version=99)), "format version 99"),
    "missing file": (lambda b: (b / "frontend.onnx").unlink(), "frontend.onnx is missing"),
    "mismatched config": (lambda b: edit_manifest(b, lambda m: m["audio"].update(sample_rate=16000)),
                          "inconsistent config"),
    "manifest not json": (lambda b: (b / MANIFEST).write_text("{not json"), "not valid JSON"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_bundle_is_refused_in_one_line(bundle_dir: Path, case: str) -> None:
    damage, words = DAMAGE[case]
    damage(bundle_dir)
    for command in (["label", music_wav()], ["--file", music_wav(), "--fast", "--jsonl"]):
        result = mer_live(*command, "--model", bundle_dir)
        assert result.returncode == 2, (case, result.stderr)
        assert result.stderr.startswith("mer-live: error: ") and result.stderr.count("\n") == 1, result.stderr
        assert words in result.stderr and result.stdout == ""


def test_bundle_path_that_is_a_file_is_refused(bundle_dir: Path) -> None:
    result = mer_live("label", music_wav(), "--model", bundle_dir / MANIFEST)
    assert result.returncode == 2 and "a bundle is a directory" in result.stderr
    assert result.stderr.count("\n") == 1


def plant_marker(bundle_dir: Path, marker: Path) -> None:
    """Replace the pickle by one that creates ``marker`` when unpickled, and re-sign it in the manifest:
    the hash check passes, so only whether the pickle is ever loaded decides whether the marker appears."""
    data = pickle.dumps(Marker(marker))
    (bundle_dir / PICKLE).write_bytes(data)
    edit_manifest(bundle_dir, lambda m: m["files"].update({PICKLE: hashlib.sha256(data).hexdigest()}))


def test_default_path_never_unpickles(bundle_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    plant_marker(bundle_dir, marker)
    labeled = mer_live("label", music_wav(), "--model", bundle_dir, "--format", "jsonl")
    live = mer_live("--file", music_wav(), "--fast", "--jsonl", "--model", bundle_dir)
    assert labeled.returncode == 0 and live.returncode == 0, labeled.stderr + live.stderr
    assert not marker.exists()
    load_aggregator_pickle(load_bundle(bundle_dir))  # the control: asking for the pickle does run it
    assert marker.exists()


def test_tampered_pickle_is_refused_before_unpickling_on_the_command_line(bundle_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    (bundle_dir / PICKLE).write_bytes(pickle.dumps(Marker(marker)))  # not re-signed
    result = mer_live("label", music_wav(), "--model", bundle_dir, "--aggregator", "pickle")
    assert result.returncode == 2 and "SHA-256" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()
