"""Smoke test: every benchmark runs on tiny inputs (--quick) and writes its JSON.

Benchmarks are not run here for their numbers; the peers (vibenet, librosa) are skipped, and the
labeling benchmark's 4Q part runs only where the 4Q clips are present.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import run
from tests.conftest import FOURQ_ENV, fourq_root

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> tuple[Path, Path]:
    """(results dir, cache dir shared by the benchmarks so stand-in bundles are exported once)."""
    return tmp_path_factory.mktemp("results"), tmp_path_factory.mktemp("cache")


def bench(dirs: tuple[Path, Path], name: str, *args: str) -> dict:
    results, cache = dirs
    assert run.main([name, "--quick", "--results-dir", str(results), *args]) == 0
    record = json.loads((results / f"{name}.json").read_text())
    assert record["command"].startswith(f"mer-live bench {name}")
    assert record["machine"]["cores"] and record["versions"]["onnxruntime"]
    return record


def test_latency(dirs):
    record = bench(dirs, "latency", "--work-dir", str(dirs[1]))
    runtimes = {(r["runtime"], r["segment_seconds"]) for r in record["rows"]}
    assert {"ort-incremental", "ort-full", "torch-eager"} == {r for r, _ in runtimes}
    assert all(r["compute_ms"]["p99"] > 0 and r["algorithmic_latency_s"] >= 1 for r in record["rows"])
    assert record["ratios"] and (dirs[0] / "latency.png").is_file()


def test_live(dirs):
    record = bench(dirs, "live", "--seconds", "5", "--work-dir", str(dirs[1]))
    assert record["updates"] >= 2 and record["from_arrival_ms"]["p50"] > 0


def test_label(dirs, monkeypatch):
    root = fourq_root()
    if root is not None:
        monkeypatch.setenv(FOURQ_ENV, str(root))
    record = bench(dirs, "label", "--no-peers", "--files", "3", "--long-minutes", "0.5", "--work-dir", str(dirs[1]))
    assert record["long_file"]["returncode"] == 0 and record["long_file"]["peak_rss_tree_mb"] > 0
    if root is None:
        pytest.skip(f"4Q clips not found (set {FOURQ_ENV}): only the long-file part ran")
    assert record["rows"][0]["files_ok"] == 3 and record["rows"][0]["x_realtime"] > 0


def test_train(dirs):
    record = bench(dirs, "train", "--devices", "cpu")
    phases = {r["phase"]: r for r in record["rows"]}
    assert set(phases) == {"warmup", "sssl"}
    assert all(r["segments_per_s"] > 0 and r["load_s"] > 0 for r in phases.values())


def test_soak(dirs):
    record = bench(dirs, "soak", "--minutes", "1", "--work-dir", str(dirs[1]))
    assert record["returncode"] == 0 and record["memory"]["samples"] >= 3


def test_accuracy_and_readme(dirs, tmp_path, capsys):
    """An evaluation report in `mer-live evaluate`'s format, then the README section from all results."""
    metrics = ("valence_acc", "valence_f1", "arousal_acc", "arousal_f1", "quadrant_acc", "quadrant_f1")
    results = [{"segment_seconds": s, "method": m, "aggregation": "svm",
                "summary": {k: {"mean": 0.6, "std": 0.05} for k in metrics}}
               for s in (1.0, 2.0) for m in ("sssl", "naive")]
    reports = []
    for part, seconds in enumerate((1.0, 2.0)):  # a sweep run as two parallel evaluations, one figure
        reports.append(tmp_path / f"evaluation-{part}.json")
        reports[-1].write_text(json.dumps({"results": [r for r in results if r["segment_seconds"] == seconds],
                                           "n_songs": 40, "protocol": "test", "command": f"evaluate {seconds:g}"}))
    record = bench(dirs, "accuracy", "--report", *map(str, reports))
    assert len(record["rows"]) == 4 and (dirs[0] / "accuracy.png").is_file()
    assert record["report_command"] == ["evaluate 1", "evaluate 2"] and record["protocol"] == "test"

    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- bench:start -->\nSTALE SECTION\n<!-- bench:end -->\ntail\n")
    assert run.main(["readme", "--results-dir", str(dirs[0]), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "STALE SECTION" not in text and text.endswith("<!-- bench:end -->\ntail\n") and "### Accuracy" in text
    assert "`evaluate 1`" in text and "`evaluate 2`" in text


def test_unknown_benchmark(capsys):
    assert run.main(["nope"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err


def test_latency_s_pytorch_rows_build_the_packaged_default_with_its_view():
    """The PyTorch-eager rows rebuild the bundle's network from its manifest: the default's view included, so
    a window gives what the bundle's graph gives the song stage (2 probabilities, 384 + 384 embedding values)."""
    import numpy as np

    from benchmarks.latency import TorchStages
    from mer_live.runtime.bundle import load_bundle

    bundle = load_bundle("default")
    assert bundle.manifest["model"]["view"]
    stages = TorchStages(bundle)
    out = stages.reference()(np.zeros((1, bundle.audio.segment_samples), np.float32))
    assert out.shape == (1, 2 + bundle.embedding_dims) and bundle.embedding_dims == 768


def test_latency_s_other_lengths_copy_the_packaged_default_with_its_view(tmp_path):
    """At a length the default was not trained for, its latency row is an untrained copy of its configuration:
    both networks (the pretrained view too), the embedding statistics and the view's share of the song stage,
    so the row costs what the default would; a stand-in of its bare architecture would leave the view out."""
    import numpy as np

    from benchmarks import bundles
    from mer_live.api import load
    from mer_live.runtime.bundle import load_bundle

    default = load_bundle("default")
    copy = bundles.stand_in(tmp_path, 2.0, "mn04", like=default)
    assert copy.audio.segment_seconds == 2.0 and copy.audio.sample_rate == default.audio.sample_rate
    assert copy.manifest["model"]["view"] and bundles.model_config(copy) == bundles.model_config(default)
    assert copy.song.view == default.song.view == 0.25 and copy.embedding_dims == default.embedding_dims == 768
    bare = bundles.stand_in(tmp_path, 2.0, "mn04")
    # a second network's work on the shared front end: at 3 s the default counts 118 M MACs, fast 84 M
    assert copy.manifest["model"]["macs_per_segment"] > 1.3 * bare.manifest["model"]["macs_per_segment"]
    assert not bare.manifest["model"].get("view") and bare.embedding_dims == 0
    song = load(copy.path).predict(np.random.default_rng(0).normal(0, 0.1, 5 * 32000).astype(np.float32), sr=32000)
    assert 0 <= song.valence <= 1 and len(song.segments) == len(copy.audio.segment_starts(5 * 32000)) >= 3
    assert bundles.stand_in(tmp_path, 2.0, "mn04", like=default).path == copy.path  # reused from --work-dir
