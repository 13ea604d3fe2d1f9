import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mer_live.audio.samples import cut_segments
from mer_live.config import AudioConfig
from mer_live.runtime.windower import Windower

CONFIG = AudioConfig(segment_seconds=1.0, segment_hop_seconds=0.5)


def offline(samples: np.ndarray) -> np.ndarray:
    """cut_segments, except that an empty stream has no segments (offline decoding refuses it)."""
    return cut_segments(samples, CONFIG) if len(samples) else np.zeros((0, CONFIG.segment_samples), np.float32)


def stream(samples: np.ndarray, sizes: list[int], config: AudioConfig = CONFIG):
    windower = Windower(config)
    audio, starts, pos, i = [np.zeros((0, config.segment_samples), np.float32)], [np.zeros(0, np.int64)], 0, 0
    while pos < len(samples):
        size = sizes[i % len(sizes)]
        out = windower.push(samples[pos : pos + size])
        audio.append(out.audio)
        starts.append(out.starts)
        pos += size
        i += 1
    seen = windower.samples_seen
    if seen and not windower.windows_emitted:  # the end of a short stream, zero-padded as Stream.finish pads it
        out = windower.push(np.zeros(config.segment_samples - seen, np.float32))
        audio.append(out.audio)
        starts.append(out.starts)
    return np.concatenate(audio), np.concatenate(starts), seen


@pytest.mark.parametrize("n", [0, 1, 100, CONFIG.segment_samples - 1, CONFIG.segment_samples,
                               CONFIG.segment_samples + CONFIG.hop_samples - 1, 5 * 22050 + 13])
@pytest.mark.parametrize("sizes", [[1000], [1], [4096, 7, 22050], [10**6]])
def test_windows_equal_offline_segments(n, sizes):
    samples = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    audio, starts, seen = stream(samples, sizes)
    np.testing.assert_array_equal(starts, CONFIG.segment_starts(n))
    np.testing.assert_array_equal(audio, offline(samples))
    assert seen == n


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 4 * CONFIG.segment_samples),
       sizes=st.lists(st.integers(1, 3 * CONFIG.segment_samples), min_size=1, max_size=6))
def test_any_block_sizes_give_the_offline_segments(n, sizes):
    samples = np.arange(n, dtype=np.float32) / max(1, n)
    audio, starts, _ = stream(samples, sizes)
    np.testing.assert_array_equal(starts, CONFIG.segment_starts(n))
    np.testing.assert_array_equal(audio, offline(samples))


def test_state_is_bounded_and_reset_starts_over():
    windower = Windower(CONFIG)
    for _ in range(50):
        windower.push(np.ones(7919, np.float32))
    assert windower._buffer.shape == (CONFIG.segment_samples,)
    assert windower.next_start == CONFIG.hop_samples * windower.windows_emitted
    windower.reset()
    assert windower.samples_seen == windower.next_start == windower.windows_emitted == 0
