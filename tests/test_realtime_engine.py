import io
import json
import time

import numpy as np
import pytest

from mer_live.audio import cut_segments, load_audio, pad_to_segment
from mer_live.errors import MerLiveError
from mer_live.realtime import engine as engine_module
from mer_live.realtime.engine import Engine, LogmelStream
from mer_live.realtime.label import label_files
from mer_live.realtime.pipeline import Pipeline
from mer_live.realtime.sources import Block, FileSource
from mer_live.realtime.windower import Windower
from mer_live.stats import segment_statistics
from tests.realtime_helpers import music_wav, tiny_bundle

TOL = 1e-5


def noise_music(seconds: float, sr: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 330 * t * (1 + 0.1 * np.sin(t))) + 0.1 * rng.standard_normal(len(t))
    return x.astype(np.float32)


@pytest.mark.parametrize("segment_seconds", [3.0, 1.5])
@pytest.mark.parametrize("block", [100, 4096, 22050 + 7, 10**6])
def test_incremental_front_end_equals_segment_graph(segment_seconds, block):
    bundle = tiny_bundle(segment_seconds)
    engine = Engine(bundle, provider="cpu", max_batch=4)
    audio = noise_music(12.0, bundle.audio.sample_rate)
    windower = Windower(bundle.audio)
    got = np.concatenate([engine.process(windower.push(audio[i : i + block]))
                          for i in range(0, len(audio), block)])
    reference = engine.window_probs(cut_segments(audio, bundle.audio))
    assert got.shape == reference.shape
    assert np.abs(got - reference).max() <= TOL
    assert reference.std(axis=0).min() > 1e-3  # the tiny model's outputs really vary


def test_full_mode_and_clip_path_equal_the_reference():
    bundle = tiny_bundle()
    audio = noise_music(9.5, bundle.audio.sample_rate)
    full = Engine(bundle, provider="cpu", mode="full")
    reference = full.window_probs(cut_segments(audio, bundle.audio))
    windower = Windower(bundle.audio)
    assert np.abs(full.process(windower.push(audio)) - reference).max() <= TOL
    engine = Engine(bundle, provider="cpu")
    assert np.abs(engine.clip_probs(audio) - reference).max() <= TOL
    short = audio[:5000]  # shorter than a segment: zero-padded, as offline
    assert np.abs(engine.clip_probs(short) - full.window_probs(cut_segments(short, bundle.audio))).max() <= TOL


def test_logmel_stream_equals_one_front_end_run_over_the_clip(monkeypatch):
    monkeypatch.setattr(engine_module, "CHUNK_FRAMES", 300)
    monkeypatch.setattr(engine_module, "MIN_RUN_FRAMES", 100)
    bundle = tiny_bundle()
    c = bundle.audio
    engine = Engine(bundle, provider="cpu")
    audio = noise_music(20.0, c.sample_rate)
    # shorter than a segment, one segment, a remainder of 0, 1 and 180 frames after whole runs, and longer
    for n in (5000, c.segment_samples, 600 * 512 + 512, 601 * 512 + 512, 780 * 512 + 700, len(audio)):
        padded = pad_to_segment(audio[:n], c)
        n_frames = c.segment_frames_span(c.n_segments(len(padded)))
        reference = engine.frontend(padded[None])[0, :, :n_frames]
        for block, expected in ((777, 0), (c.sample_rate + 7, n), (10**6, n // 2)):
            stream = LogmelStream(engine.frontend, c, expected)
            for i in range(0, n, block):
                stream.push(audio[i : min(n, i + block)])
            assert np.array_equal(stream.finish(), reference), (n, block)
            assert stream.n_samples == n


def test_pickle_and_onnx_aggregators_agree():
    bundle = tiny_bundle()
    features = segment_statistics(np.random.default_rng(0).random((20, 2)))
    onnx = Engine(bundle, provider="cpu").song_probs(features)
    pickle = Engine(bundle, provider="cpu", aggregator="pickle").song_probs(features)
    assert onnx.shape == (1, 2)
    assert np.abs(onnx - pickle).max() < 1e-5


def test_provider_is_reported_and_cuda_refused_clearly_without_it():
    import onnxruntime as ort

    engine = Engine(tiny_bundle(), provider="auto")
    assert engine.provider in ("CPU", "CUDA")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert engine.provider == "CPU"
        with pytest.raises(MerLiveError, match="CUDA"):
            Engine(tiny_bundle(), provider="cuda")


def _label(path, bundle) -> dict:
    out = io.StringIO()
    assert label_files(bundle, [str(path)], fmt="jsonl", segments=True, workers=0, stdout=out,
                       stderr=io.StringIO()) == 0
    return json.loads(out.getvalue())


def _streamed(path, bundle, block: int | None):
    """Updates of the live pipeline on a file, re-blocked to ``block`` samples (None: as read)."""
    pipeline = Pipeline(Engine(bundle, provider="cpu"), horizon=3600, silence_reset=False)
    blocks = [b.samples for b in FileSource(path, bundle.audio.sample_rate, fast=True)]
    if block is not None:
        audio = np.concatenate(blocks)
        blocks = [audio[i : i + block] for i in range(0, len(audio), block)]
    updates = []
    for samples in blocks:
        updates += pipeline.feed(Block(samples, time.perf_counter()))
    return updates + pipeline.finish()


def _check_stream_equals_label(path, bundle, blocks):
    row = _label(path, bundle)
    for block in blocks:
        updates = _streamed(path, bundle, block)
        assert len(updates) == row["segments"]
        segment_v = np.array([u.segment["valence"] for u in updates])
        segment_a = np.array([u.segment["arousal"] for u in updates])
        assert np.abs(segment_v - row["segment_valence"]).max() <= TOL
        assert np.abs(segment_a - row["segment_arousal"]).max() <= TOL
        last = updates[-1]
        assert last.song["valence"] == pytest.approx(row["valence"], abs=TOL)
        assert last.song["arousal"] == pytest.approx(row["arousal"], abs=TOL)
        assert last.quadrant == row["quadrant"]


def test_streaming_a_file_equals_labeling_it():
    bundle = tiny_bundle()
    sr = bundle.audio.sample_rate
    _check_stream_equals_label(music_wav(), bundle, [None, 100, 4096, sr, sr + 7])


def test_streaming_a_real_mp3_equals_labeling_it(music_clip):
    bundle = tiny_bundle()
    _check_stream_equals_label(music_clip, bundle, [None, 4096, bundle.audio.sample_rate + 7])


def test_streamed_file_decoding_matches_offline_decoding():
    bundle = tiny_bundle()
    sr = bundle.audio.sample_rate
    streamed = np.concatenate([b.samples for b in FileSource(music_wav(), sr, fast=True)])
    offline = load_audio(music_wav(), sr)
    assert len(streamed) == len(offline)
    assert np.abs(streamed - offline).max() < 1e-4
