"""The model bundle: a directory of ONNX graphs, the aggregator and a hashed manifest.

``bundle.json`` carries the audio config (the runtime frames audio from it), the tasks and
what each output means, the training record, and the SHA-256 of every file. Loading checks
every hash before any file is used, so a tampered pickle is never opened.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mer_live.atomic import atomic_write_text
from mer_live.config import AudioConfig, SongConfig
from mer_live.errors import BundleError
from mer_live.stats import song_vector

FORMAT = "mer-live-bundle"
FORMAT_VERSION = 1
MANIFEST = "bundle.json"
PICKLE = "aggregator.pkl"
REQUIRED_FILES = ("segment.onnx", "frontend.onnx", "backbone.onnx", "aggregator.onnx")
DEFAULT_BUNDLE = Path(__file__).parents[1] / "models" / "default"
# bundles shipped in the package, by name: the default (the AudioSet MobileNet fine-tuned end to end, 3 s
# windows every second), fast (the default's files with 3 s windows every 3 s, as it trained: a third of
# the default's compute), the previous default (pretrained musicnn, fine-tuned top) and the smallest
# (compact, from scratch)
PACKAGED = {name: DEFAULT_BUNDLE.parent / name for name in ("default", "fast", "musicnn", "compact")}


def packaged_name(path: str | os.PathLike) -> str | None:
    """The packaged name ("default", "fast", ...) of a bundle folder, None for other folders."""
    real = os.path.realpath(path)
    return next((name for name, folder in PACKAGED.items() if real == os.path.realpath(folder)), None)


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(directory: str | os.PathLike, manifest: dict) -> dict:
    """Hash every file in ``manifest['files']`` (names) and write ``bundle.json`` atomically."""
    directory = Path(directory)
    files = {name: sha256_file(directory / name) for name in sorted(manifest["files"])}
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest, "files": files}
    atomic_write_text(directory / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its folder, manifest, and the audio and song settings it was trained with."""

    path: Path
    manifest: dict
    audio: AudioConfig
    song: SongConfig

    @property
    def tasks(self) -> list[str]:
        return list(self.song.tasks)

    @property
    def embedding_dims(self) -> int:
        """Width of the segment embedding the aggregator summarises (0: probabilities only)."""
        return int(self.manifest["aggregator"].get("embedding_dims", 0))

    @property
    def n_features(self) -> int:
        return len(self.manifest["aggregator"]["feature_names"])

    def song_vector(self, outputs: np.ndarray) -> np.ndarray:
        """The aggregator's input for one song from its segments' (n, tasks [+ embedding]) outputs."""
        n = len(self.tasks)
        embedding = outputs[:, n:] if self.embedding_dims else None
        return song_vector(outputs[:, :n], embedding, self.song.theta)

    def file(self, name: str) -> Path:
        if name not in self.manifest["files"]:
            raise BundleError(f"{self.path}: bundle has no {name}")
        return self.path / name


def load_bundle(path: str | os.PathLike | None = None) -> Bundle:
    """Open and verify a bundle: a folder, a packaged bundle's name ("default", "fast", "musicnn", "compact"),
    or None for the packaged default."""
    if path is None or (str(path) in PACKAGED and not Path(path).exists()):
        path = PACKAGED[str(path or "default")]
    path = Path(path)
    fix = "re-export it with `mer-live export RUN_DIR --out BUNDLE_DIR`"
    if not path.exists():
        if path == DEFAULT_BUNDLE:
            raise BundleError(f"the default model is missing from the package at {path}; reinstall mer-live")
        raise BundleError(f"{path}: no such bundle directory")
    if not path.is_dir():
        raise BundleError(f"{path}: a bundle is a directory holding {MANIFEST}, not a file")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{path}: no {MANIFEST} in this folder; is it a mer-live bundle? {fix}")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest_path}: not valid JSON ({exc}); {fix}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{manifest_path}: not a mer-live bundle manifest; {fix}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format version {version!r}, this mer-live reads version {FORMAT_VERSION}; "
            "upgrade mer-live or re-export the bundle"
        )
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BundleError(f"{manifest_path}: manifest lists no files; {fix}")
    for name in REQUIRED_FILES:
        if name not in files:
            raise BundleError(f"{path}: manifest lists no {name}; {fix}")
    for name, digest in files.items():
        file = path / name
        if Path(name).name != name:
            raise BundleError(f"{manifest_path}: file name {name!r} leaves the bundle folder")
        if not file.is_file():
            raise BundleError(f"{path}: {name} is missing; {fix}")
        if sha256_file(file) != digest:
            raise BundleError(f"{file}: SHA-256 does not match the manifest (modified or corrupt); refusing to load it")
    try:
        audio = AudioConfig.from_dict(manifest["audio"])
        song = SongConfig.from_record(manifest)
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{manifest_path}: inconsistent config ({exc}); {fix}") from None
    return Bundle(path=path, manifest=manifest, audio=audio, song=song)


def load_aggregator_pickle(bundle: Bundle):
    """The pickled SongAggregator (``--aggregator pickle``); the runtime default is aggregator.onnx.

    Unpickling runs code, so the file's SHA-256 is checked again right before it is read: a
    pickle swapped after ``load_bundle`` is still refused, and nothing is unpickled unless it is
    the file the exporter wrote.
    """
    import pickle

    path = bundle.file(PICKLE)
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != bundle.manifest["files"][PICKLE]:
        raise BundleError(f"{path}: SHA-256 does not match the manifest (modified or corrupt); refusing to unpickle it")
    return pickle.loads(data)
