"""ONNX Runtime inference for streams and whole clips, reading only the bundle.

The front end is most of the cost, so the streaming path never computes a log-mel frame twice:
framing is uncentered and hop-aligned, so window k's frames are frames
[k * hop_frames, k * hop_frames + segment_frames) of the stream's log-mel. The engine keeps the
last window's frames, runs ``frontend.onnx`` only on the audio of the new frames (the new hop
plus n_fft - hop_length samples of left context) and ``backbone.onnx`` on the window's frames.
``segment.onnx`` (raw audio to probabilities, one graph) stays as the ``mode="full"`` reference.
Whole clips (batch labeling) run the front end once over the clip and slice segment frames.
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort

from mer_live.bundle import Bundle, load_aggregator_pickle
from mer_live.config import AudioConfig
from mer_live.errors import MerLiveError
from mer_live.realtime.windower import Windows

PROVIDERS = ("auto", "cpu", "cuda")
MODES = ("incremental", "full")
AGGREGATORS = ("onnx", "pickle")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
CHUNK_FRAMES = 1024  # front-end frames per run over a long clip (about 24 s at 22050 Hz / 512; ~20 MB of ORT arena)
MIN_RUN_FRAMES = 256  # fewest frames of a clip's last front-end run (it repeats computed ones if need be)
# Segments per backbone run over a clip, scaled down for larger models: ORT's arena grows with the batch's
# activations (musicnn's at 16 segments took ~800 MB per process), and a big CNN gains nothing from batching.
CLIP_BATCH_MACS = 16 * 200_000_000

# ORT logs a CUDA library load failure and a fallback warning itself; we report the provider once.
ort.set_default_logger_severity(3)


def default_threads() -> int:
    """A small CNN on a CPU wants one or two threads; more only add contention."""
    return 1 if (os.cpu_count() or 1) <= 2 else 2


def open_session(path: os.PathLike | str, provider: str = "auto", threads: int | None = None
                 ) -> ort.InferenceSession:
    """An InferenceSession on CUDA when asked for (or available, for "auto"), else the CPU."""
    if provider not in PROVIDERS:
        raise MerLiveError(f"unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}")
    available = ort.get_available_providers()
    if provider == "cuda" and CUDA not in available:
        raise MerLiveError("--provider cuda: this onnxruntime has no CUDA provider; install the gpu extra "
                           "(onnxruntime-gpu, without onnxruntime) or use --provider cpu")
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
        raise MerLiveError("--provider cuda: CUDA could not be initialised (CUDA 12/13 and cuDNN 9 needed); "
                           "use --provider cpu")
    return session


def provider_label(session: ort.InferenceSession) -> str:
    return "CUDA" if session.get_providers()[0] == CUDA else "CPU"


class Graph:
    """One session with its single input; several outputs come back side by side as one array
    (a segment graph's probabilities, then the embedding the song aggregator summarises)."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session
        self.input = session.get_inputs()[0].name
        self.outputs = [output.name for output in session.get_outputs()]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = self.session.run(self.outputs, {self.input: x})
        return out[0] if len(out) == 1 else np.concatenate(out, axis=1)


class LogmelStream:
    """A clip's log-mel (every frame its segments use) from audio fed in blocks of any size.

    Framing is uncentered and hop-aligned (frame j covers samples [j * hop, j * hop + n_fft)), so
    front-end runs of CHUNK_FRAMES frames over consecutive audio give the whole clip's frames; only
    the frames and the audio of frames still to come are held, never the clip. A short last run
    also recomputes frames before it, up to MIN_RUN_FRAMES: short inputs may round differently
    (see ``Engine._calibrate``). A clip shorter than one segment is zero-padded to one, as
    ``audio.cut_segments`` does. Frames go into one array sized for ``expected_samples`` (a header's
    count) and grown if need be: its untouched tail costs no memory, and frames are never copied
    into another array at the end.
    """

    def __init__(self, frontend, config: AudioConfig, expected_samples: int = 0) -> None:
        self.frontend = frontend  # (1, samples) audio -> (1, n_mels, frames)
        self.config = config
        self._frames = np.empty((config.n_mels, expected_samples // config.hop_length + CHUNK_FRAMES), np.float32)
        self.n_samples = 0  # fed so far
        self._pending: list[np.ndarray] = []  # audio from frame (done - context)'s first sample
        self._pending_samples = 0
        self._done = 0  # frames computed
        self._context = 0  # computed frames the pending audio starts with

    def push(self, samples: np.ndarray) -> None:
        c = self.config
        self.n_samples += len(samples)
        self._pending.append(np.asarray(samples, dtype=np.float32))
        self._pending_samples += len(samples)
        run = (CHUNK_FRAMES - 1) * c.hop_length + c.n_fft
        start = self._context * c.hop_length
        if self._pending_samples - start < run:
            return
        audio = np.concatenate(self._pending)
        while len(audio) - start >= run:
            self._store(self.frontend(audio[None, start : start + run])[0])
            start += CHUNK_FRAMES * c.hop_length
        self._context = MIN_RUN_FRAMES
        self._pending = [audio[start - MIN_RUN_FRAMES * c.hop_length :].copy()]
        self._pending_samples = len(self._pending[0])

    def finish(self) -> np.ndarray:
        """(n_mels, frames) log-mel of every frame the clip's segments use."""
        c = self.config
        audio = np.concatenate([*self._pending, np.zeros(max(0, c.segment_samples - self.n_samples), np.float32)])
        n_frames = c.segment_frames_span(c.n_segments(max(self.n_samples, c.segment_samples)))
        rest = n_frames - self._done
        if rest > 0:
            context = min(self._context, max(0, MIN_RUN_FRAMES - rest))
            begin = (self._context - context) * c.hop_length
            last = self.frontend(audio[None, begin : begin + (context + rest - 1) * c.hop_length + c.n_fft])[0]
            self._store(last[:, context:])
        return self._frames[:, :n_frames]

    def _store(self, frames: np.ndarray) -> None:
        end = self._done + frames.shape[1]
        if end > self._frames.shape[1]:  # the header undercounted (or gave nothing): grow
            grown = np.empty((self.config.n_mels, max(end, 2 * self._frames.shape[1])), np.float32)
            grown[:, : self._done] = self._frames[:, : self._done]
            self._frames = grown
        self._frames[:, self._done : end] = frames
        self._done = end


def clip_logmel(frontend, config: AudioConfig, audio: np.ndarray) -> np.ndarray:
    """A whole clip's log-mel, as ``LogmelStream`` gives it."""
    stream = LogmelStream(frontend, config, len(audio))
    stream.push(audio)
    return stream.finish()


def segment_probs(backbone, config: AudioConfig, logmel: np.ndarray, batch: int = 16) -> np.ndarray:
    """(n_segments, n_tasks) segment probabilities from a clip's log-mel (see ``LogmelStream``).

    ``backbone`` maps (n, n_mels, segment_frames) to (n, n_tasks); a larger batch only grows ORT's arena.
    """
    c = config
    n_segments = c.segments_in_frames(logmel.shape[1])
    view = np.lib.stride_tricks.sliding_window_view(logmel, c.segment_frames, axis=1)[:, :: c.hop_frames]
    segments = view[:, :n_segments].transpose(1, 0, 2)  # (n_segments, n_mels, segment_frames)
    parts = [backbone(np.ascontiguousarray(segments[i : i + batch])) for i in range(0, n_segments, batch)]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


class PickleAggregator:
    """The bundle's pickled sklearn aggregator (``load_aggregator_pickle`` re-checks its hash)."""

    def __init__(self, bundle: Bundle) -> None:
        self.model = load_aggregator_pickle(bundle)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_proba(np.atleast_2d(features).astype(np.float64)), dtype=np.float32)


class Engine:
    """Segment probabilities for windows and clips, and song probabilities from statistics."""

    def __init__(self, bundle: Bundle, provider: str = "auto", threads: int | None = None,
                 mode: str = "incremental", aggregator: str = "onnx", max_batch: int = 16, stride: int = 1) -> None:
        if mode not in MODES:
            raise MerLiveError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        if aggregator not in AGGREGATORS:
            raise MerLiveError(f"unknown aggregator {aggregator!r}; choose one of {', '.join(AGGREGATORS)}")
        self.bundle = bundle
        try:  # stride > 1: every stride-th segment only (labeling); streams use stride 1
            self.config = config = bundle.audio.strided(stride)
        except ValueError as exc:
            raise MerLiveError(f"--stride {stride}: {exc} (at most segment length / hop)") from None
        self.mode = mode
        self.max_batch = max_batch
        if mode == "full":
            self.segment = Graph(open_session(bundle.file("segment.onnx"), provider, threads))
            main = self.segment.session
        else:
            self.frontend = Graph(open_session(bundle.file("frontend.onnx"), provider, threads))
            self.backbone = Graph(open_session(bundle.file("backbone.onnx"), provider, threads))
            main = self.backbone.session
        self.provider = provider_label(main)
        if aggregator == "pickle":
            self.aggregator = PickleAggregator(bundle)
        else:
            self.aggregator = Graph(open_session(bundle.file("aggregator.onnx"), "cpu", 1))
        self.n_tasks = len(bundle.tasks)
        macs = int(bundle.manifest.get("model", {}).get("macs_per_segment") or 0)
        self.clip_batch = max(1, min(max_batch, CLIP_BATCH_MACS // macs)) if macs else max_batch
        self.n_outputs = self.n_tasks + bundle.embedding_dims  # per segment: probabilities, then the embedding
        # Frames a window shares with the next one, and the audio that yields a hop's new frames.
        self.keep_frames = config.segment_frames - config.hop_frames
        self.tail_frames = config.segment_frames if mode == "full" else self._calibrate()
        self._frames = np.zeros((config.n_mels, self.keep_frames + max_batch * config.hop_frames), np.float32)
        self._batch = np.zeros((max_batch, config.n_mels, config.segment_frames), np.float32)
        self.reset()

    def reset(self) -> None:
        """Forget the cached frames (a new stream, or a gap in this one)."""
        self._last_start: int | None = None

    def warm_up(self) -> None:
        """Run every graph once so first-run costs (allocations, cuDNN search) are not timed."""
        c = self.config
        if self.mode == "full":
            self.segment(np.zeros((1, c.segment_samples), np.float32))
        else:
            self.frontend(np.zeros((1, c.segment_samples), np.float32))
            self.frontend(np.zeros((1, self.config.frames_samples(self.tail_frames)), np.float32))
            self.backbone(np.zeros((1, c.n_mels, c.segment_frames), np.float32))
        self.song_probs(np.zeros((1, self.bundle.n_features)))

    def process(self, windows: Windows) -> np.ndarray:
        """(n, n_outputs) probabilities (and embeddings) for consecutive stream windows, in their order."""
        if len(windows) == 0:
            return np.zeros((0, self.n_outputs), np.float32)
        if self.mode == "full":
            return self.segment(windows.audio)
        parts = [self._incremental(windows.audio[i : i + self.max_batch], windows.starts[i : i + self.max_batch])
                 for i in range(0, len(windows), self.max_batch)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _incremental(self, audio: np.ndarray, starts: np.ndarray) -> np.ndarray:
        c = self.config
        keep, hop_f = self.keep_frames, c.hop_frames
        contiguous = self._last_start is not None and np.array_equal(
            starts, self._last_start + c.hop_samples * np.arange(1, len(starts) + 1))
        n_done = 0
        if not contiguous:  # first window (or after a gap): all its frames, then incremental again
            self._batch[0] = self.frontend(audio[:1])[0]
            self._frames[:, :keep] = self._batch[0, :, hop_f:]
            n_done = 1
        m = len(audio) - n_done
        if m:
            new = self._tail_frames(audio[n_done:])  # (m, n_mels, hop_frames)
            self._frames[:, keep : keep + m * hop_f] = new.transpose(1, 0, 2).reshape(c.n_mels, m * hop_f)
            for i in range(m):
                self._batch[n_done + i] = self._frames[:, i * hop_f : i * hop_f + c.segment_frames]
            self._frames[:, :keep] = self._frames[:, m * hop_f : m * hop_f + keep]
        self._last_start = int(starts[-1])
        return self.backbone(self._batch[: len(audio)])

    def _tail_frames(self, audio: np.ndarray) -> np.ndarray:
        """Log-mel of each window's last hop_frames frames (computed with tail_frames of context)."""
        out = self.frontend(np.ascontiguousarray(audio[:, -self.config.frames_samples(self.tail_frames) :]))
        return out[:, :, -self.config.hop_frames :]

    def _calibrate(self) -> int:
        """Fewest frames per front-end run whose last hop_frames equal the whole window's bit for bit.

        A CPU kernel may pick another summation order for short inputs (MLAS did below ~66 frames
        here), shifting near-floor log-mel bins by ~1e-4; running at least this many frames keeps
        the incremental path identical to ``segment.onnx``. Costs a few front-end runs at start-up.
        """
        c = self.config
        rng = np.random.default_rng(0)
        t = np.arange(c.segment_samples) / c.sample_rate
        window = (0.3 * np.sin(2 * np.pi * 440 * t) + 1e-3 * rng.standard_normal(len(t))).astype(np.float32)[None]
        reference = self.frontend(window)[0, :, -c.hop_frames :]
        step = max(1, c.hop_frames // 8)
        for frames in range(c.hop_frames, c.segment_frames, step):
            if np.array_equal(self.frontend(window[:, -c.frames_samples(frames) :])[0, :, -c.hop_frames :], reference):
                return frames
        return c.segment_frames

    def window_probs(self, audio: np.ndarray) -> np.ndarray:
        """The reference: ``segment.onnx`` on (n, segment_samples) windows, independent of state."""
        if not hasattr(self, "segment"):
            self.segment = Graph(open_session(self.bundle.file("segment.onnx"), "cpu", 1))
        return self.segment(np.ascontiguousarray(audio, dtype=np.float32))

    def clip_logmel(self, audio: np.ndarray) -> np.ndarray:
        return clip_logmel(self.frontend, self.config, audio)

    def clip_probs_from_logmel(self, logmel: np.ndarray) -> np.ndarray:
        return segment_probs(self.backbone, self.config, logmel, self.clip_batch)

    def clip_probs(self, audio: np.ndarray) -> np.ndarray:
        """Segment probabilities of a whole clip (segments as ``audio.cut_segments``)."""
        return self.clip_probs_from_logmel(self.clip_logmel(audio))

    def song_probs(self, features: np.ndarray) -> np.ndarray:
        """(n, n_features) song statistics -> (n, n_tasks) song-level P(high)."""
        return self.aggregator(np.atleast_2d(features).astype(np.float32))
