"""The through-the-air conditions: each does what its name says, on real signals, reproducibly."""

from __future__ import annotations

import numpy as np
import pytest

from mer_live.train import conditions

SR = 32000


def music_like(seconds: float = 4.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    tones = sum(0.1 * np.sin(2 * np.pi * f * t) for f in (55.0, 220.0, 880.0, 2500.0, 7000.0))
    return (tones * (1 + 0.5 * np.sin(2 * np.pi * 2 * t)) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def band_energy(x: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


def test_noise_is_added_at_the_stated_snr():
    x = music_like()
    noisy = conditions.apply_condition(x, SR, "noise", np.random.default_rng(1))
    snr = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((noisy - x).astype(np.float64) ** 2))
    assert abs(snr - conditions.NOISE_SNR_DB) < 0.1
    assert band_energy(noisy - x, 50, 500) > 5 * band_energy(noisy - x, 5000, 5450)  # pink: most power low


def test_phone_band_removes_lows_and_highs():
    x = music_like()
    phone = conditions.apply_condition(x, SR, "phone", np.random.default_rng(0))
    assert band_energy(phone, 40, 70) < 0.01 * band_energy(x, 40, 70)
    assert band_energy(phone, 6900, 7100) < 0.01 * band_energy(x, 6900, 7100)
    assert band_energy(phone, 850, 910) > 0.5 * band_energy(x, 850, 910)


def test_room_reverberates_a_click_for_about_its_rt60():
    click = np.zeros(2 * SR, np.float32)
    click[100] = 0.5
    wet = conditions.apply_condition(click, SR, "room", np.random.default_rng(0))
    envelope = np.convolve(wet.astype(np.float64) ** 2, np.ones(320) / 320, mode="same")
    after = int(100 + 0.05 * SR)
    late = int(100 + conditions.ROOM_RT60 * SR)
    assert envelope[after] > 0 and 10 * np.log10(envelope[late] / envelope[after]) < -40  # decays ~60 dB / RT60
    assert np.max(np.abs(wet)) <= 0.99


def test_late_is_the_clean_song_from_later_on():
    x = music_like(4.0)
    late = conditions.apply_condition(x, SR, "late", np.random.default_rng(0))
    assert np.array_equal(late, x[int(conditions.LATE_SECONDS * SR):])
    short = music_like(1.0)  # too short to start later: heard as it is
    assert np.array_equal(conditions.apply_condition(short, SR, "late", np.random.default_rng(0)), short)


def test_conditions_joined_by_plus_apply_in_turn():
    x = music_like(4.0)
    both = conditions.apply_condition(x, SR, "phone+late", np.random.default_rng(0))
    phone = conditions.apply_condition(x, SR, "phone", np.random.default_rng(0))
    assert np.array_equal(both, phone[int(conditions.LATE_SECONDS * SR):])
    assert conditions.known_condition("room+late") and not conditions.known_condition("room+moon")
    with pytest.raises(ValueError, match="moon"):
        conditions.apply_condition(x, SR, "room+moon", np.random.default_rng(0))


def test_random_chains_are_reproducible_and_differ_by_seed():
    x = music_like(2.0)
    a = conditions.through_the_air(x, SR, np.random.default_rng(7))
    b = conditions.through_the_air(x, SR, np.random.default_rng(7))
    c = conditions.through_the_air(x, SR, np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.allclose(a, c)
    assert np.max(np.abs(a)) <= 1.0 and a.dtype == np.float32


def test_unknown_condition_is_refused():
    with pytest.raises(ValueError, match="room, noise, phone, late"):
        conditions.apply_condition(music_like(0.5), SR, "moon", np.random.default_rng(0))


def test_cache_entries_per_condition_are_stable(tmp_path, write_audio):
    from mer_live.config import AUDIOSET_AUDIO
    from mer_live.train.cache import LogMelCache

    path = write_audio("song.wav", music_like(4.0), SR)
    clean = LogMelCache(tmp_path, AUDIOSET_AUDIO).get(path)
    room = LogMelCache(tmp_path, AUDIOSET_AUDIO, "room").get(path)
    again = LogMelCache(tmp_path / "other", AUDIOSET_AUDIO, "room").get(path)
    assert room.shape == clean.shape and not np.allclose(room, clean)
    assert np.array_equal(room, again)  # seeded by the file and the condition, not by the run


def test_a_share_of_chains_passes_a_telephone_band():
    """``phone``: that share of the random chains keeps 250-400 Hz to 3-4 kHz; the name carries the share, and
    without it the names (and so the cached copies) are the ones made before the option existed."""
    x = music_like(2.0)

    def low_to_mid(phone: float) -> np.ndarray:  # 55 Hz against 880 Hz, per chain, noise and all
        chains = [conditions.through_the_air(x, SR, np.random.default_rng(seed), phone) for seed in range(24)]
        return np.array([band_energy(c, 40, 70) / band_energy(c, 850, 910) for c in chains])

    wide, phone = low_to_mid(0.0), low_to_mid(1.0)
    assert np.median(phone) < 0.02 * np.median(wide)
    assert conditions.air_condition(1) == "air-1" and conditions.air_phone_share("air-1") == 0.0
    assert conditions.air_phone_share(conditions.air_condition(1, 0.3)) == 0.3
