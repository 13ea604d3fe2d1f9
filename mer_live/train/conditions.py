"""Music heard through the air: a room, background noise, a telephone band, a cheap microphone.

The live monitor's main input is a microphone in a room, not a file. ``CONDITIONS`` are three fixed
test conditions after the sox chains they stand for (``evaluate --conditions``): ``room`` (highpass
120 Hz, then a reverb like ``reverb 50 50 80``: a synthetic impulse response of exponentially decaying,
darkening noise, RT60 0.6 s, mixed at equal energy with the direct sound), ``noise`` (pink noise at 15 dB
SNR) and ``phone`` (``highpass 300 lowpass 3400``). A fourth, ``late``, hears nothing differently: the
clean song from 1.5 s in, so every window falls half a hop of ``fast`` (and of the default) elsewhere. A
network's quadrant moves under that alone for some songs, so ``late``'s agreement with the clean input is
the reference an air condition's is read against. Joined by ``+`` they apply left to right: ``room+late`` is a
microphone in a room started later, as a live listener's. ``through_the_air`` draws a random chain of the same
kinds for training (``--air-copies``): a room with RT60 0.2-1.2 s, noise at 5-30 dB SNR, band limits
and a microphone's tilt, a gain of -12..+6 dB; with ``phone`` > 0 that share of chains passes a
telephone's band instead of the wide band limits (``--air-phone``). All of it is deterministic given the
generator, so a cached conditioned clip is reproducible.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

CONDITIONS = ("room", "noise", "phone", "late")
ROOM_RT60, ROOM_HIGHPASS = 0.6, 120.0
NOISE_SNR_DB = 15.0
PHONE_BAND = (300.0, 3400.0)
LATE_SECONDS = 1.5


def _filter(x: np.ndarray, sr: int, kind: str, hz: float | tuple[float, float], order: int = 4) -> np.ndarray:
    sos = signal.butter(order, hz, btype=kind, fs=sr, output="sos")
    return signal.sosfilt(sos, x).astype(np.float32)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise (power halves per octave): white noise shaped in the frequency domain, unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n)
    return (noise / (np.sqrt(np.mean(noise**2)) + 1e-12)).astype(np.float32)


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator, pink: bool = True) -> np.ndarray:
    """``x`` plus noise ``snr_db`` below its RMS (silence stays silence plus nothing: no level to refer to)."""
    level = np.sqrt(np.mean(x.astype(np.float64) ** 2))
    if level == 0:
        return x
    noise = pink_noise(len(x), rng) if pink else rng.standard_normal(len(x)).astype(np.float32)
    return (x + noise * np.float32(level * 10 ** (-snr_db / 20))).astype(np.float32)


def room_response(sr: int, rt60: float, rng: np.random.Generator, damping_hz: float = 4000.0) -> np.ndarray:
    """A synthetic room impulse response: decaying Gaussian noise (60 dB over ``rt60`` s), lowpassed more
    as it decays crudely by one lowpass, with the direct path at 0 and equal energy in the tail."""
    n = int(rt60 * sr)
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)
    tail = _filter(tail, sr, "lowpass", damping_hz, order=2)
    tail[: int(0.003 * sr)] = 0.0  # the first reflections arrive a few ms after the direct sound
    tail /= np.sqrt(np.sum(tail.astype(np.float64) ** 2)) + 1e-12
    response = tail.astype(np.float32)
    response[0] += 1.0
    return response


def reverberate(x: np.ndarray, response: np.ndarray) -> np.ndarray:
    wet = signal.fftconvolve(x, response)[: len(x)]
    peak = np.max(np.abs(wet)) if len(wet) else 0.0
    scale = min(1.0, 0.99 / peak) if peak > 0 else 1.0  # keep within full scale, as a recorder's limiter would
    return (wet * scale).astype(np.float32)


def known_condition(condition: str) -> bool:
    """One of ``CONDITIONS``, or several joined by ``+``."""
    return all(part in CONDITIONS for part in condition.split("+"))


def apply_condition(x: np.ndarray, sr: int, condition: str, rng: np.random.Generator) -> np.ndarray:
    """One of ``CONDITIONS`` on mono float audio at ``sr``, or several joined by ``+``, left to right."""
    if "+" in condition:
        for part in condition.split("+"):
            x = apply_condition(x, sr, part, rng)
        return x
    if condition == "room":
        return reverberate(_filter(x, sr, "highpass", ROOM_HIGHPASS, order=2), room_response(sr, ROOM_RT60, rng))
    if condition == "noise":
        return add_noise(x, NOISE_SNR_DB, rng)
    if condition == "phone":
        return _filter(x, sr, "bandpass", PHONE_BAND)
    if condition == "late":  # a clip too short to start later is heard as it is
        start = int(LATE_SECONDS * sr)
        return x[start:] if len(x) > start else x
    raise ValueError(f"unknown condition {condition!r}; choose from {', '.join(CONDITIONS)}")


def air_condition(k: int, phone: float = 0.0) -> str:
    """The name (and cache suffix) of the ``k``-th random recording chain of a clip, ``phone`` its share of
    telephone bands: ``air-0``, or ``air-0-phone0.3``."""
    return f"air-{k}" if not phone else f"air-{k}-phone{phone:g}"


def air_phone_share(condition: str) -> float:
    """The telephone share an ``air_condition`` name carries (0 when none)."""
    return float(condition.split("-phone", 1)[1]) if "-phone" in condition else 0.0


def through_the_air(x: np.ndarray, sr: int, rng: np.random.Generator, phone: float = 0.0) -> np.ndarray:
    """A random recording chain for training: each stage with probability about one half. ``phone``: the
    share of chains whose band is a telephone's (250-400 Hz to 3-4 kHz, 4th order) instead; 0 draws exactly
    what it always drew, so cached copies stay valid."""
    if rng.random() < 0.6:
        x = reverberate(x, room_response(sr, rng.uniform(0.2, 1.2), rng, rng.uniform(2000, 8000)))
    if phone and rng.random() < phone:
        x = _filter(x, sr, "bandpass", (rng.uniform(250, 400), rng.uniform(3000, 4000)))
    elif rng.random() < 0.5:
        low = rng.uniform(50, 350)
        high = min(rng.uniform(3000, 16000), 0.45 * sr)
        x = _filter(x, sr, "bandpass", (low, high), order=2)
    if rng.random() < 0.3:  # a microphone's tilt: a gentle first-order shelf either way
        b, a = signal.butter(1, rng.uniform(500, 4000), btype="highpass" if rng.random() < 0.5 else "lowpass", fs=sr)
        mix = rng.uniform(0.3, 0.7)
        x = ((1 - mix) * x + mix * signal.lfilter(b, a, x)).astype(np.float32)
    if rng.random() < 0.6:
        x = add_noise(x, rng.uniform(5, 30), rng, pink=rng.random() < 0.7)
    gain = 10 ** (rng.uniform(-12, 6) / 20)
    return np.clip(x * gain, -1.0, 1.0).astype(np.float32)
