"""``LogMel``: raw audio to log-mel inside the model graph, as plain Conv and MatMul ops.

The STFT is two conv1d's with Hann-windowed cosine and sine kernels (no torch.stft, no
complex tensors), so it exports to ONNX with either exporter and runs on every ONNX Runtime
provider; frames are uncentered and hop-aligned, so slicing a clip's log-mel at a segment
boundary gives exactly that segment's log-mel.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mer_live.config import AudioConfig
from mer_live.nn.mel import mel_filterbank, stft_window


def stft_kernels(config: AudioConfig) -> np.ndarray:
    """(2 * n_freqs, 1, n_fft): windowed cosines then windowed (negated) sines.

    With pre-emphasis (y[n] = x[n+1] - k x[n]) the filter is folded into the kernels: a frame of y
    under taps c equals the same frame of x under c[m-1] - k c[m]; the window's zero tail (``AudioConfig``
    checks it has one) makes the tap past the frame vanish, so frames stay n_fft samples of the input."""
    n = np.arange(config.n_fft)
    k = np.arange(config.n_freqs)[:, None]
    phase = 2 * np.pi * k * n / config.n_fft
    window = stft_window(config)
    kernels = np.concatenate([np.cos(phase) * window, -np.sin(phase) * window])
    if config.preemphasis:
        kernels = np.pad(kernels[:, :-1], ((0, 0), (1, 0))) - config.preemphasis * kernels
    return kernels[:, None, :].astype(np.float32)


def kernel_support(config: AudioConfig, kernels: np.ndarray, mel: np.ndarray) -> tuple[slice, np.ndarray]:
    """The taps and frequency bins the STFT needs compute: a window shorter than n_fft is zero outside
    its span (pre-emphasis adds one tap before it), and no mel filter reaches above ``fmax`` when it is
    below Nyquist. The AudioSet front end computes 799 of 1024 taps for 481 of 513 bins: 27 % fewer MACs.
    Other front ends keep every tap and bin (their graphs, and numbers, unchanged)."""
    taps = slice(0, config.n_fft)
    if config.window_length < config.n_fft:
        used = np.nonzero(kernels[:, 0].any(axis=0))[0]
        taps = slice(int(used.min()), int(used.max()) + 1)
    bins = np.arange(config.n_freqs)
    if config.fmax < config.sample_rate / 2:
        bins = bins[: np.nonzero(mel.any(axis=0))[0].max() + 1]
    return taps, bins


class LogMel(nn.Module):
    """(batch, samples) float audio -> (batch, n_mels, frames) natural-log mel power.

    Frame j covers samples [j * hop, j * hop + n_fft); the convolution runs over the taps that
    ``kernel_support`` keeps, on the input shifted by the first of them, which gives the same frames."""

    def __init__(self, config: AudioConfig) -> None:
        super().__init__()
        kernels, mel = stft_kernels(config), mel_filterbank(config)
        taps, bins = kernel_support(config, kernels, mel)
        self.hop_length = config.hop_length
        self.n_freqs = len(bins)
        self.start, self.end = taps.start, config.n_fft - taps.stop  # samples the kernels skip at each end
        self.log_floor = config.log_floor
        self.log_offset = config.log_offset
        kernels = np.concatenate([kernels[: config.n_freqs][bins], kernels[config.n_freqs :][bins]])[..., taps]
        self.register_buffer("kernels", torch.from_numpy(np.ascontiguousarray(kernels)), persistent=False)
        self.register_buffer("mel", torch.from_numpy(np.ascontiguousarray(mel[:, bins])),
                             persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if self.start or self.end:
            audio = audio[:, self.start : audio.shape[1] - self.end]
        spec = nn.functional.conv1d(audio.unsqueeze(1), self.kernels, stride=self.hop_length)
        real, imag = spec[:, : self.n_freqs], spec[:, self.n_freqs :]
        power = real * real + imag * imag
        mel = torch.matmul(self.mel, power)
        return torch.log(mel + self.log_floor) if self.log_offset else torch.log(torch.clamp(mel, min=self.log_floor))
