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


def predict_in_processes(model: Stages, paths: list[str], workers: int) -> Iterator[SongResult]:
    """``model.predict_many`` with ``workers`` processes."""
    with_backbone = model.provider == "CPU"  # on CUDA the GPU in this process runs the segment model
    settings = (str(model.bundle.path), model.stride, with_backbone)
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


@lru_cache(maxsize=1)
def _worker_model(bundle_path: str, stride: int) -> Stages:
    return Stages(load_bundle(bundle_path), provider="cpu", threads=1, stride=stride)


def _label_file(settings: tuple[str, int, bool], path: str) -> tuple[Decoded, np.ndarray | None]:
    bundle_path, stride, with_backbone = settings
    model = _worker_model(bundle_path, stride)
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
