"""Whole-clip log-mel cache: decode and transform every clip once, then slice segments from it.

Segments are hop-aligned slices of the clip's log-mel (see ``AudioConfig``), so one cached
array per clip serves every segment length and hop. Entries are keyed by the file's content
and the front-end settings only, so renamed or moved files still hit, and a changed file or
front end misses. Decoding (MP3 above all) dominates, so ``build`` runs it in a thread pool:
libsndfile, soxr and torch release the GIL while they work.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np
import torch

from mer_live.atomic import atomic_file
from mer_live.audio.read import load_audio
from mer_live.audio.samples import pad_to_segment
from mer_live.config import FRONTEND_FIELDS, AudioConfig
from mer_live.errors import AudioError
from mer_live.nn.frontend import LogMel
from mer_live.train.datasets import Clip

CACHE_VERSION = 2  # 2: the real-input two-stage DFT (log-mels within float32 rounding of version 1)
HASH_CHUNK = 1 << 20


def frontend_fingerprint(audio: AudioConfig) -> bytes:
    """The settings a clip's log-mel depends on; segment length and hop are deliberately absent."""
    settings = {name: getattr(audio, name) for name in FRONTEND_FIELDS}
    return json.dumps({"version": CACHE_VERSION, **settings}, sort_keys=True).encode()


def cache_key(path: str | os.PathLike, audio: AudioConfig) -> str:
    digest = hashlib.sha256(frontend_fingerprint(audio))
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def save_atomic(path: Path, array: np.ndarray) -> None:
    """``np.save`` through ``atomic_file``, so a crash never leaves a half-written entry."""
    with atomic_file(path) as f:
        np.save(f, array)


class LogMelCache:
    """``get(path)`` -> float32 (n_mels, frames) log-mel of the whole (padded) clip, cached on disk.

    With ``condition`` the clip is first played through it (``conditions.CONDITIONS``, or ``air-K``: the
    K-th random recording chain for training), from a generator seeded by the file and the condition, so
    the entry is the same on every run."""

    def __init__(self, cache_dir: str | os.PathLike, audio: AudioConfig, condition: str | None = None) -> None:
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.audio = audio
        self.condition = condition
        self.logmel = LogMel(audio).eval()
        self.computed = 0
        self.loaded = 0
        self._count_lock = threading.Lock()

    def entry(self, path: str | os.PathLike) -> Path:
        key = cache_key(path, self.audio)
        return self.cache_dir / (f"{key}-{self.condition}.npy" if self.condition else f"{key}.npy")

    def compute(self, path: str | os.PathLike) -> np.ndarray:
        samples = load_audio(path, self.audio.sample_rate)
        if self.condition:
            samples = self._play_through(samples, cache_key(path, self.audio))
        samples = pad_to_segment(samples, self.audio)
        with torch.no_grad():
            return self.logmel(torch.from_numpy(samples)[None])[0].numpy()

    def _play_through(self, samples: np.ndarray, key: str) -> np.ndarray:
        from mer_live.train import conditions

        seed = int(hashlib.sha256(f"{key}:{self.condition}".encode()).hexdigest()[:16], 16)
        rng = np.random.default_rng(seed)
        if self.condition.startswith("air-"):
            phone = conditions.air_phone_share(self.condition)
            return conditions.through_the_air(samples, self.audio.sample_rate, rng, phone)
        return conditions.apply_condition(samples, self.audio.sample_rate, self.condition, rng)

    def get(self, path: str | os.PathLike) -> np.ndarray:
        """Load the cached log-mel or compute and store it; raises ``AudioError`` if undecodable."""
        try:
            entry = self.entry(path)
        except OSError as exc:
            raise AudioError(path, f"cannot read file ({exc.strerror or exc})") from None
        if entry.is_file():
            try:
                array = np.load(entry)
            except (OSError, ValueError):
                pass  # unreadable entry: recompute and overwrite it
            else:
                with self._count_lock:
                    self.loaded += 1
                return array
        array = self.compute(path)
        save_atomic(entry, array)
        with self._count_lock:
            self.computed += 1
        return array

    def build(
        self,
        clips: Iterable[Clip | str | os.PathLike],
        workers: int = 1,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[dict[Path, np.ndarray], list[tuple[Path, str]]]:
        """Log-mels of all clips plus (path, reason) for each that fails to decode (skipped, not fatal).

        At most ``2 * workers`` files are in flight, so decoded audio never piles up in memory.
        ``progress(done, total)`` is called after each file.
        """
        paths = list(dict.fromkeys(Path(getattr(c, "path", c)) for c in clips))
        arrays: dict[Path, np.ndarray] = {}
        failures: list[tuple[Path, str]] = []

        def finish(path: Path, job: Callable[[], np.ndarray]) -> None:
            try:
                arrays[path] = job()
            except AudioError as exc:
                failures.append((path, exc.reason))
            if progress is not None:
                progress(len(arrays) + len(failures), len(paths))

        if workers <= 1:
            for path in paths:
                finish(path, lambda p=path: self.get(p))
        else:
            with ThreadPoolExecutor(workers) as pool:
                pending: dict = {}
                for path in paths:
                    if len(pending) >= 2 * workers:
                        done, _ = wait(pending, return_when=FIRST_COMPLETED)
                        for future in done:
                            finish(pending.pop(future), future.result)
                    pending[pool.submit(self.get, path)] = path
                for future in list(pending):
                    finish(pending.pop(future), future.result)
        ordered = {path: arrays[path] for path in paths if path in arrays}
        return ordered, sorted(failures)
