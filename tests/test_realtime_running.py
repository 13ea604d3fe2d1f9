import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mer_live.config import AudioConfig
from mer_live.runtime.running import RunningStatistics, SilenceGate
from mer_live.stats import segment_statistics, song_vector


@pytest.mark.parametrize("capacity", [1, 5, 28])
def test_running_statistics_equal_offline_including_eviction(capacity):
    probs = np.random.default_rng(capacity).random((60, 2)).astype(np.float32)
    probs[10:20] = 0.5  # ties, and values exactly at theta
    running = RunningStatistics(2, capacity, theta=0.5)
    for i, row in enumerate(probs):
        running.push(row)
        held = probs[max(0, i + 1 - capacity) : i + 1]
        assert len(running) == len(held)
        np.testing.assert_array_equal(running.features(), segment_statistics(held, 0.5))


@settings(max_examples=30, deadline=None)
@given(values=st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.5000001, 0.75, 1.0]), min_size=2, max_size=40),
       capacity=st.integers(1, 10))
def test_running_statistics_property(values, capacity):
    probs = np.array(values, np.float32).reshape(-1, 1)
    running = RunningStatistics(1, capacity, theta=0.5)
    for row in probs:
        running.push(row)
    np.testing.assert_array_equal(running.features(), segment_statistics(probs[-capacity:], 0.5))


def test_reset_starts_a_new_song():
    running = RunningStatistics(2, 4)
    running.push(np.array([0.9, 0.9]))
    running.reset()
    assert len(running) == 0
    running.push(np.array([0.1, 0.2], np.float32))
    np.testing.assert_array_equal(running.features(), segment_statistics(np.array([[0.1, 0.2]], np.float32)))
    with pytest.raises(ValueError):
        running.push(np.array([0.1]))


def test_horizon_is_the_segments_of_a_training_clip():
    config = AudioConfig()
    assert config.horizon_segments(30.0) == config.n_segments(30 * config.sample_rate)
    assert config.horizon_segments(0.5) == 1


def test_silence_gate_fires_once_after_sustained_silence():
    sr = 1000
    gate = SilenceGate(sr, seconds=2.0, threshold_db=-60.0)
    loud, quiet = np.full(500, 0.1, np.float32), np.full(500, 1e-5, np.float32)
    assert not gate.push(loud)
    fired = [gate.push(quiet) for _ in range(6)]
    assert fired == [False, False, False, True, False, False]
    assert gate.silent
    assert not gate.push(loud) and not gate.silent


@pytest.mark.parametrize("capacity", [1, 5])
def test_running_statistics_with_embedding_equal_the_training_song_vector(capacity):
    """Rows carry probabilities then an embedding: the live song vector is the one training fit on."""
    rng = np.random.default_rng(capacity)
    rows = np.concatenate([rng.random((20, 2)), rng.normal(0, 3, (20, 6))], axis=1).astype(np.float32)
    running = RunningStatistics(2, capacity, theta=0.5, embedding_dims=6)
    for i, row in enumerate(rows):
        running.push(row)
        held = rows[max(0, i + 1 - capacity) : i + 1]
        np.testing.assert_allclose(running.features(), song_vector(held[:, :2], held[:, 2:], 0.5), rtol=1e-12)
    with pytest.raises(ValueError, match="embedding"):
        running.push(rows[0, :2])
