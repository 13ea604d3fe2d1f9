"""``LogMel``: raw audio to log-mel inside the model graph, as plain Gather, MatMul and elementwise ops.

The STFT is a two-stage DFT (Cooley-Tukey with n_fft = P x Q) written as matrix products: no torch.stft,
no complex tensors, so it exports to ONNX with either exporter and runs on every ONNX Runtime provider.
Frames are uncentered and hop-aligned, so slicing a clip's log-mel at a segment boundary gives that
segment's log-mel.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from mer_live.config import AudioConfig
from mer_live.nn.mel import mel_filterbank, stft_window


def dft_factors(n_fft: int) -> tuple[int, int]:
    """(P, Q) with P * Q = n_fft and P the largest divisor not above its square root: 1024 = 32 x 32."""
    p = max(d for d in range(1, math.isqrt(n_fft) + 1) if n_fft % d == 0)
    return p, n_fft // p


def dft_matrices(config: AudioConfig) -> dict[str, np.ndarray]:
    """The constants of the two-stage DFT, for sample n = P a + b and bin k = c + Q d.

    X[c + Q d] = sum_b W_P^(b d) W_N^(b c) sum_a x[P a + b] W_Q^(a c), with W_M = exp(-2 pi i / M):
    ``first`` is the length-Q DFT over a (cosines then sines), ``twiddle`` W_N^(b c), ``second`` the
    length-P DFT over b acting on [real | imaginary]. Only the d that reach the mel filters' top bin are
    computed (AudioSet: 16 of 32, bins up to 511), and ``mel`` is the filterbank with its columns in
    (c, d) order, so the spectrum is never transposed back to bin order."""
    p, q = dft_factors(config.n_fft)
    mel = mel_filterbank(config).astype(np.float64)
    d_count = int(np.nonzero(mel.any(axis=0))[0].max()) // q + 1
    a, b, c, d = np.arange(q), np.arange(p), np.arange(q), np.arange(d_count)
    first = -2 * np.pi * np.outer(c, a) / q  # (Q_c, Q_a)
    twiddle = -2 * np.pi * np.outer(c, b) / config.n_fft  # (Q_c, P_b)
    second = -2 * np.pi * np.outer(b, d) / p  # (P_b, D)
    cos, sin = np.cos(second), np.sin(second)
    bins = (c[:, None] + q * d[None, :]).reshape(-1)  # the bin of column c * D + d
    mel_cd = np.zeros((len(bins), mel.shape[0]))
    kept = bins < mel.shape[1]
    mel_cd[kept] = mel[:, bins[kept]].T
    matrices = {
        "window": stft_window(config)[p * a[:, None] + b[None, :]],  # (Q_a, P_b)
        "first": np.concatenate([np.cos(first), np.sin(first)]),  # (2 Q_c, Q_a)
        "twiddle_re": np.cos(twiddle), "twiddle_im": np.sin(twiddle),
        "second": np.block([[cos, sin], [-sin, cos]]),  # [Zr | Zi] @ second = [Xr | Xi]
        "mel": mel_cd,  # (Q * D, n_mels)
    }
    return {name: np.ascontiguousarray(m, dtype=np.float32) for name, m in matrices.items()}


class LogMel(nn.Module):
    """(batch, samples) float audio -> (batch, n_mels, frames) natural-log mel power.

    Frame j covers samples [j * hop, j * hop + n_fft). Frames are gathered as rows of gcd(hop, n_fft)
    samples (whole memory blocks, not single samples), then the two DFT stages are a left and a right
    matrix product: about 60 M MACs per 3 s of AudioSet audio where one direct DFT product costs 230 M."""

    def __init__(self, config: AudioConfig) -> None:
        super().__init__()
        self.p, self.q = dft_factors(config.n_fft)
        self.n_fft, self.hop_length = config.n_fft, config.hop_length
        self.block = math.gcd(config.n_fft, config.hop_length)
        self.preemphasis = config.preemphasis
        self.log_floor, self.log_offset = config.log_floor, config.log_offset
        for name, matrix in dft_matrices(config).items():
            self.register_buffer(name, torch.from_numpy(matrix), persistent=False)
        self.n_dft = self.second.shape[1] // 2  # D: output bins per c

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        batch = audio.shape[0]
        if self.preemphasis:  # y[n] = x[n+1] - k x[n]; the window's zero tail never reads the padded last sample
            audio = nn.functional.pad(audio[:, 1:] - self.preemphasis * audio[:, :-1], (0, 1))
        frames = (audio.shape[1] - self.n_fft) // self.hop_length + 1
        used = (frames - 1) * self.hop_length + self.n_fft
        blocks = audio[:, :used].reshape(batch, -1, self.block)
        rows = (torch.arange(frames).unsqueeze(1) * (self.hop_length // self.block)
                + torch.arange(self.n_fft // self.block))
        x = blocks[:, rows].reshape(batch, frames, self.q, self.p) * self.window  # (B, F, Q_a, P_b)
        y = torch.matmul(self.first, x)  # (B, F, 2 Q_c, P_b)
        re, im = y[:, :, : self.q], y[:, :, self.q :]
        z = torch.cat([re * self.twiddle_re - im * self.twiddle_im, re * self.twiddle_im + im * self.twiddle_re],
                      dim=3)  # (B, F, Q_c, 2 P_b)
        spectrum = torch.matmul(z, self.second)  # (B, F, Q_c, 2 D)
        power = spectrum[..., : self.n_dft] ** 2 + spectrum[..., self.n_dft :] ** 2
        mel = torch.matmul(power.reshape(batch, frames, -1), self.mel).transpose(1, 2)
        return torch.log(mel + self.log_floor) if self.log_offset else torch.log(torch.clamp(mel, min=self.log_floor))

    def macs(self, frames: int) -> int:
        """Multiply-accumulates for ``frames`` frames: both DFT stages and the mel product."""
        first = 2 * self.q * self.q * self.p
        second = self.q * self.second.shape[0] * self.second.shape[1]
        return frames * (first + second + self.mel.numel())
