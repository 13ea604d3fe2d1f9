"""The public API and its streaming object: one front end, so streaming a file equals predicting it."""

import io
import json

import numpy as np
import pytest

import mer_live
from mer_live.api import Model
from mer_live.audio.read import load_audio
from mer_live.audio.samples import cut_segments
from mer_live.errors import AudioError, MerLiveError
from mer_live.label.batch import LabelOptions, label_files
from mer_live.live.sources import FileSource
from mer_live.runtime import frames as frames_module
from mer_live.stats import segment_statistics
from tests.realtime_helpers import music_wav, tiny_bundle

TOL = 1e-5


def noise_music(seconds: float, sr: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 330 * t * (1 + 0.1 * np.sin(t))) + 0.1 * rng.standard_normal(len(t))
    return x.astype(np.float32)


def streamed(stream, audio: np.ndarray, block: int, sr: int | None = None) -> list:
    updates = []
    for i in range(0, len(audio), block):
        updates += stream.feed(audio[i : i + block], sr)
    return updates + stream.finish()


def segment_probs(updates, tasks=("valence", "arousal")) -> np.ndarray:
    return np.array([[u.segment[t] for t in tasks] for u in updates])


@pytest.mark.parametrize("segment_seconds", [3.0, 1.5])
@pytest.mark.parametrize("block", [100, 4096, 22050 + 7, 10**6])
def test_incremental_stream_equals_the_segment_graph(segment_seconds, block):
    model = Model(tiny_bundle(segment_seconds), provider="cpu")
    audio = noise_music(12.0, model.audio.sample_rate)
    got = segment_probs(streamed(model.stream(silence_reset=False), audio, block))
    reference = model.stages.reference()(cut_segments(audio, model.audio))
    assert got.shape == reference.shape
    assert np.abs(got - reference).max() <= TOL
    assert reference.std(axis=0).min() > 1e-3  # the tiny model's outputs really vary


def test_full_mode_and_predict_equal_the_reference():
    model = Model(tiny_bundle(), provider="cpu")
    audio = noise_music(9.5, model.audio.sample_rate)
    reference = model.stages.reference()(cut_segments(audio, model.audio))
    full = segment_probs(streamed(model.stream(silence_reset=False, mode="full"), audio, 5000))
    assert np.abs(full - reference).max() <= TOL
    assert np.abs(model.predict(audio, model.audio.sample_rate).segments - reference).max() <= TOL
    short = audio[:5000]  # shorter than a segment: zero-padded, as offline
    one = model.predict(short, model.audio.sample_rate)
    assert one.segments.shape == (1, 2) and one.duration == pytest.approx(5000 / model.audio.sample_rate)
    assert np.abs(one.segments - model.stages.reference()(cut_segments(short, model.audio))).max() <= TOL
    short_stream = streamed(model.stream(silence_reset=False), short, 1000)
    assert len(short_stream) == 1 and np.abs(segment_probs(short_stream) - one.segments).max() <= TOL


def test_clip_frames_equal_one_front_end_run_over_the_clip(monkeypatch):
    monkeypatch.setattr(frames_module, "CHUNK_FRAMES", 300)
    model = Model(tiny_bundle(), provider="cpu")
    c = model.audio
    audio = noise_music(20.0, c.sample_rate)
    # shorter than a segment, one segment, a remainder of 0, 1 and 180 frames after whole runs, and longer
    for n in (5000, c.segment_samples, 600 * 512 + 512, 601 * 512 + 512, 780 * 512 + 700, len(audio)):
        padded = np.concatenate([audio[:n], np.zeros(max(0, c.segment_samples - n), np.float32)])
        n_frames = c.segment_frames_span(c.n_segments(len(padded)))
        reference = model.stages.frontend(padded[None])[0, :, :n_frames]
        for block, expected in ((777, 0), (c.sample_rate + 7, n), (10**6, n // 2)):
            blocks = [audio[i : min(n, i + block)] for i in range(0, n, block)]
            logmel, n_samples = model.stages.logmel(blocks, expected)
            assert np.abs(logmel - reference).max() <= 1e-4, (n, block)
            assert n_samples == n


def test_pickle_and_onnx_aggregators_agree():
    features = segment_statistics(np.random.default_rng(0).random((20, 2)))
    onnx = Model(tiny_bundle(), provider="cpu").stages.song_probs(features)
    pickle = Model(tiny_bundle(), provider="cpu", aggregator="pickle").stages.song_probs(features)
    assert onnx.shape == (1, 2)
    assert np.abs(onnx - pickle).max() < 1e-5


def test_provider_is_reported_and_cuda_refused_clearly_without_it():
    import onnxruntime as ort

    model = mer_live.load(tiny_bundle().path, provider="auto")
    assert model.provider in ("CPU", "CUDA")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert model.provider == "CPU"
        with pytest.raises(MerLiveError, match="CUDA"):
            mer_live.load(tiny_bundle().path, provider="cuda")


def _label(path, model) -> dict:
    out = io.StringIO()
    assert label_files(model, [str(path)], LabelOptions(fmt="jsonl", segments=True, workers=0), stdout=out,
                       stderr=io.StringIO()) == 0
    return json.loads(out.getvalue())


def _check_stream_equals_predict(path, model, blocks):
    result = model.predict(path)
    row = _label(path, model)
    assert row["valence"] == pytest.approx(result.valence, abs=1e-6) and row["quadrant"] == result.quadrant
    file_blocks = [b.samples for b in FileSource(path, model.audio.sample_rate, fast=True)]
    audio = np.concatenate(file_blocks)
    for block in blocks:
        stream = model.stream(horizon=3600, silence_reset=False)
        if block is None:  # as the file source reads it
            updates = [u for b in file_blocks for u in stream.feed(b)] + stream.finish()
        else:
            updates = streamed(stream, audio, block)
        assert len(updates) == len(result.segments)
        assert np.abs(segment_probs(updates) - result.segments).max() <= TOL
        assert np.allclose([u.start for u in updates], result.starts)
        song = stream.song  # the whole-song estimate, as predict gives it
        assert song.valence == pytest.approx(result.valence, abs=TOL)
        assert song.arousal == pytest.approx(result.arousal, abs=TOL)
        assert song.n_segments == result.n_segments == len(result.segments)
        assert updates[-1].song.quadrant == song.quadrant == result.quadrant


def test_streaming_a_file_equals_predicting_it():
    model = Model(tiny_bundle(), provider="cpu")
    sr = model.audio.sample_rate
    _check_stream_equals_predict(str(music_wav()), model, [None, 100, 4096, sr, sr + 7])


def test_streaming_a_real_mp3_equals_predicting_it(music_clip):
    model = Model(tiny_bundle(), provider="cpu")
    _check_stream_equals_predict(str(music_clip), model, [None, 4096, model.audio.sample_rate + 7])


@pytest.mark.parametrize("name", ["default", "fast"])
def test_packaged_tiers_stream_as_they_predict(name):
    """Both tiers live: the default updating every second, `fast` every 3 s, as `predict` labels the file."""
    model = mer_live.load(name, provider="cpu")
    _check_stream_equals_predict(str(music_wav()), model, [None, 4096])


def test_predict_takes_arrays_at_any_rate_and_the_stream_resamples_too():
    model = mer_live.load(tiny_bundle().path, provider="cpu")
    sr = model.audio.sample_rate
    at_rate = load_audio(music_wav(), sr)
    at_44k = load_audio(music_wav(), 44100)
    a, b = model.predict(at_rate, sr), model.predict(at_44k, 44100)
    assert len(a.segments) == len(b.segments) and abs(a.duration - b.duration) < 1e-3
    assert abs(a.valence - b.valence) < 0.02 and a.quadrant == b.quadrant
    stream = model.stream(horizon=3600, silence_reset=False)
    updates = streamed(stream, at_44k, 4410, sr=44100)
    assert len(updates) == len(b.segments)
    assert stream.song.valence == pytest.approx(b.valence, abs=1e-3)
    stereo = np.stack([at_44k, at_44k], axis=1)
    assert model.predict(stereo, 44100).valence == pytest.approx(b.valence, abs=1e-5)
    with pytest.raises(MerLiveError, match="needs sr"):
        model.predict(at_rate)


def test_predict_many_keeps_order_and_failures_and_equals_predict(tmp_path):
    model = Model(tiny_bundle(), provider="cpu")
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"not audio at all")
    paths = [str(music_wav()), str(bad), str(tmp_path / "missing.mp3"), str(music_wav())]
    for workers in (0, 2):
        results = list(model.predict_many(paths, workers=workers))
        assert [r.path for r in results] == paths
        assert [r.ok for r in results] == [True, False, False, True]
        assert "file not found" in results[2].error
        one = model.predict(paths[0])
        assert np.abs(results[0].segments - one.segments).max() <= 1e-6
        assert results[3].valence == pytest.approx(one.valence, abs=1e-6)
    with pytest.raises(AudioError, match="missing.mp3"):
        model.predict(paths[2])


def test_reset_starts_a_new_stream():
    model = Model(tiny_bundle(), provider="cpu")
    audio = noise_music(8.0, model.audio.sample_rate)
    stream = model.stream(silence_reset=False)
    first = streamed(stream, audio, 3000)
    stream.reset()
    assert stream.song is None and stream.n_samples == 0 and stream.segments_emitted == 0
    second = streamed(stream, audio, 7000)
    assert segment_probs(first) == pytest.approx(segment_probs(second), abs=TOL)


def test_streamed_file_decoding_matches_offline_decoding():
    sr = tiny_bundle().audio.sample_rate
    streamed_audio = np.concatenate([b.samples for b in FileSource(music_wav(), sr, fast=True)])
    offline = load_audio(music_wav(), sr)
    assert len(streamed_audio) == len(offline)
    assert np.abs(streamed_audio - offline).max() < 1e-4
