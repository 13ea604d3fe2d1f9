"""Loading a bundle refuses anything that is not exactly what the exporter wrote."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.tiny import make_tiny_bundle
from mer_live.errors import BundleError
from mer_live.runtime.bundle import MANIFEST, PICKLE, load_aggregator_pickle, load_bundle


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture
def bundle_dir(exported: Path, tmp_path: Path) -> Path:
    """A private copy each test may damage."""
    return Path(shutil.copytree(exported, tmp_path / "bundle"))


def edit_manifest(bundle_dir: Path, change) -> None:
    manifest = json.loads((bundle_dir / MANIFEST).read_text())
    change(manifest)
    (bundle_dir / MANIFEST).write_text(json.dumps(manifest))


class Marker:
    """Unpickling this creates a file: proof of whether a pickle was ever loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_intact_bundle_loads(bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    assert bundle.tasks == ["valence", "arousal"]
    assert bundle.audio.segment_samples == bundle.manifest["audio"]["derived"]["segment_samples"]
    assert (bundle.song.theta, bundle.song.horizon) == (0.5, 30.0)


def test_pickle_loads_only_when_asked_and_matches_run(bundle_dir: Path, exported: Path) -> None:
    aggregator = load_aggregator_pickle(load_bundle(bundle_dir))
    with open(exported.with_name(exported.name + "-run") / PICKLE, "rb") as f:
        original = pickle.load(f)
    features = np.load(exported.with_name(exported.name + "-run") / "verify_features.npy")
    np.testing.assert_array_equal(aggregator.predict_proba(features), original.predict_proba(features))


def test_missing_file_is_refused(bundle_dir: Path) -> None:
    (bundle_dir / "backbone.onnx").unlink()
    with pytest.raises(BundleError, match="backbone.onnx is missing"):
        load_bundle(bundle_dir)


def test_required_file_absent_from_manifest_is_refused(bundle_dir: Path) -> None:
    edit_manifest(bundle_dir, lambda m: m["files"].pop("segment.onnx"))
    with pytest.raises(BundleError, match="lists no segment.onnx"):
        load_bundle(bundle_dir)


def test_one_changed_byte_is_refused(bundle_dir: Path) -> None:
    data = bytearray((bundle_dir / "segment.onnx").read_bytes())
    data[len(data) // 2] ^= 1
    (bundle_dir / "segment.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="SHA-256"):
        load_bundle(bundle_dir)


def test_tampered_pickle_is_refused_before_unpickling(bundle_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    (bundle_dir / PICKLE).write_bytes(pickle.dumps(Marker(marker)))
    with pytest.raises(BundleError, match="SHA-256"):
        load_bundle(bundle_dir)
    assert not marker.exists()


def test_pickle_swapped_after_load_is_refused_before_unpickling(bundle_dir: Path, tmp_path: Path) -> None:
    bundle = load_bundle(bundle_dir)
    marker = tmp_path / "unpickled"
    (bundle_dir / PICKLE).write_bytes(pickle.dumps(Marker(marker)))
    with pytest.raises(BundleError, match="refusing to unpickle"):
        load_aggregator_pickle(bundle)
    assert not marker.exists()
    pickle.loads((bundle_dir / PICKLE).read_bytes())
    assert marker.exists()  # the marker works: the refusal above is what kept it from running


def test_newer_format_version_is_refused(bundle_dir: Path) -> None:
    edit_manifest(bundle_dir, lambda m: m.update(format_version=m["format_version"] + 1))
    with pytest.raises(BundleError, match="format version"):
        load_bundle(bundle_dir)


def test_inconsistent_config_is_refused(bundle_dir: Path) -> None:
    # bundle.json is not itself hashed: the derived values are checked against the settings instead.
    edit_manifest(bundle_dir, lambda m: m["audio"]["derived"].update(segment_samples=12345))
    with pytest.raises(BundleError, match="inconsistent config"):
        load_bundle(bundle_dir)


def test_missing_theta_is_refused(bundle_dir: Path) -> None:
    edit_manifest(bundle_dir, lambda m: (m["song"] if "song" in m else m["aggregator"]).pop("theta"))
    with pytest.raises(BundleError, match="inconsistent config"):
        load_bundle(bundle_dir)


def test_song_settings_travel_in_the_manifest_and_older_bundles_still_load(bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    assert bundle.song.tasks == ("valence", "arousal") and bundle.song.theta == 0.5
    assert "theta" not in bundle.manifest["aggregator"]  # the song record alone says it now

    def older(manifest: dict) -> None:  # as written before the song record: its facts in the aggregator record
        song = manifest.pop("song")
        manifest["aggregator"].update(theta=song["theta"], song_seconds=song["horizon"])

    edit_manifest(bundle_dir, older)
    assert load_bundle(bundle_dir).song == bundle.song
    assert load_bundle("compact").song.horizon == pytest.approx(30.0, abs=0.1)  # 4Q clips: 30 s


def test_file_instead_of_directory_is_refused(bundle_dir: Path) -> None:
    with pytest.raises(BundleError, match="not a file"):
        load_bundle(bundle_dir / "segment.onnx")


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no such bundle"):
        load_bundle(tmp_path / "nowhere")


def test_invalid_json_is_refused(bundle_dir: Path) -> None:
    (bundle_dir / MANIFEST).write_text('{"format": "mer-live-bundle", ')
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle_dir)


def test_file_name_leaving_the_folder_is_refused(bundle_dir: Path) -> None:
    edit_manifest(bundle_dir, lambda m: m["files"].update({"../segment.onnx": "0" * 64}))
    with pytest.raises(BundleError, match="leaves the bundle folder"):
        load_bundle(bundle_dir)
