"""Mel filterbanks and a NumPy log-mel reference (no torch): the front end's ground truth.

Two filterbanks, on the power spectrum of an n_fft-point real FFT: Slaney's (the librosa default:
linear below 1 kHz, logarithmic above, area-normalised triangles; musicnn) and Kaldi's (mel =
1127 ln(1 + f / 700), unnormalised triangles over the first n_fft / 2 bins, none on the last;
the AudioSet networks).
"""

from __future__ import annotations

import numpy as np

from mer_live.config import AudioConfig

_F_SP = 200.0 / 3  # Hz per mel in the linear part
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / _F_SP
    log_part = hz >= _MIN_LOG_HZ
    mel[log_part] = _MIN_LOG_MEL + np.log(hz[log_part] / _MIN_LOG_HZ) / _LOGSTEP
    return mel


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    hz = mel * _F_SP
    log_part = mel >= _MIN_LOG_MEL
    hz[log_part] = _MIN_LOG_HZ * np.exp(_LOGSTEP * (mel[log_part] - _MIN_LOG_MEL))
    return hz


def kaldi_mel(hz: np.ndarray | float) -> np.ndarray:
    """Kaldi's mel scale: 1127 ln(1 + f / 700)."""
    return 1127.0 * np.log(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def kaldi_mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """The inverse of ``kaldi_mel``."""
    return 700.0 * np.expm1(np.asarray(mel, dtype=np.float64) / 1127.0)


def band_corners_mel(config: AudioConfig) -> np.ndarray:
    """(n_mels + 2,) the triangles' corners on ``config.mel_scale``, equally spaced from fmin to fmax: band k
    rises from corner k, peaks at corner k + 1 and falls to corner k + 2."""
    to_mel = kaldi_mel if config.mel_scale == "kaldi" else hz_to_mel
    low, high = to_mel(np.array([config.fmin, config.fmax]))
    return np.linspace(low, high, config.n_mels + 2)


def mel_band_hz(config: AudioConfig) -> np.ndarray:
    """(n_mels,) the centre frequency of every band of ``mel_filterbank(config)``, ascending: where a tone
    lands on the log-mel's frequency axis."""
    peaks = band_corners_mel(config)[1:-1]
    return (kaldi_mel_to_hz if config.mel_scale == "kaldi" else mel_to_hz)(peaks)


def mel_filterbank(config: AudioConfig) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters of ``config.mel_scale``, float32."""
    if config.mel_scale == "kaldi":
        return kaldi_filterbank(config)
    fft_hz = np.linspace(0.0, config.sample_rate / 2, config.n_freqs)
    hz_pts = mel_to_hz(band_corners_mel(config))
    widths = np.diff(hz_pts)
    ramps = hz_pts[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (hz_pts[2:] - hz_pts[:-2]))[:, None]
    return weights.astype(np.float32)


def kaldi_filterbank(config: AudioConfig) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) Kaldi fbank triangles: equal widths in mel = 1127 ln(1 + f / 700), peak 1."""
    bin_mel = kaldi_mel(np.arange(config.n_fft // 2) * config.sample_rate / config.n_fft)
    corners = band_corners_mel(config)
    delta = corners[1] - corners[0]
    left = corners[:-2, None]
    up = (bin_mel[None, :] - left) / delta
    down = (left + 2 * delta - bin_mel[None, :]) / delta
    weights = np.maximum(0.0, np.minimum(up, down))
    return np.pad(weights, ((0, 0), (0, 1))).astype(np.float32)


def hann_window(n_fft: int) -> np.ndarray:
    """Periodic Hann window, as STFT implementations use."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float64)


def stft_window(config: AudioConfig) -> np.ndarray:
    """(n_fft,) the analysis window: Hann of ``window_length`` (periodic or symmetric), centred, zero-padded."""
    length = config.window_length
    if config.symmetric_window:
        window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / (length - 1))
    else:
        window = hann_window(length)
    left = (config.n_fft - length) // 2
    return np.pad(window, (left, config.n_fft - length - left))


def n_frames(n_samples: int, config: AudioConfig) -> int:
    """Frames an uncentered STFT yields for ``n_samples`` samples (0 if shorter than n_fft)."""
    return 0 if n_samples < config.n_fft else 1 + (n_samples - config.n_fft) // config.hop_length


def log_mel_reference(samples: np.ndarray, config: AudioConfig) -> np.ndarray:
    """(n_mels, frames) log-mel via numpy.fft in float64: the reference ``LogMel`` must match."""
    x = samples.astype(np.float64)
    if config.preemphasis:  # y[n] = x[n+1] - k x[n]; one sample shorter, padded back with a zero
        x = np.concatenate([x[1:] - config.preemphasis * x[:-1], [0.0]])
    count = n_frames(len(samples), config)
    idx = np.arange(config.n_fft)[None, :] + config.hop_length * np.arange(count)[:, None]
    frames = x[idx] * stft_window(config)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel = mel_filterbank(config).astype(np.float64) @ power.T
    if config.log_offset:
        return np.log(mel + config.log_floor)
    return np.log(np.maximum(mel, config.log_floor))
