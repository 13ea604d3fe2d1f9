"""The pipeline's stages on a verified bundle: decode, front end, segment model, song aggregation.

``Stages`` opens the bundle's ONNX Runtime sessions and runs one stage per method; batch labeling, the
worker processes, the Ray path and the live ``Stream`` compose them. ``engine.Model`` adds the API
(``predict``, ``predict_many``, ``stream``) on top, so nothing here imports the stream or the workers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from mer_live.audio.read import audio_duration, decoder_messages, iter_audio_blocks
from mer_live.config import AudioConfig, SongConfig
from mer_live.errors import AudioError, MerLiveError, one_line
from mer_live.runtime.bundle import Bundle
from mer_live.runtime.frames import FrameStream, calibrate_min_run, clip_frames, segment_outputs
from mer_live.runtime.results import SongResult
from mer_live.runtime.sessions import Graph, open_aggregator, open_session

# Segments per backbone run over a clip, scaled down for larger models: ORT's arena grows with the batch's
# activations (musicnn's at 16 segments took ~800 MB per process), and a big CNN gains nothing from batching.
CLIP_BATCH_MACS = 16 * 200_000_000
MAX_BATCH = 16


@dataclass
class Decoded:
    """A file through decoding and the front end: its log-mel (or why there is none)."""

    path: str
    duration: float = 0.0
    logmel: np.ndarray | None = None
    error: str = ""
    messages: list[str] = field(default_factory=list)  # what the C decoders printed about this file


class Stages:
    """A verified bundle with its ONNX Runtime sessions open, one method per stage of the pipeline.

    ``stride`` > 1 labels from every stride-th segment only (streams then hop as far);
    ``aggregator="pickle"`` uses the bundle's scikit-learn song model instead of its ONNX graph.
    """

    def __init__(self, bundle: Bundle, provider: str = "auto", threads: int | None = None, stride: int = 1,
                 aggregator: str = "onnx") -> None:
        self.bundle = bundle
        self.provider_request, self.threads, self.stride, self.aggregator_kind = provider, threads, stride, aggregator
        try:
            self.audio: AudioConfig = bundle.audio.strided(stride)
        except ValueError as exc:
            raise MerLiveError(f"--stride {stride}: {exc} (at most segment length / hop)") from None
        self.song_config: SongConfig = bundle.song
        self.tasks = list(bundle.song.tasks)
        for task in ("valence", "arousal"):
            if task not in self.tasks:
                raise MerLiveError(f"{bundle.path}: the model's tasks {self.tasks} lack {task}")
        self.frontend = Graph(open_session(bundle.file("frontend.onnx"), provider, threads))
        self.backbone = Graph(open_session(bundle.file("backbone.onnx"), provider, threads))
        self.aggregator = open_aggregator(bundle, aggregator)
        self.provider = self.backbone.provider
        self.embedding_dims = bundle.embedding_dims
        self.n_outputs = len(self.tasks) + self.embedding_dims  # per segment: probabilities, then the embedding
        macs = int(bundle.manifest.get("model", {}).get("macs_per_segment") or 0)
        self.clip_batch = max(1, min(MAX_BATCH, CLIP_BATCH_MACS // macs)) if macs else MAX_BATCH
        self.min_run = calibrate_min_run(self.frontend, self.audio)

    def frames(self) -> FrameStream:
        """A new incremental front end for one stream or clip."""
        return FrameStream(self.frontend, self.audio, self.min_run)

    def logmel(self, blocks: Iterable[np.ndarray], expected_samples: int = 0) -> tuple[np.ndarray, int]:
        """A clip's log-mel from its audio blocks at the model's rate, and its length in samples."""
        return clip_frames(self.frames(), blocks, expected_samples)

    def decode(self, path: str) -> Decoded:
        """Decode one file and run the front end; every failure becomes a one-line reason."""
        with decoder_messages() as messages:
            item = self._decode(path)
        item.messages = messages
        return item

    def _decode(self, path: str) -> Decoded:
        c = self.audio
        try:
            expected = round(audio_duration(path) * c.sample_rate)
            logmel, n_samples = self.logmel(iter_audio_blocks(path, c.sample_rate), expected)
            return Decoded(path, c.seconds(n_samples), logmel=logmel)
        except AudioError as exc:
            return Decoded(path, error=exc.reason)
        except MemoryError:
            return Decoded(path, error="out of memory while decoding (file too long?)")
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch
            return Decoded(path, error=one_line(exc))

    def segment_outputs(self, logmel: np.ndarray) -> np.ndarray:
        """(n_segments, n_outputs) segment probabilities (then embeddings) from a clip's log-mel."""
        return segment_outputs(self.backbone, logmel, self.audio, self.clip_batch)

    def song_probs(self, features: np.ndarray) -> np.ndarray:
        """(n, n_features) song statistics -> (n, n_tasks) song-level P(high)."""
        return self.aggregator(np.atleast_2d(features).astype(np.float32))

    def result(self, path: str | None, duration: float, outputs: np.ndarray, messages: Iterable[str] = ()
               ) -> SongResult:
        """The song estimate from a clip's segment outputs."""
        song = self.song_probs(self.bundle.song_vector(outputs))[0]
        return self.song_result(path, duration, dict(zip(self.tasks, map(float, song))), outputs[:, : len(self.tasks)],
                                messages)

    def song_result(self, path: str | None, duration: float, song: Mapping[str, float], segments: np.ndarray,
                    messages: Iterable[str] = ()) -> SongResult:
        """A ``SongResult`` from its song estimate and (n, tasks) segment P(high), wherever they were computed."""
        return SongResult(dict(song), len(segments), path=path, duration=duration, tasks=tuple(self.tasks),
                          segments=np.ascontiguousarray(segments), starts=self.segment_times(len(segments)),
                          messages=tuple(messages))

    def segment_times(self, n_segments: int) -> np.ndarray:
        """First second of each of a clip's ``n_segments`` segments."""
        return self.audio.seconds(self.audio.hop_samples) * np.arange(n_segments)

    def failed(self, path: str | None, error: str, messages: Iterable[str] = ()) -> SongResult:
        return SongResult.failed(path, error, tuple(self.tasks), tuple(messages))

    def finish(self, item: Decoded, outputs: np.ndarray | None = None) -> SongResult:
        """A decoded file's result (its segment outputs computed here unless given)."""
        if item.error:
            return self.failed(item.path, item.error, item.messages)
        if outputs is None:
            outputs = self.segment_outputs(item.logmel)
        return self.result(item.path, item.duration, outputs, item.messages)

    def reference(self) -> Graph:
        """``segment.onnx``: raw audio windows to segment outputs in one graph, the reference path."""
        return Graph(open_session(self.bundle.file("segment.onnx"), self.provider_request, self.threads))

    def warm_up(self) -> None:
        """Run every graph once so first-run costs (allocations, cuDNN search) are not timed."""
        c = self.audio
        self.frontend(np.zeros((1, c.segment_samples), np.float32))
        self.frontend(np.zeros((1, c.frames_samples(self.min_run)), np.float32))
        self.backbone(np.zeros((1, c.n_mels, c.segment_frames), np.float32))
        self.song_probs(np.zeros((1, self.bundle.n_features)))
