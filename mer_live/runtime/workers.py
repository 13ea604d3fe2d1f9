"""Labeling many files in worker processes, results in input order.

Each worker opens the model once (on the CPU, one thread) and streams a file through decoding,
the front end and, on a CPU run, the segment model; the parent aggregates. At most ~2 files per
worker are in flight, so memory stays bounded. Workers ignore Ctrl-C (the parent decides) and die
with their parent, even when it is killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing import get_context

import numpy as np

from mer_live.runtime.bundle import load_bundle
from mer_live.runtime.results import SongResult
from mer_live.runtime.stages import Decoded, Stages

PARENT_POLL_SECONDS = 1.0


def default_workers() -> int:
    """Decoding processes ``mer-live label`` starts unless told: the CPUs, at most 4."""
    return min(4, os.cpu_count() or 1)


@dataclass(frozen=True)
class StagesSpec:
    """What a worker process needs to open the stages its parent runs: the bundle folder, the stride and the
    song model. Worker processes here and on a Ray cluster open them with ``worker_stages``."""

    bundle_path: str
    stride: int = 1
    aggregator: str = "onnx"


@lru_cache(maxsize=2)
def worker_stages(spec: StagesSpec, provider: str = "cpu", threads: int = 1) -> Stages:
    """The stages of ``spec``, opened once per worker process and kept (a Ray worker may hold a decoder's
    and a segment-model actor's)."""
    return Stages(load_bundle(spec.bundle_path), provider=provider, threads=threads, stride=spec.stride,
                  aggregator=spec.aggregator)


def predict_in_processes(model: Stages, paths: list[str], workers: int) -> Iterator[SongResult]:
    """``model.predict_many`` with ``workers`` processes."""
    with_backbone = model.provider == "CPU"  # on CUDA the GPU in this process runs the segment model
    settings = (StagesSpec(str(model.bundle.path), model.stride), with_backbone)  # workers never aggregate
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                               initargs=(os.getpid(),))
    pending: deque[Future] = deque()
    todo = iter(paths)
    try:
        for path in todo:
            pending.append(pool.submit(_label_file, settings, path))
            if len(pending) >= 2 * workers:
                break
        while pending:
            item, outputs = pending.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(pool.submit(_label_file, settings, nxt))
            yield model.finish(item, outputs)
    finally:
        if pending:  # stopped early (Ctrl-C, SIGTERM, --strict): do not wait for files in flight
            _terminate(pool)
        pool.shutdown(wait=True, cancel_futures=True)


def _init_worker(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    _die_with_parent(parent)


def _label_file(settings: tuple[StagesSpec, bool], path: str) -> tuple[Decoded, np.ndarray | None]:
    spec, with_backbone = settings
    model = worker_stages(spec)
    item = model.decode(path)
    if item.error or not with_backbone:
        return item, None
    outputs = model.segment_outputs(item.logmel)
    item.logmel = None  # only the outputs travel back
    return item, outputs


def _die_with_parent(parent: int) -> None:
    """A worker whose parent is gone (killed, even with SIGKILL) exits at once instead of living on:
    the kernel's parent-death signal on Linux, and a watch on the parent everywhere."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _terminate(pool: ProcessPoolExecutor) -> None:
    """End the workers now; ``shutdown`` alone would wait for every file already being decoded."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            proc.terminate()
