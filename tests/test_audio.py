from pathlib import Path

import numpy as np
import pytest

from mer_live.audio.read import iter_audio_blocks, load_audio
from mer_live.audio.samples import cut_segments
from mer_live.config import AudioConfig
from mer_live.errors import AudioError
from tests.conftest import tone


def test_config_rounds_to_whole_hops_and_round_trips_json():
    c = AudioConfig(segment_seconds=3.0, segment_hop_seconds=1.0)
    assert c.segment_frames == 129 and c.hop_frames == 43
    assert c.segment_samples == (c.segment_frames - 1) * c.hop_length + c.n_fft
    assert c.hop_samples % c.hop_length == 0
    assert AudioConfig.from_json(c.to_json()) == c
    assert "rounded to whole STFT hops" in c.to_json()


def test_config_refuses_bad_values_and_stale_derived():
    with pytest.raises(ValueError):
        AudioConfig(segment_seconds=6)
    data = AudioConfig().to_dict()
    data["derived"]["segment_samples"] += 1
    with pytest.raises(ValueError, match="inconsistent"):
        AudioConfig.from_dict(data)


@pytest.mark.parametrize("fmt,subtype", [("wav", "PCM_16"), ("flac", "PCM_24"), ("ogg", "VORBIS")])
def test_load_audio_downmixes_and_resamples(write_audio, fmt, subtype):
    stereo = np.stack([tone(2.0, 44100), tone(2.0, 44100)], axis=1)
    path = write_audio(f"x.{fmt}", stereo, 44100, subtype=subtype)
    out = load_audio(path, 22050)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - 44100) <= 1
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * 22050 / len(out) - 440) < 2


def test_load_real_mp3(music_clip):
    out = load_audio(music_clip, 22050)
    assert 29 < len(out) / 22050 < 31 and np.abs(out).max() > 0.05


def test_block_reader_matches_whole_file(write_audio):
    x = np.random.default_rng(0).uniform(-0.5, 0.5, 44100 * 3).astype(np.float32)
    path = write_audio("n.wav", x, 44100, subtype="FLOAT")
    whole = load_audio(path, 22050)
    blocks = np.concatenate(list(iter_audio_blocks(path, 22050, block_seconds=0.37)))
    assert abs(len(blocks) - len(whole)) <= 2
    n = min(len(blocks), len(whole))
    assert np.abs(blocks[100 : n - 100] - whole[100 : n - 100]).max() < 1e-3


@pytest.mark.parametrize("content,reason", [(b"", "empty"), (b"not audio at all" * 10, "cannot decode")])
def test_bad_files_raise_one_error_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "bad.mp3"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=reason) as info:
        load_audio(path, 22050)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path):
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path / "nope.wav", 22050)


def test_zero_sample_wav(write_audio):
    path = write_audio("zero.wav", np.zeros(0, dtype=np.float32), 22050)
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(path, 22050)


def test_segment_starts_cover_clip_and_pad_short_clips():
    c = AudioConfig()
    assert list(c.segment_starts(0)) == []
    assert list(c.segment_starts(100)) == [0]
    n = c.segment_samples + 5 * c.hop_samples + c.hop_samples - 1
    starts = c.segment_starts(n)
    assert len(starts) == 6 and starts[-1] + c.segment_samples <= n
    assert n - (starts[-1] + c.segment_samples) < c.hop_samples
    segs = cut_segments(np.ones(100, np.float32), c)
    assert segs.shape == (1, c.segment_samples) and segs[0, 100:].max() == 0


def test_segment_arithmetic_agrees_across_samples_frames_and_segments():
    for c in (AudioConfig(), AudioConfig(segment_seconds=1.0, segment_hop_seconds=0.5), AudioConfig().strided(3)):
        assert c.frames_samples(c.segment_frames) == c.segment_samples
        for n in (1, c.segment_samples - 1, c.segment_samples, 10 * c.segment_samples + 7):
            k = c.n_segments(n)
            assert k == len(c.segment_starts(n)) >= 1
            span = c.segment_frames_span(k)
            assert c.segments_in_frames(span) == k and c.segments_in_frames(span - 1) == k - 1
        assert c.n_segments(0) == 0 and c.segment_frames_span(0) == 0
        assert c.samples(c.seconds(12345)) == 12345


def test_atomic_writes_get_ordinary_permissions_and_leave_nothing_on_failure(tmp_path):
    import os
    import stat

    from mer_live.atomic import atomic_file, atomic_write_text

    target = tmp_path / "labels.csv"
    atomic_write_text(target, "a\n")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask and target.read_text() == "a\n"
    os.chmod(target, 0o640)
    with pytest.raises(RuntimeError), atomic_file(target, "w") as f:
        f.write("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "a\n" and [p.name for p in tmp_path.iterdir()] == ["labels.csv"]
    atomic_write_text(target, "b\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640 and target.read_text() == "b\n"
