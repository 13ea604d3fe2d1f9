"""``LogMel``: raw audio to log-mel inside the model graph, as plain Gather, MatMul and elementwise ops.

The STFT is a two-stage DFT (Cooley-Tukey with n_fft = P x Q) written as matrix products: no torch.stft,
no complex tensors, so it exports to ONNX with either exporter and runs on every ONNX Runtime provider.
The input is real, so the first stage computes only the Q // 2 + 1 frequencies c whose partners Q - c are
their complex conjugates, and the second stage turns each c into the bins of c and of Q - c in one matrix
product whose constants hold the twiddle factors (no elementwise complex arithmetic in the graph).
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


def window_rows(config: AudioConfig) -> tuple[int, int]:
    """[first, last) of the rows a (sample n = P a + b) where the analysis window is not zero: an 800-sample
    window centred in n_fft 1024 leaves 6 of 32 rows out of the first stage."""
    p, q = dft_factors(config.n_fft)
    nonzero = np.nonzero(np.abs(stft_window(config)).reshape(q, p).sum(axis=1))[0]
    return int(nonzero[0]), int(nonzero[-1]) + 1


def dft_matrices(config: AudioConfig) -> dict[str, np.ndarray]:
    """The constants of the two-stage DFT, for sample n = P a + b and bin k = c + Q d.

    X[k] = sum_b Y[c, b] W_N^(b k) with Y[c, b] = sum_a x[P a + b] W_Q^(a c) and W_M = exp(-2 pi i / M).
    ``first`` is the length-Q DFT over the window's rows a for c = 0 .. Q // 2 (cosines then sines). For a real
    input Y[Q - c] = conj(Y[c]), so ``second[c]`` maps [Re Y[c] | Im Y[c]] (2P values) to the real parts of the
    bins of c and of its partner Q - c, then their imaginary parts (D bins each: only the d that reach the mel
    filters' top bin; AudioSet: 16 of 32, bins up to 511). c = 0, and c = Q / 2 for an even Q, are their own
    partners: their partner columns are zero. ``mel`` is the filterbank with its rows in (c, partner, d) order,
    zero where a column is no bin, so the spectrum is never put back in bin order."""
    p, q = dft_factors(config.n_fft)
    mel = mel_filterbank(config).astype(np.float64)
    n_d = int(np.nonzero(mel.any(axis=0))[0].max()) // q + 1
    first_row, last_row = window_rows(config)
    a, b, c, d = np.arange(first_row, last_row), np.arange(p), np.arange(q // 2 + 1), np.arange(n_d)
    first = -2 * np.pi * np.outer(c, a) / q  # (C, A)
    second = np.zeros((len(c), 2 * p, 4 * n_d))
    mel_cd = np.zeros((len(c), 2 * n_d, mel.shape[0]))
    for ci in c:
        for half, (cc, sign) in enumerate(((ci, 1.0), (q - ci, -1.0))):  # the partner reads conj(Y[c])
            if half and cc in (q, ci):
                continue
            bins = cc + q * d
            angle = -2 * np.pi * np.outer(b, bins) / config.n_fft  # W_N^(b k)
            real, imag = slice(half * n_d, (half + 1) * n_d), slice((2 + half) * n_d, (3 + half) * n_d)
            second[ci, :p, real], second[ci, p:, real] = np.cos(angle), -sign * np.sin(angle)
            second[ci, :p, imag], second[ci, p:, imag] = np.sin(angle), sign * np.cos(angle)
            kept = bins < mel.shape[1]
            mel_cd[ci, half * n_d + d[kept]] = mel[:, bins[kept]].T
    window = stft_window(config).reshape(q, p)[first_row:last_row]
    matrices = {
        "window": window[:, None, :],  # (A, 1, P): broadcast over frames
        "first": np.concatenate([np.cos(first), np.sin(first)]),  # (2 C, A)
        "second": second,  # (C, 2 P, 4 D)
        "mel": mel_cd.reshape(-1, mel.shape[0]),  # (C * 2 D, n_mels)
    }
    return {name: np.ascontiguousarray(m, dtype=np.float32) for name, m in matrices.items()}


class LogMel(nn.Module):
    """(batch, samples) float audio -> (batch, n_mels, frames) natural-log mel power.

    Frame j covers samples [j * hop, j * hop + n_fft). Its window's rows a are gathered as runs of
    gcd(hop, P) samples (whole memory blocks, not single samples) in (row, frame) order, so the first stage is
    one matrix product over every frame; the second is one product per c. About 50 M MACs per 3 s of AudioSet
    audio where one direct DFT product costs 230 M."""

    def __init__(self, config: AudioConfig) -> None:
        super().__init__()
        self.p, self.q = dft_factors(config.n_fft)
        self.n_fft, self.hop_length = config.n_fft, config.hop_length
        self.first_row, last_row = window_rows(config)
        self.rows = last_row - self.first_row  # A
        self.block = math.gcd(config.hop_length, self.p)
        self.preemphasis = config.preemphasis
        self.log_floor, self.log_offset = config.log_floor, config.log_offset
        for name, matrix in dft_matrices(config).items():
            self.register_buffer(name, torch.from_numpy(matrix), persistent=False)
        self.n_c = self.second.shape[0]  # C = Q // 2 + 1
        self.n_d = self.second.shape[2] // 4  # D: bins per c

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        batch = audio.shape[0]
        if self.preemphasis:  # y[n] = x[n+1] - k x[n]; the window's zero tail never reads the padded last sample
            audio = nn.functional.pad(audio[:, 1:] - self.preemphasis * audio[:, :-1], (0, 1))
        frames = (audio.shape[1] - self.n_fft) // self.hop_length + 1
        used = (frames - 1) * self.hop_length + self.n_fft
        blocks = audio[:, :used].reshape(batch, -1, self.block)
        per_row = self.p // self.block
        index = ((torch.arange(self.rows).view(-1, 1, 1) + self.first_row) * per_row
                 + torch.arange(frames).view(1, -1, 1) * (self.hop_length // self.block)
                 + torch.arange(per_row).view(1, 1, -1))  # (A, F, P / block)
        x = blocks[:, index].reshape(batch, self.rows, frames, self.p) * self.window  # (B, A, F, P)
        y = torch.matmul(self.first, x.reshape(batch, self.rows, frames * self.p))  # (B, 2 C, F P)
        y = y.reshape(batch, 2, self.n_c, frames, self.p).permute(0, 2, 3, 1, 4)  # (B, C, F, re/im, P)
        spectrum = torch.matmul(y.reshape(batch, self.n_c, frames, 2 * self.p), self.second)  # (B, C, F, 4 D)
        squares = spectrum * spectrum
        power = squares[..., : 2 * self.n_d] + squares[..., 2 * self.n_d :]  # (B, C, F, 2 D)
        power = power.transpose(1, 2).reshape(batch, frames, -1)
        mel = torch.matmul(power, self.mel).transpose(1, 2)
        return torch.log(mel + self.log_floor) if self.log_offset else torch.log(torch.clamp(mel, min=self.log_floor))

    def macs(self, frames: int) -> int:
        """Multiply-accumulates for ``frames`` frames: both DFT stages and the mel product."""
        return frames * (self.first.numel() * self.p + self.second.numel() + self.mel.numel())
