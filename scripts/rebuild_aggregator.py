"""Rebuild a bundle's aggregator.onnx from its aggregator.pkl with this release's graph, and re-hash the bundle.

Bundles exported by earlier releases run each task's song SVM in its own few hundred ONNX nodes, all in
float64; this release's graph joins the tasks and takes the support-vector product in float32
(``mer_live/export/aggregator_onnx.py``): the same song estimate in a quarter of the time. Nothing is written
until the new graph has been checked on the song vectors of the audio files named (their segments through
the bundle's own graphs): within the export's tolerance of the pickle, and the same labels at 0.5.

    python scripts/rebuild_aggregator.py path/to/bundle path/to/music/*.mp3
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from mer_live.atomic import atomic_file
from mer_live.errors import MerLiveError
from mer_live.export.aggregator_onnx import aggregator_to_onnx, run_aggregator_onnx
from mer_live.export.exporter import AGGREGATOR_TOLERANCE
from mer_live.runtime.bundle import MANIFEST, load_aggregator_pickle, load_bundle, write_manifest
from mer_live.runtime.stages import Stages


def song_vectors(stages: Stages, paths: list[str]) -> np.ndarray:
    """(songs, features) float32: what the bundle's aggregator reads for each file that decodes."""
    rows = []
    for path in paths:
        item = stages.decode(path)
        if item.error:
            print(f"{path}: skipped ({item.error})")
            continue
        rows.append(stages.bundle.song_vector(stages.segment_outputs(item.logmel)))
    if not rows:
        raise MerLiveError("none of the audio files decodes: name some music to check the graph on")
    return np.stack(rows).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("audio", nargs="+", help="audio files to check the new graph on")
    args = parser.parse_args()
    try:
        rebuild(args.bundle, args.audio)
    except MerLiveError as exc:  # a bundle whose hashes fail, a file that is not a bundle: one line
        raise SystemExit(f"rebuild_aggregator: {exc}") from None


def rebuild(path: str, audio: list[str]) -> None:
    bundle = load_bundle(path)
    aggregator = load_aggregator_pickle(bundle)
    features = song_vectors(Stages(bundle, "cpu", 1), audio)
    graph = aggregator_to_onnx(aggregator, bundle.n_features)
    reference = aggregator.predict_proba(features.astype(np.float64))
    previous = run_aggregator_onnx(str(bundle.file("aggregator.onnx")), features)
    rebuilt = run_aggregator_onnx(graph, features)
    diff = float(np.abs(rebuilt - reference).max())
    if not (diff <= AGGREGATOR_TOLERANCE and np.array_equal(rebuilt > 0.5, reference > 0.5)):
        raise MerLiveError(f"{path}: the rebuilt graph is {diff:.3g} from the pickle; nothing written")
    with atomic_file(bundle.path / "aggregator.onnx") as f:
        f.write(graph)
    manifest = {key: value for key, value in bundle.manifest.items() if key not in ("format", "format_version")}
    manifest["verification"] = {**manifest["verification"], "aggregator_rebuilt": {
        "songs": len(features), "vs_pickle_max_abs": diff,
        "vs_previous_graph_max_abs": float(np.abs(rebuilt - previous).max())}}
    manifest["files"] = list(manifest["files"])
    write_manifest(bundle.path, manifest)
    load_bundle(bundle.path)  # every hash again
    print(f"{bundle.path / 'aggregator.onnx'}: rebuilt; {len(features)} songs, "
          f"{json.dumps(manifest['verification']['aggregator_rebuilt'])}; {MANIFEST} re-hashed")


if __name__ == "__main__":
    main()
