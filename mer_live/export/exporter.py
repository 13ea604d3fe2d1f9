"""A training run -> a verified model bundle (see ``mer_live.runtime.bundle`` for the format).

Every graph is checked with ONNX Runtime against the run's own PyTorch model and pickled
aggregator on the run's real verification data before the bundle exists; a mismatch raises
instead of shipping a model that disagrees with what was trained and evaluated. The bundle is
written into a temporary sibling folder and renamed into place, so a failed or interrupted
export never leaves a half bundle where the runtime would look.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import shutil
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from mer_live import __version__
from mer_live.atomic import atomic_file
from mer_live.errors import MerLiveError
from mer_live.export.aggregator_onnx import aggregator_to_onnx, run_aggregator_onnx
from mer_live.nn import mobilenet
from mer_live.nn.model import SegmentProbabilities, count_macs, count_parameters
from mer_live.nn.musicnn import NOTICE, WEIGHTS_DIR
from mer_live.nn.names import AUDIOSET, PRETRAINED
from mer_live.runtime.bundle import PICKLE, sha256_file, write_manifest
from mer_live.stats import feature_names
from mer_live.train.rundir import AGGREGATOR, VERIFY_AUDIO, VERIFY_FEATURES, Run, open_run

OPSET = 17
MODEL_TOLERANCE = 1e-4
AGGREGATOR_TOLERANCE = 1e-5
VARIANTS = ("fp16", "int8")
PROB_MEANING = "probability that {task} is high, 0-1 (class order low=0, high=1)"
# what training changed of a musicnn network, by --finetune (the VGGs have no back end: their body stays frozen)
TUNED = {"heads": "body and tagging back end frozen", "top": "tagging back end fine-tuned",
         "mid": "mid-end and tagging back end fine-tuned, front end frozen"}


def export_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
               variants: Iterable[str] = (), force: bool = False, segment_hop: float | None = None,
               without_view: bool = False, log=print) -> Path:
    """Export and verify ``run_dir`` into the bundle folder ``out_dir``; returns ``out_dir``.

    Refuses a non-empty ``out_dir`` unless ``force``. ``variants`` may name "fp16" and "int8"
    (optional extra segment graphs, measured against fp32 and recorded in the manifest). ``segment_hop``
    (seconds) makes the runtime label with windows that far apart instead of the training hop; the
    manifest's audio settings say so, and its training record keeps the hop trained on. ``without_view`` leaves a
    run's pretrained view out (``Run.without_view``): its network and song SVM alone.
    """
    variants = tuple(variants)
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise MerLiveError(f"unknown export variants {sorted(unknown)}; choose from {list(VARIANTS)}")
    out = Path(out_dir)
    _check_target(out, force)
    run = open_run(run_dir)
    if without_view:
        run = run.without_view()
    if segment_hop is not None:
        try:
            run = dataclasses.replace(run, audio=run.audio.replace(segment_hop_seconds=segment_hop))
        except ValueError as exc:
            raise MerLiveError(f"--segment-hop {segment_hop:g}: {exc}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _write_bundle(run, tmp, variants, log)
        _move_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _check_target(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise MerLiveError(f"{out}: exists and is not a directory; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise MerLiveError(f"{out}: directory is not empty; pass --force to replace it")


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished bundle onto ``out``, replacing an old one only after it is complete."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def _embedding_dims(run: Run, net: nn.Module) -> int:
    """Width of the segment embedding the run's aggregator summarises, 0 when it reads probabilities only."""
    return net.backbone.embedding_dims if run.song.embedding else 0


def _write(path: Path, data: bytes) -> None:
    with atomic_file(path) as f:
        f.write(data)


def _save_onnx(model: onnx.ModelProto, path: Path) -> None:
    _write(path, model.SerializeToString())


def _verification_data(run: Run, embedding_dims: int) -> tuple[np.ndarray, np.ndarray]:
    paths = [run.path / VERIFY_AUDIO, run.path / VERIFY_FEATURES]
    for path in paths:
        if not path.is_file():
            raise MerLiveError(f"{path}: missing; the exporter verifies ONNX against it (re-run training)")
    audio = np.load(paths[0]).astype(np.float32)
    features = run.verification_features()
    if audio.ndim != 2 or audio.shape[1] != run.audio.segment_samples or len(audio) == 0:
        raise MerLiveError(f"{paths[0]}: expected (n, {run.audio.segment_samples}) segments, got {audio.shape}")
    n_features = run.song.n_features(embedding_dims)
    if features.ndim != 2 or features.shape[1] != n_features or len(features) == 0:
        raise MerLiveError(f"{paths[1]}: expected (m, {n_features}) song statistics, got {features.shape}")
    return audio, features


def _to_onnx(module: nn.Module, example: torch.Tensor, path: Path, input_name: str, output_name: str | list[str],
             dynamic: dict[int, str], out_dynamic: dict[int, str]) -> None:
    """TorchScript export (handles the conv front end; see design notes), dynamic axes as given."""
    outputs = [output_name] if isinstance(output_name, str) else output_name
    graph = io.BytesIO()
    torch.onnx.export(
        module.eval(), (example,), graph, input_names=[input_name], output_names=outputs,
        dynamic_axes={input_name: dynamic, **dict.fromkeys(outputs, out_dynamic)}, opset_version=OPSET, dynamo=False,
    )
    _write(path, graph.getvalue())


def frontend_to_onnx(frontend: nn.Module, example: torch.Tensor, path: Path) -> None:
    """``frontend.onnx``: raw audio (batch, samples) -> log-mel (batch, mels, frames)."""
    _to_onnx(frontend, example, path, "audio", "logmel", {0: "batch", 1: "samples"}, {0: "batch", 2: "frames"})


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run(path: Path, name: str, x: np.ndarray) -> np.ndarray:
    session = _session(path)
    return session.run(None, {name: x})[0]


def _check(label: str, diff: float, tolerance: float) -> float:
    if not diff <= tolerance:  # also catches NaN
        raise MerLiveError(f"export verification failed: {label} differs by {diff:.3g} (> {tolerance:g})")
    return diff


def _write_bundle(run: Run, out: Path, variants: tuple[str, ...], log) -> None:
    net = run.load_model()
    song_config = run.song
    tasks = dict(run.model_config.tasks)
    task_names = list(song_config.tasks)
    if list(tasks) != task_names:
        raise MerLiveError(f"{run.path}: song tasks {task_names} differ from the model's {list(tasks)}")
    dims = _embedding_dims(run, net)
    audio_np, features = _verification_data(run, dims)
    audio = torch.from_numpy(audio_np)
    example = audio[:2] if len(audio) >= 2 else audio.repeat(2, 1)
    outputs = ["probs", "embedding"] if dims else "probs"

    _to_onnx(SegmentProbabilities(net, tasks, bool(dims)), example, out / "segment.onnx", "audio", outputs,
             {0: "batch", 1: "samples"}, {0: "batch"})
    frontend_to_onnx(net.frontend, example, out / "frontend.onnx")
    with torch.no_grad():
        logmel_example = net.frontend(example)
        expected = SegmentProbabilities(net, tasks)(audio).numpy()
    _to_onnx(SegmentProbabilities(net.backbone, tasks, bool(dims)), logmel_example, out / "backbone.onnx", "logmel",
             outputs,
             {0: "batch", 2: "frames"}, {0: "batch"})

    aggregator = run.load_aggregator()
    if list(aggregator.tasks) != task_names:
        raise MerLiveError(f"{run.path}: aggregator tasks {aggregator.tasks} differ from the model's {task_names}")
    _write(out / PICKLE, pickle.dumps(aggregator) if run.dropped_columns else (run.path / AGGREGATOR).read_bytes())
    _write(out / "aggregator.onnx", aggregator_to_onnx(aggregator, features.shape[1]))

    segment = _run(out / "segment.onnx", "audio", audio_np)
    embedding_diff = 0.0
    if dims:
        with torch.no_grad():
            expected_embedding = SegmentProbabilities(net, tasks, True)(audio)[1].numpy()
        onnx_embedding = _session(out / "segment.onnx").run(["embedding"], {"audio": audio_np})[0]
        embedding_diff = _check("segment.onnx embedding vs PyTorch",
                                float(np.abs(onnx_embedding - expected_embedding).max()), MODEL_TOLERANCE)
    chained = _run(out / "backbone.onnx", "logmel", _run(out / "frontend.onnx", "audio", audio_np))
    reference = aggregator.predict_proba(features)
    song = run_aggregator_onnx(str(out / "aggregator.onnx"), features)
    if not np.array_equal(song > 0.5, reference > 0.5):
        raise MerLiveError("export verification failed: aggregator.onnx labels differ from the pickle at 0.5")
    verification = {
        "segment_onnx_vs_torch_max_abs": _check("segment.onnx vs PyTorch", float(np.abs(segment - expected).max()),
                                                MODEL_TOLERANCE),
        "frontend_backbone_onnx_vs_torch_max_abs": _check(
            "frontend.onnx+backbone.onnx vs PyTorch", float(np.abs(chained - expected).max()), MODEL_TOLERANCE),
        "aggregator_onnx_vs_pickle_max_abs": _check(
            "aggregator.onnx vs aggregator.pkl", float(np.abs(song - reference).max()), AGGREGATOR_TOLERANCE),
        "embedding_onnx_vs_torch_max_abs": embedding_diff,
        "segments": len(audio_np),
        "songs": len(features),
        "tolerances": {"model": MODEL_TOLERANCE, "aggregator": AGGREGATOR_TOLERANCE},
        "runtime": "onnxruntime CPUExecutionProvider",
    }
    log(f"verified: segment {verification['segment_onnx_vs_torch_max_abs']:.2g}, "
        f"frontend+backbone {verification['frontend_backbone_onnx_vs_torch_max_abs']:.2g}, "
        f"aggregator {verification['aggregator_onnx_vs_pickle_max_abs']:.2g} max abs difference")

    files = ["segment.onnx", "frontend.onnx", "backbone.onnx", "aggregator.onnx", PICKLE]
    model_record = {**run.model_config.to_dict(), "parameters": count_parameters(net),
                    "macs_per_segment": count_macs(net, run.audio.segment_seconds)}
    if run.model_config.pretrained:
        # the pretrained weights are inside the ONNX graphs: their licence notice travels with them
        _write(out / NOTICE, (WEIGHTS_DIR / NOTICE).read_bytes())
        files.append(NOTICE)
        checkpoint, family = PRETRAINED[run.model_config.arch]
        model_record["pretrained"] = {
            "weights": f"{checkpoint} of the musicnn package 0.1.0 (Pons and Serra 2019); "
                       + (TUNED[run.model_config.finetune] if family == "musicnn" else "body frozen"),
            "licence": "ISC; see NOTICE",
        }
    if run.model_config.audioset:
        notice = mobilenet.WEIGHTS.parent / mobilenet.NOTICE
        _write(out / mobilenet.NOTICE, notice.read_bytes())
        files.append(mobilenet.NOTICE)
        model_record["pretrained"] = {
            "weights": f"{AUDIOSET[run.model_config.arch]} of EfficientAT (Schmid, Koutini and Widmer 2023), "
                       "pretrained on AudioSet, converted by scripts/convert_mn04.py; "
                       + "; ".join(("" if run.model_config.bodies == 1 else f"body {k + 1} ")
                                   + ("fine-tuned end to end" if mode == "full" else "body frozen")
                                   for k, mode in enumerate(run.model_config.finetunes))
                       + ("; beside it the pretrained network itself, frozen and without heads: the last "
                          f"{run.song.view_dims} embedding values, the song stage's second view (a logistic "
                          f"regression on their statistics gives {run.song.view:g} of the song estimate)"
                          if run.model_config.view else ""),
            "weights_sha256": sha256_file(mobilenet.WEIGHTS),
            "licence": f"MIT (Copyright (c) 2022 Florian Schmid); see {mobilenet.NOTICE}",
        }
    if run.dropped_columns:
        model_record["view_left_out"] = ("trained with a pretrained view beside this network, exported without it "
                                         "(export --without-view): the fine-tuned network and its song SVM alone")
    if run.model_config.bodies > 1:
        train = run.config.get("train", {})
        seed, widths, together = train.get("seed", 0), net.backbone.widths, train.get("co_divide", False)
        starts = np.cumsum([0, *widths])
        how = ("trained together with the other member by co-divide SSSL, each on the division the other made "
               "(both from this seed)" if together else "trained alone on the same segments")
        model_record["members"] = [
            {"arch": run.model_config.arch, "finetune": run.model_config.finetunes[k],
             "seed": seed if together else seed + k,
             "embedding_columns": [int(starts[k]), int(starts[k + 1])],
             "note": f"{how}; the graph averages the members' logits and puts their embeddings side by side"}
            for k in range(len(widths))]
    variant_info = {}
    for variant in variants:
        info = _VARIANT_WRITERS[variant](out, audio_np, segment, log)
        if info is not None:
            variant_info[variant] = info
            files.append(info["file"])

    write_manifest(out, {
        "audio": run.audio.to_dict(),
        "model": model_record,
        "tasks": task_names,
        "song": song_config.to_dict(),
        "outputs": _outputs(run, task_names, dims),
        "aggregator": {
            "feature_names": feature_names(task_names, dims),
            "embedding": bool(dims),
            "embedding_dims": dims,
            "kind": "StandardScaler+SVC(rbf)" + (f", mixed {1 - song_config.view:g}/{song_config.view:g} with "
                                                   "StandardScaler+LogisticRegression on the view's columns"
                                                   if song_config.view else ""),
            "best_params": aggregator.best_params,
        },
        "training": {"dataset": run.config.get("dataset", {}), "train": run.config.get("train", {}),
                     "segment_hop_seconds": run.config.get("audio", {}).get("segment_hop_seconds"),
                     "metrics": run.metrics()},
        "verification": verification,
        "variants": variant_info,
        "versions": _versions(),
        "files": files,
    })


def _outputs(run: Run, tasks: list[str], dims: int) -> dict:
    """What every graph takes and gives, in words, so no one has to guess an order or a scale."""
    n_mels, n_tasks = run.audio.n_mels, len(tasks)
    probs = {"name": "probs", "shape": ["batch", n_tasks], "dtype": "float32", "columns": tasks,
             "meaning": {task: PROB_MEANING.format(task=task) for task in tasks}}
    audio = {"name": "audio", "shape": ["batch", "samples"], "dtype": "float32",
             "meaning": f"mono audio at {run.audio.sample_rate} Hz, -1..1; any length >= n_fft "
                        f"({run.audio.n_fft}); a segment is {run.audio.segment_samples} samples"}
    logmel = {"name": "logmel", "shape": ["batch", n_mels, "frames"], "dtype": "float32",
              "meaning": "natural-log mel power, uncentered hop-aligned frames: "
                         "frames = 1 + (samples - n_fft) // hop_length"}
    segment_outputs = [probs]
    if dims:
        segment_outputs.append({"name": "embedding", "shape": ["batch", dims], "dtype": "float32",
                                "meaning": "what the heads read: the pretrained model's penultimate layer and tag "
                                           "activations (the aggregator takes their mean and std over the song)"})
    return {
        "segment.onnx": {"inputs": [audio], "outputs": segment_outputs},
        "frontend.onnx": {"inputs": [audio], "outputs": [logmel]},
        "backbone.onnx": {"inputs": [logmel], "outputs": segment_outputs},
        "aggregator.onnx": {
            "inputs": [{"name": "features", "shape": ["n", run.song.n_features(dims)], "dtype": "float32",
                        "meaning": "song statistics of segment probabilities"
                                   + (", then mean and std of the embedding" if dims else "")
                                   + " (aggregator.feature_names)"}],
            "outputs": [{**probs, "shape": ["n", n_tasks],
                         "meaning": {t: f"song-level {PROB_MEANING.format(task=t)}" for t in tasks}}],
        },
    }


def _versions() -> dict:
    versions = {"python": sys.version.split()[0], "mer_live": __version__, "torch": torch.__version__}
    for name, dist in (("onnx", "onnx"), ("onnxruntime", "onnxruntime"), ("sklearn", "scikit-learn"),
                       ("skl2onnx", "skl2onnx"), ("numpy", "numpy")):
        try:
            versions[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _variant_info(out: Path, name: str, audio: np.ndarray, fp32: np.ndarray) -> dict:
    probs = _run(out / name, "audio", audio)
    return {"file": name, "bytes": (out / name).stat().st_size,
            "fp32_bytes": (out / "segment.onnx").stat().st_size,
            "max_abs_prob_change_vs_fp32": float(np.abs(probs.astype(np.float32) - fp32).max())}


def _write_fp16(out: Path, audio: np.ndarray, fp32: np.ndarray, log) -> dict | None:
    """segment.fp16.onnx with float32 inputs/outputs kept, so callers feed the same arrays."""
    try:
        from onnxconverter_common import float16
    except ImportError:
        log("fp16 skipped: onnxconverter-common is not installed (pip install onnxconverter-common)")
        return None
    import onnx

    model = float16.convert_float_to_float16(onnx.load(str(out / "segment.onnx")), keep_io_types=True)
    _save_onnx(model, out / "segment.fp16.onnx")
    return _variant_info(out, "segment.fp16.onnx", audio, fp32)


def _write_int8(out: Path, audio: np.ndarray, fp32: np.ndarray, log) -> dict:
    """Dynamic int8 weights (MatMul/Gemm; ORT's dynamic path gains little on Conv-heavy nets)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(out / "segment.onnx"), str(out / "segment.int8.onnx"), weight_type=QuantType.QInt8)
    info = _variant_info(out, "segment.int8.onnx", audio, fp32)
    info["note"] = "dynamic quantization: weights int8, activations quantized at run time"
    return info


_VARIANT_WRITERS = {"fp16": _write_fp16, "int8": _write_int8}

