"""musicnn and its music-VGG (Pons and Serra 2019) in PyTorch, pretrained on music tagging.

Ported layer by layer from the ``musicnn`` package's ``models.py`` (TensorFlow 1 layers: NHWC,
batch-norm epsilon 1e-3, ReLU *before* batch norm, "same" padding that puts the odd extra pad
after). The weights are the package's checkpoints, converted once by
``scripts/convert_musicnn.py`` and shipped in ``mer_live/models/pretrained/`` with the package's
ISC notice. Input is the natural-log mel power of ``config.MUSICNN_AUDIO`` (16 kHz, n_fft 512, hop 256,
96 Slaney mels), which ``compress`` turns into musicnn's ``log10(1 + 10000 * mel)``.

The networks split where training caches: ``*Body`` maps log-mel to one pooled vector per
segment (frozen, computed once per clip and segment), ``Top`` maps that vector to our task
logits and is what SSSL fine-tunes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from mer_live.nn.names import PRETRAINED

WEIGHTS_DIR = Path(__file__).parents[1] / "models" / "pretrained"
NOTICE = "NOTICE"  # the musicnn package's ISC licence, kept beside the weights and copied into bundles
BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization's default
N_TAGS = 50
# musicnn's front end: timbral filters spanning 40 % and 70 % of the mel axis, temporal filters of
# 128, 64 and 32 frames; 1.6 x (128, 32) filters; a 64-filter dense mid-end; a 200-unit back end.
TIMBRAL = ((7, int(0.4 * 96)), (7, int(0.7 * 96)))
TEMPORAL = (128, 64, 32)
TIMBRAL_FILTERS, TEMPORAL_FILTERS = int(1.6 * 128), int(1.6 * 32)
MIDEND_FILTERS, BACKEND_UNITS = 64, 200
FRONTEND_CHANNELS = len(TIMBRAL) * TIMBRAL_FILTERS + len(TEMPORAL) * TEMPORAL_FILTERS  # 561
MIDEND_CHANNELS = FRONTEND_CHANNELS + 3 * MIDEND_FILTERS  # 753: dense connections
VGG_FILTERS = 128
VGG_POOLS = ((4, 1, 2, 2), (2, 2, 2, 2), (2, 2, 2, 2), (2, 2, 2, 2), (4, 4, 4, 4))  # (kt, kf, st, sf)
REFERENCE_LEVEL = -1.0  # ln of the mean mel power the "segment" setting scales to (4Q clips: median -1.14)
SILENCE_LEVEL = -16.0  # quieter segments are scaled as if they were this loud, not blown up to the reference


def compress(logmel: torch.Tensor) -> torch.Tensor:
    """Natural-log mel power -> musicnn's ``log10(1 + 10000 * mel)`` (computed in float32)."""
    return torch.log10(1.0 + 10000.0 * torch.exp(logmel))


def normalize_loudness(logmel: torch.Tensor) -> torch.Tensor:
    """Shift each segment's log-mel so its mean mel power is ``REFERENCE_LEVEL``: gain-invariant."""
    level = torch.log(torch.exp(logmel).mean(dim=(1, 2), keepdim=True))
    return logmel - torch.clamp(level, min=SILENCE_LEVEL) + REFERENCE_LEVEL


def network_input(logmel: torch.Tensor, loudness: str, input_bn: nn.BatchNorm2d) -> torch.Tensor:
    """Log-mel -> what both networks' first layer sees: (optionally) loudness-normalised, musicnn's
    compression, TF's NHWC layout as (batch, 1, time, mel), the input batch norm."""
    if loudness == "segment":
        logmel = normalize_loudness(logmel)
    return input_bn(compress(logmel).transpose(1, 2).unsqueeze(1))


def bn(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=BN_EPS)


def bn2d(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


def pool_max_mean(features: torch.Tensor) -> torch.Tensor:
    """(batch, channels, time) -> (batch, 2 * channels) as TF flattens [max, mean] per channel."""
    return torch.stack([features.amax(dim=2), features.mean(dim=2)], dim=2).flatten(1)


class MusicnnBody(nn.Module):
    """(batch, 96, frames) log-mel -> (batch, 1506) pooled mid-end features (musicnn's back-end input)."""

    out_features = 2 * MIDEND_CHANNELS

    def __init__(self, loudness: str = "none") -> None:
        super().__init__()
        self.loudness = loudness
        self.input_bn = bn2d(1)
        self.timbral = nn.ModuleList(nn.Conv2d(1, TIMBRAL_FILTERS, k) for k in TIMBRAL)
        self.timbral_bn = nn.ModuleList(bn2d(TIMBRAL_FILTERS) for _ in TIMBRAL)
        self.temporal = nn.ModuleList(nn.Conv2d(1, TEMPORAL_FILTERS, (k, 1)) for k in TEMPORAL)
        self.temporal_bn = nn.ModuleList(bn2d(TEMPORAL_FILTERS) for _ in TEMPORAL)
        widths = (FRONTEND_CHANNELS, MIDEND_FILTERS, MIDEND_FILTERS)
        self.midend = nn.ModuleList(nn.Conv1d(w, MIDEND_FILTERS, 7) for w in widths)
        self.midend_bn = nn.ModuleList(bn(MIDEND_FILTERS) for _ in widths)

    def front(self, logmel: torch.Tensor) -> torch.Tensor:
        """(batch, 96, frames) -> (batch, 561, frames): the timbral and temporal front end, pooled over mels."""
        x = network_input(logmel, self.loudness, self.input_bn)
        maps = []
        padded = nn.functional.pad(x, (0, 0, 3, 3))
        for conv, norm in zip(self.timbral, self.timbral_bn):
            maps.append(norm(torch.relu(conv(padded))).amax(dim=3))
        for k, conv, norm in zip(TEMPORAL, self.temporal, self.temporal_bn):
            same = nn.functional.pad(x, (0, 0, (k - 1) // 2, k // 2))  # TF "same": the odd pad goes after
            maps.append(norm(torch.relu(conv(same))).amax(dim=3))
        return torch.cat(maps, dim=1)

    def mid(self, front: torch.Tensor) -> torch.Tensor:
        """(batch, 561, frames) front-end maps -> (batch, 753, frames): front end and mid-end, densely joined."""
        out, y = [front], front
        for i, (conv, norm) in enumerate(zip(self.midend, self.midend_bn)):
            z = norm(torch.relu(conv(nn.functional.pad(y, (3, 3)))))
            y = z if i == 0 else z + y
            out.append(y)
        return torch.cat(out, dim=1)

    def frames(self, logmel: torch.Tensor) -> torch.Tensor:
        """(batch, 96, frames) -> (batch, 753, frames): front-end and mid-end maps, densely joined."""
        return self.mid(self.front(logmel))

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        return pool_max_mean(self.frames(logmel))


class MusicnnBackend(nn.Module):
    """(batch, 1506) pooled features -> (penultimate (batch, 200), tag logits (batch, 50))."""

    def __init__(self) -> None:
        super().__init__()
        self.pool_bn = bn(MusicnnBody.out_features)
        self.dense = nn.Linear(MusicnnBody.out_features, BACKEND_UNITS)
        self.dense_bn = bn(BACKEND_UNITS)
        self.tags = nn.Linear(BACKEND_UNITS, N_TAGS)
        self.dropout = nn.Dropout(0.5)

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        penultimate = self.dense_bn(torch.relu(self.dense(self.dropout(self.pool_bn(pooled)))))
        return penultimate, self.tags(self.dropout(penultimate))


class VggBody(nn.Module):
    """(batch, 96, frames) log-mel -> (batch, 256): max and mean over time of the last conv block."""

    out_features = 2 * VGG_FILTERS

    def __init__(self, loudness: str = "none") -> None:
        super().__init__()
        self.loudness = loudness
        self.input_bn = bn2d(1)
        self.convs = nn.ModuleList(nn.Conv2d(1 if i == 0 else VGG_FILTERS, VGG_FILTERS, 3, padding=1)
                                   for i in range(len(VGG_POOLS)))
        self.bns = nn.ModuleList(bn2d(VGG_FILTERS) for _ in VGG_POOLS)

    def maps(self, logmel: torch.Tensor) -> torch.Tensor:
        """(batch, 128, time/16, 6): the fifth conv block before its pooling, TF's layout as NCHW."""
        x = network_input(logmel, self.loudness, self.input_bn)
        for i, (conv, norm) in enumerate(zip(self.convs, self.bns)):
            if i:
                kt, kf, st, sf = VGG_POOLS[i - 1]
                x = nn.functional.max_pool2d(x, (kt, kf), (st, sf))
            x = norm(torch.relu(conv(x)))
        return x

    def pool5(self, logmel: torch.Tensor) -> torch.Tensor:
        kt, kf, st, sf = VGG_POOLS[-1]
        return nn.functional.max_pool2d(self.maps(logmel), (kt, kf), (st, sf))

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        """Global max and mean over time of the fifth block: any segment of 1 s or more."""
        return pool_max_mean(self.maps(logmel).amax(dim=3))


class VggTags(nn.Module):
    """The VGG's own tag layer: defined on 3 s patches only (pool5 flattened, 2 x 1 x 128)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags = nn.Linear(2 * VGG_FILTERS, N_TAGS)

    def forward(self, pool5: torch.Tensor) -> torch.Tensor:
        return self.tags(pool5.permute(0, 2, 3, 1).flatten(1))  # TF flattens NHWC


def pretrained_body(name: str, loudness: str = "none") -> MusicnnBody | VggBody:
    """The body of ``name`` with its converted weights."""
    body = MusicnnBody(loudness) if PRETRAINED[name][1] == "musicnn" else VggBody(loudness)
    body.load_state_dict(load_pretrained(name, "body"))
    return body


def weights_path(name: str) -> Path:
    return WEIGHTS_DIR / f"{PRETRAINED[name][0]}.safetensors"


def load_pretrained(name: str, part: str) -> dict[str, torch.Tensor]:
    """One part of the converted weights of ``name``: "body", or "head" (musicnn's tagging back end, or
    the VGG's tag layer), keyed as that module's state dict."""
    from safetensors.numpy import load_file

    path = weights_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pretrained weights missing; run scripts/convert_musicnn.py")
    prefix = f"{part}."
    return {k.removeprefix(prefix): torch.from_numpy(np.ascontiguousarray(v))
            for k, v in load_file(str(path)).items() if k.startswith(prefix)}


class Tagger(nn.Module):
    """The pretrained network whole, as the musicnn package runs it: log-mel -> (tag probs, penultimate).

    For the musicnn models ``penultimate`` is the back end's 200-d layer; for the VGGs it is pool5
    flattened. Used for parity with the original and for tag activations.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.arch = PRETRAINED[name][1]
        self.body = pretrained_body(name)
        self.head = MusicnnBackend() if self.arch == "musicnn" else VggTags()
        self.head.load_state_dict(load_pretrained(name, "head"))
        self.eval()

    def forward(self, logmel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.arch == "musicnn":
            penultimate, logits = self.head(self.body(logmel))
        else:
            pool5 = self.body.pool5(logmel)
            penultimate, logits = pool5.permute(0, 2, 3, 1).flatten(1), self.head(pool5)
        return torch.sigmoid(logits), penultimate
