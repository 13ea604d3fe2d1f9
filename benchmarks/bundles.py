"""Bundles to measure: the packaged model where it fits, else exported untrained stand-ins.

The packaged bundle has one segment length and one architecture, but the sweep needs 1-5 s for
compact and VGG16. Compute does not depend on the weights, so a stand-in is a randomly
initialised model of the same architecture put through the real exporter (``harness.tiny``
makes the run), giving the same ONNX graphs a trained model has; a stand-in of a packaged model
copies its whole configuration (the default's pretrained view and embedding statistics included).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from mer_live.runtime.bundle import DEFAULT_BUNDLE, Bundle, load_bundle

if TYPE_CHECKING:  # torch is imported where a stand-in is built, not by every benchmark
    from mer_live.nn.model import ModelConfig


def add_bundle_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path,
                        help="measure this bundle (its own segment length and architecture) instead of the "
                             "packaged model and stand-ins")
    parser.add_argument("--work-dir", dest="cache", type=Path,
                        help="keep exported stand-in bundles and generated audio here and reuse them next time "
                             "(default: a temporary folder, removed afterwards)")
    # the old spelling, hidden: --cache-dir is the log-mel cache everywhere else
    parser.add_argument("--cache", dest="cache", type=Path, help=argparse.SUPPRESS)


def arch_of(bundle: Bundle) -> str:
    return str(bundle.manifest.get("model", {}).get("arch", "compact"))


def packaged() -> Bundle | None:
    """The packaged default bundle, or None when this checkout has none yet."""
    return load_bundle() if (DEFAULT_BUNDLE / "bundle.json").is_file() else None


def tiers(exclude: str = "") -> dict[str, Bundle]:
    """The packaged models to compare in this checkout, by name: ``fast`` and the previous default ``musicnn``
    beside ``default``."""
    from mer_live.runtime.bundle import PACKAGED

    return {name: load_bundle(PACKAGED[name]) for name in ("fast", "default", "musicnn")
            if name != exclude and (PACKAGED[name] / "bundle.json").is_file()}


def model_config(bundle: Bundle) -> ModelConfig:
    """The bundle's network settings, read back from its manifest's model record (which adds counts and
    provenance to them)."""
    from mer_live.nn.model import ModelConfig

    known = {field.name for field in dataclasses.fields(ModelConfig)}
    return ModelConfig.from_dict({k: v for k, v in bundle.manifest["model"].items() if k in known})


def stand_in(workdir: Path, seconds: float, arch: str = "compact", like: Bundle | None = None) -> Bundle:
    """An exported, verified bundle of an untrained ``arch`` model for ``seconds``-long segments; with ``like``,
    of that bundle's network and song settings instead (its architecture, a pretrained view, embedding
    statistics), so that a packaged model's other lengths cost what it would."""
    from harness.tiny import SONG, make_tiny_bundle

    if like is None:
        model, song, name = None, SONG, arch
    else:  # named by its settings, so a changed bundle never reuses a stale copy from --work-dir
        model, song = model_config(like), like.song
        settings = json.dumps([dataclasses.asdict(model), song.to_dict()], sort_keys=True)
        name = f"{model.arch}-{hashlib.sha256(settings.encode()).hexdigest()[:8]}"
    out = workdir / f"{name}-{seconds:g}s"
    if (out / "bundle.json").is_file():
        return load_bundle(out)
    return load_bundle(make_tiny_bundle(out, seconds, arch=arch, model=model, song=song))


@contextlib.contextmanager
def workdir(cache: Path | None) -> Iterator[Path]:
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        yield cache
        return
    with tempfile.TemporaryDirectory(prefix="mer-live-bench-") as tmp:
        yield Path(tmp)


def choose(args: argparse.Namespace, work: Path, lengths: list[float], archs: list[str]
           ) -> dict[tuple[str, float], Bundle]:
    """(arch, segment seconds) -> bundle: ``--bundle`` alone, else packaged where it fits, else stand-ins."""
    if args.bundle is not None:
        bundle = load_bundle(args.bundle)
        return {(arch_of(bundle), bundle.audio.segment_seconds): bundle}
    default = packaged()
    chosen = {}
    for arch in archs:
        for seconds in lengths:
            fits = default is not None and arch_of(default) == arch and default.audio.segment_seconds == seconds
            chosen[(arch, seconds)] = default if fits else stand_in(work, seconds, arch)
    return chosen


def one(args: argparse.Namespace, work: Path, seconds: float = 3.0) -> Bundle:
    """The bundle for benchmarks that use one model: ``--bundle``, the packaged one, or a stand-in."""
    if args.bundle is not None:
        return load_bundle(args.bundle)
    return packaged() or stand_in(work, seconds)


def describe(bundle: Bundle) -> str:
    kind = "packaged" if bundle.path.parent == DEFAULT_BUNDLE.parent else (
        "stand-in (untrained)" if bundle.manifest.get("training", {}).get("train", {}).get("epochs") == 0
        else "bundle")
    return f"{kind} {arch_of(bundle)}, {bundle.audio.segment_seconds:g} s segments"
