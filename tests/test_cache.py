"""The whole-clip log-mel cache: hits, keys, failures, and segment slices equal to LogMel of segments."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mer_live.audio.read import load_audio
from mer_live.audio.samples import cut_segments
from mer_live.config import AudioConfig
from mer_live.nn.mel import n_frames
from mer_live.train.cache import LogMelCache, cache_key
from mer_live.train.segments import segment_frame_starts
from tests.conftest import tone

AUDIO = AudioConfig()


def test_hit_returns_same_array_without_recomputing(tmp_path, write_audio):
    path = write_audio("a.flac", tone(4.0, 44100), 44100)
    cache = LogMelCache(tmp_path / "cache", AUDIO)
    first = cache.get(path)
    entry = cache.entry(path)
    stamp = entry.stat().st_mtime_ns
    again = LogMelCache(tmp_path / "cache", AUDIO.replace(segment_seconds=2.0))  # shared across lengths
    second = again.get(path)
    assert first.dtype == np.float32 and first.shape == (AUDIO.n_mels, n_frames(4 * AUDIO.sample_rate, AUDIO))
    np.testing.assert_array_equal(first, second)
    assert (cache.computed, again.computed, again.loaded) == (1, 0, 1)
    assert entry.stat().st_mtime_ns == stamp and list(entry.parent.glob("*.tmp")) == []


def test_key_follows_content_and_front_end(tmp_path, write_audio):
    path = write_audio("a.wav", tone(2.0, 22050), 22050)
    key = cache_key(path, AUDIO)
    assert cache_key(path, AUDIO.replace(segment_seconds=4.0, segment_hop_seconds=0.5)) == key
    for change in ({"n_mels": 32}, {"hop_length": 256}, {"fmax": 8000.0}, {"sample_rate": 16000, "fmax": 8000.0},
                   {"log_floor": 1e-8}, {"n_fft": 2048}, {"fmin": 30.0}):
        assert cache_key(path, AUDIO.replace(**change)) != key, change
    write_audio("a.wav", tone(2.0, 22050, amp=0.4), 22050)
    assert cache_key(path, AUDIO) != key


def test_build_reports_undecodable_files_and_keeps_the_rest(tmp_path, write_audio):
    good = [write_audio(f"g{i}.wav", tone(1.0 + i, 16000, freq=300 + 50 * i), 16000) for i in range(3)]
    stereo = write_audio("stereo.ogg", np.stack([tone(2.0, 32000)] * 2, axis=1), 32000)
    corrupt = tmp_path / "corrupt.mp3"
    corrupt.write_bytes(b"ID3\x03\x00garbage" * 50)
    empty = tmp_path / "empty.wav"
    empty.touch()
    calls = []
    cache = LogMelCache(tmp_path / "cache", AUDIO)
    paths = [good[0], corrupt, good[1], stereo, empty, good[2], good[0]]  # duplicates are computed once
    arrays, failures = cache.build(paths, workers=2, progress=lambda done, total: calls.append((done, total)))
    assert list(arrays) == [good[0], good[1], stereo, good[2]]
    assert [p for p, _ in failures] == sorted([corrupt, empty]) and all(reason for _, reason in failures)
    assert calls[-1] == (6, 6) and len(calls) == 6
    for path, array in arrays.items():
        np.testing.assert_array_equal(array, cache.get(path))
    assert cache.computed == 4


@pytest.mark.parametrize("seconds, sr, channels", [(7.3, 44100, 2), (1.2, 22050, 1), (3.02, 16000, 1)])
def test_segment_slices_equal_segment_log_mel(tmp_path, write_audio, seconds, sr, channels):
    rng = np.random.default_rng(0)
    samples = (0.2 * rng.standard_normal((int(seconds * sr), channels))).astype(np.float32)
    path = write_audio("clip.wav", samples, sr, subtype="FLOAT")
    cache = LogMelCache(tmp_path / "cache", AUDIO)
    logmel = cache.get(path)
    segments = cut_segments(load_audio(path, AUDIO.sample_rate), AUDIO)
    starts = segment_frame_starts(logmel.shape[1], AUDIO)
    assert len(starts) == len(segments)
    with torch.no_grad():
        expected = cache.logmel(torch.from_numpy(segments)).numpy()
    for k, start in enumerate(starts):
        np.testing.assert_array_equal(logmel[:, start : start + AUDIO.segment_frames], expected[k])


def test_frame_starts_match_sample_starts():
    for audio in (AUDIO, AUDIO.replace(segment_seconds=1.0, segment_hop_seconds=0.5),
                  AUDIO.replace(segment_seconds=5.0, segment_hop_seconds=5.0)):
        for n in range(audio.segment_samples, audio.segment_samples + 20 * audio.hop_samples, 997):
            frames = segment_frame_starts(n_frames(n, audio), audio)
            np.testing.assert_array_equal(frames * audio.hop_length, audio.segment_starts(n))
    assert segment_frame_starts(3, AUDIO).tolist() == [0]
