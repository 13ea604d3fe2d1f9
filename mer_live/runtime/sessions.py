"""ONNX Runtime sessions for a bundle's graphs: the provider choice, threads and one call shape.

Opening a session is the only place mer-live talks to ONNX Runtime's configuration; everything
else calls a ``Graph`` like a function.
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort

from mer_live.errors import MerLiveError
from mer_live.runtime.bundle import Bundle, load_aggregator_pickle
from mer_live.runtime.choices import AGGREGATORS, PROVIDERS

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
ORT_LOG_ERRORS_ONLY = 3  # ORT logs a CUDA load failure and a fallback warning itself; we report the provider once


def default_threads() -> int:
    """A small CNN on a CPU wants one or two threads; more only add contention."""
    return 1 if (os.cpu_count() or 1) <= 2 else 2


def open_session(path: os.PathLike | str, provider: str = "auto", threads: int | None = None
                 ) -> ort.InferenceSession:
    """An InferenceSession on CUDA when asked for (or available, for "auto"), else the CPU."""
    if provider not in PROVIDERS:
        raise MerLiveError(f"unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}")
    ort.set_default_logger_severity(ORT_LOG_ERRORS_ONLY)
    available = ort.get_available_providers()
    if provider == "cuda" and CUDA not in available:
        raise MerLiveError("--compute cuda: this onnxruntime has no CUDA provider; install the gpu extra "
                           "(onnxruntime-gpu, without onnxruntime) or use --compute cpu")
    wanted = [CUDA, CPU] if provider == "cuda" or (provider == "auto" and CUDA in available) else [CPU]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=wanted)
    except Exception as exc:  # ORT raises its own exception types; name the file in one line
        raise MerLiveError(f"{path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]})") from None
    if provider == "cuda" and session.get_providers()[0] != CUDA:
        raise MerLiveError("--compute cuda: CUDA could not be initialised (CUDA 12/13 and cuDNN 9 needed); "
                           "use --compute cpu")
    return session


class Graph:
    """One session with its single input; several outputs come back side by side as one array
    (a segment graph's probabilities, then the embedding the song aggregator summarises)."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session
        self.input = session.get_inputs()[0].name
        self.outputs = [output.name for output in session.get_outputs()]

    @property
    def provider(self) -> str:
        """Where it runs, in words: "CUDA" or "CPU"."""
        return "CUDA" if self.session.get_providers()[0] == CUDA else "CPU"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = self.session.run(self.outputs, {self.input: x})
        return out[0] if len(out) == 1 else np.concatenate(out, axis=1)


class PickleAggregator:
    """The bundle's pickled sklearn aggregator (``load_aggregator_pickle`` re-checks its hash)."""

    def __init__(self, bundle: Bundle) -> None:
        self.model = load_aggregator_pickle(bundle)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_proba(np.atleast_2d(features).astype(np.float64)), dtype=np.float32)


def open_aggregator(bundle: Bundle, kind: str = "onnx"):
    """The song-level model: (n, n_features) statistics -> (n, n_tasks) P(high). Small: always the CPU."""
    if kind not in AGGREGATORS:
        raise MerLiveError(f"unknown aggregator {kind!r}; choose one of {', '.join(AGGREGATORS)}")
    if kind == "pickle":
        return PickleAggregator(bundle)
    return Graph(open_session(bundle.file("aggregator.onnx"), "cpu", 1))
