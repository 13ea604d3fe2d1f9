"""Upgrade a bundle's graphs that hold no trained weights to this release's, and re-hash it.

Two of a bundle's graphs are rebuilt from what the bundle itself carries: the front end
(``frontend.onnx``, and inside ``segment.onnx``) from its audio config, with this release's real-input DFT;
the song stage (``aggregator.onnx``) from its pickle, with this release's graph (the tasks share its nodes,
the support-vector product in float32 where that is safe). ``backbone.onnx`` and the pickle stay byte for
byte; a file only the old graphs read (the direct-DFT front end's ``stft_kernels.bin``) is removed. The
new bundle is built in a temporary folder and checked through the runtime on the audio files named
before anything is written: the song graph within the export's tolerance of the pickle with the same labels
at 0.5, ``segment.onnx`` within the export's tolerance of front end + backbone; how far the segment and song
probabilities and the song quadrants moved is printed and recorded in the manifest.

    python scripts/upgrade_bundle.py path/to/bundle path/to/music/*.mp3
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch

from mer_live.atomic import atomic_file
from mer_live.errors import MerLiveError
from mer_live.export.aggregator_onnx import aggregator_to_onnx
from mer_live.export.exporter import AGGREGATOR_TOLERANCE, MODEL_TOLERANCE, frontend_to_onnx
from mer_live.nn.frontend import LogMel
from mer_live.runtime.bundle import MANIFEST, Bundle, load_aggregator_pickle, load_bundle, write_manifest
from mer_live.runtime.stages import Stages


def build(bundle: Bundle, folder: Path) -> list[str]:
    """Write the upgraded graphs into ``folder`` (a copy of the bundle's files); the names of those that changed.
    A front end that is already this release's, byte for byte, keeps its ``segment.onnx`` too."""
    rebuilt = []
    frontend_to_onnx(LogMel(bundle.audio), torch.zeros(2, bundle.audio.segment_samples), folder / "frontend.onnx")
    if (folder / "frontend.onnx").read_bytes() != bundle.file("frontend.onnx").read_bytes():
        segment = onnx.compose.merge_models(onnx.load(str(folder / "frontend.onnx")),
                                            onnx.load(str(bundle.file("backbone.onnx"))),
                                            io_map=[("logmel", "logmel")], prefix1="frontend/")
        onnx.save(segment, str(folder / "segment.onnx"))
        rebuilt += ["frontend.onnx", "segment.onnx"]
    graph = aggregator_to_onnx(load_aggregator_pickle(bundle), bundle.n_features)
    if graph != bundle.file("aggregator.onnx").read_bytes():
        (folder / "aggregator.onnx").write_bytes(graph)
        rebuilt.append("aggregator.onnx")
    return rebuilt


def song_outputs(stages: Stages, paths: list[str]) -> list[np.ndarray]:
    """Each decodable file's (segments, outputs) through the runtime's front end and backbone."""
    outputs = []
    for path in paths:
        item = stages.decode(path)
        if item.error:
            print(f"{path}: skipped ({item.error})")
            continue
        outputs.append(stages.segment_outputs(item.logmel))
    if not outputs:
        raise MerLiveError("none of the audio files decodes: name some music to check the bundle on")
    return outputs


def check(old: Bundle, new: Bundle, paths: list[str]) -> dict:
    """How the upgraded bundle compares with the old one and its own pickle on the songs named."""
    before, after = Stages(old, "cpu", 1), Stages(new, "cpu", 1)
    old_outputs, new_outputs = song_outputs(before, paths), song_outputs(after, paths)
    features = np.stack([new.song_vector(o) for o in new_outputs]).astype(np.float32)
    song = after.song_probs(features)
    reference = load_aggregator_pickle(new).predict_proba(features.astype(np.float64))
    old_song = before.song_probs(np.stack([old.song_vector(o) for o in old_outputs]))
    to_pickle = float(np.abs(song - reference).max())
    if not (to_pickle <= AGGREGATOR_TOLERANCE and np.array_equal(song > 0.5, reference > 0.5)):
        raise MerLiveError(f"the rebuilt song graph is {to_pickle:.3g} from the pickle; nothing written")
    audio = np.random.default_rng(0).normal(0, 0.1, (8, new.audio.segment_samples)).astype(np.float32)
    chained = after.backbone(after.frontend(audio))
    whole = after.reference()(audio)
    to_chain = float(np.abs(whole - chained).max())
    if not to_chain <= MODEL_TOLERANCE:
        raise MerLiveError(f"the rebuilt segment.onnx is {to_chain:.3g} from front end + backbone; nothing written")
    n = len(new.tasks)
    quadrants = (song > 0.5) != (old_song > 0.5)
    return {"songs": len(features), "song_graph_vs_pickle_max_abs": to_pickle,
            "segment_vs_frontend_backbone_max_abs": to_chain,
            "segment_probs_moved_max_abs": float(max(np.abs(a[:, :n] - b[:, :n]).max()
                                                     for a, b in zip(new_outputs, old_outputs))),
            "song_probs_moved_max_abs": float(np.abs(song - old_song).max()),
            "songs_whose_quadrant_changed": int(quadrants.any(axis=1).sum())}


def external_files(folder: Path, graphs: list[str]) -> set[str]:
    """The files the graphs keep tensors in (ONNX external data: the direct-DFT front ends' ``stft_kernels.bin``)."""
    found = set()
    for name in graphs:
        model = onnx.load(str(folder / name), load_external_data=False)
        found |= {entry.value for tensor in model.graph.initializer
                  if tensor.data_location == onnx.TensorProto.EXTERNAL
                  for entry in tensor.external_data if entry.key == "location"}
    return found


def upgrade(path: str, audio: list[str]) -> None:
    bundle = load_bundle(path)
    with tempfile.TemporaryDirectory(prefix="mer-live-upgrade-") as tmp:
        folder = Path(tmp) / "bundle"
        shutil.copytree(bundle.path, folder)
        rebuilt = build(bundle, folder)
        if not rebuilt:
            print(f"{bundle.path}: already this release's graphs; nothing to do")
            return
        graphs = [name for name in bundle.manifest["files"] if name.endswith(".onnx")]
        unused = sorted(external_files(bundle.path, graphs) - external_files(folder, graphs))
        manifest = {key: value for key, value in bundle.manifest.items() if key not in ("format", "format_version")}
        files = [name for name in manifest["files"] if name not in unused]
        write_manifest(folder, manifest | {"files": files})
        figures = {"rebuilt": rebuilt, "removed": unused, **check(bundle, load_bundle(folder), audio)}
        manifest["verification"] = {**manifest["verification"], "upgraded": figures}
        write_manifest(folder, manifest | {"files": files})
        for name in (*rebuilt, MANIFEST):  # the graphs first: a bundle stopped half way fails its hashes, loudly
            with atomic_file(bundle.path / name) as f:
                f.write((folder / name).read_bytes())
        for name in unused:  # no graph reads them any more
            (bundle.path / name).unlink()
    load_bundle(bundle.path)  # every hash again
    print(f"{bundle.path}: upgraded, {MANIFEST} re-hashed: {json.dumps(figures)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("audio", nargs="+", help="audio files to check the upgraded bundle on")
    args = parser.parse_args()
    try:
        upgrade(args.bundle, args.audio)
    except MerLiveError as exc:  # a bundle whose hashes fail, a file that is not a bundle: one line
        raise SystemExit(f"upgrade_bundle: {exc}") from None


if __name__ == "__main__":
    main()
