"""The engine: ``Model``, the API over a bundle's pipeline stages (``Model.stages``), and ``load``.

``predict`` runs the stages on one file or array, ``predict_many`` on many (in worker processes when
asked), ``stream`` opens a live ``Stream`` over the same front end. It never imports torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import numpy as np

from mer_live.audio.samples import StreamResampler
from mer_live.deprecation import deprecated
from mer_live.errors import AudioError, MerLiveError
from mer_live.runtime.bundle import Bundle, load_bundle, packaged_name
from mer_live.runtime.results import SongResult
from mer_live.runtime.stages import Stages
from mer_live.runtime.stream import Stream


class Model:
    """A verified bundle with its ONNX Runtime sessions open: ``predict``, ``predict_many``, ``stream``.

    ``stride`` > 1 labels from every stride-th segment only (streams then hop as far);
    ``aggregator="pickle"`` uses the bundle's scikit-learn song model instead of its ONNX graph.
    ``stages`` runs the pipeline one stage at a time, for pipelines of your own: ``stages.decode(path)``
    (decoding and the front end), ``stages.segment_outputs(logmel)``, ``stages.finish(decoded, outputs)``.
    """

    def __init__(self, bundle: Bundle, provider: str = "auto", threads: int | None = None, stride: int = 1,
                 aggregator: str = "onnx") -> None:
        self.stages = Stages(bundle, provider=provider, threads=threads, stride=stride, aggregator=aggregator)
        self.bundle, self.audio, self.tasks = bundle, self.stages.audio, self.stages.tasks
        self.provider, self.stride = self.stages.provider, stride

    def __getattr__(self, name: str):
        """The stages were ``Model``'s own methods before ``Model.stages``: their old names answer for one release."""
        stages = self.__dict__.get("stages")
        if stages is None or name.startswith("_") or not hasattr(stages, name):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        deprecated(f"Model.{name}", f"Model.stages.{name}")
        return getattr(stages, name)

    def predict(self, audio: str | os.PathLike | np.ndarray, sr: int | None = None) -> SongResult:
        """One file (a path) or one array of samples at ``sr`` (mono, or (frames, channels)).

        A file that cannot be read raises ``AudioError`` naming it and why."""
        if isinstance(audio, np.ndarray):
            if sr is None:
                raise MerLiveError("predict(array) needs sr, the array's sample rate")
            samples = StreamResampler(sr, self.audio.sample_rate)(audio, last=True)
            if len(samples) == 0:
                raise MerLiveError("predict(array): the array holds no samples")
            logmel, n = self.stages.logmel([samples], len(samples))
            return self.stages.result(None, self.audio.seconds(n), self.stages.segment_outputs(logmel))
        path = os.fspath(audio)
        item = self.stages.decode(path)
        if item.error:
            raise AudioError(path, item.error)
        return self.stages.finish(item)

    def predict_many(self, paths: Iterable[str | os.PathLike], workers: int | None = None) -> Iterator[SongResult]:
        """Results in input order; a file that fails is a result with ``error`` set, and the rest go on.

        In this process by default. ``workers`` > 1 decodes in that many processes (``default_workers()``
        is what ``mer-live label`` takes: the CPUs, at most 4), started with ``spawn``, so the script then
        needs the ``if __name__ == "__main__":`` guard; on CUDA they stop at the log-mel and this process
        runs the segment model on the GPU."""
        from mer_live.runtime.workers import predict_in_processes

        paths = [os.fspath(p) for p in paths]
        if workers is None or workers <= 1 or len(paths) <= 1:
            for path in paths:
                yield self.stages.finish(self.stages.decode(path))
            return
        yield from predict_in_processes(self.stages, paths, workers)

    def stream(self, horizon: float | None = None, silence_reset: bool = True, mode: str = "incremental"
               ) -> Stream:
        """A live stream (``Stream.feed(samples, sr)`` -> updates); see ``Stream``."""
        return Stream(self.stages, horizon=horizon, silence_reset=silence_reset, mode=mode)

    @property
    def name(self) -> str:
        """The packaged name ("default", "fast", ...) of this bundle, else its folder; with the stride when not 1."""
        name = packaged_name(self.bundle.path) or str(self.bundle.path)
        return name if self.stride == 1 else f"{name} --stride {self.stride}"

    def warm_up(self) -> None:
        """Run every graph once so first-run costs (allocations, cuDNN search) are not timed."""
        self.stages.warm_up()


def load(path: str | os.PathLike | None = None, provider: str = "auto", threads: int | None = None,
         stride: int = 1, aggregator: str = "onnx") -> Model:
    """A model: the packaged default (None), a packaged name ("default", "fast", "musicnn", "compact") or a
    bundle folder.

    ``provider``: "auto" (CUDA when this onnxruntime has it, else the CPU), "cpu" or "cuda"."""
    return Model(load_bundle(path), provider=provider, threads=threads, stride=stride, aggregator=aggregator)
