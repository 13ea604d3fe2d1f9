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


class LogMel(nn.Module):
    """(batch, samples) float audio -> (batch, n_mels, frames) natural-log mel power."""

    def __init__(self, config: AudioConfig) -> None:
        super().__init__()
        self.hop_length = config.hop_length
        self.n_freqs = config.n_freqs
        self.log_floor = config.log_floor
        self.log_offset = config.log_offset
        self.register_buffer("kernels", torch.from_numpy(stft_kernels(config)), persistent=False)
        self.register_buffer("mel", torch.from_numpy(mel_filterbank(config)), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        spec = nn.functional.conv1d(audio.unsqueeze(1), self.kernels, stride=self.hop_length)
        real, imag = spec[:, : self.n_freqs], spec[:, self.n_freqs :]
        power = real * real + imag * imag
        mel = torch.matmul(self.mel, power)
        return torch.log(mel + self.log_floor) if self.log_offset else torch.log(torch.clamp(mel, min=self.log_floor))
