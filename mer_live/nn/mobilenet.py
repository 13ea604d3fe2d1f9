"""EfficientAT's AudioSet MobileNetV3 (``mn04_as``, Schmid, Koutini and Widmer 2023) in PyTorch.

Written from the checkpoint's keys and the reference's documented structure: torchvision's
MobileNetV3-Large block list at width 0.4 on one input channel, batch-norm epsilon 1e-3,
squeeze-excitation over channels (mean over frequency and time, ReLU, sigmoid) in the blocks the
list marks, a 1x1 conv to 6x the last width, global average pooling (the 384-d embedding), then
``Linear(384, 512)``, hardswish and ``Linear(512, 527)`` AudioSet logits. Module names follow the
checkpoint's keys, so its state dict loads as it is. The weights are converted once by
``scripts/convert_mn04.py`` into ``mer_live/models/pretrained/mn04_as.safetensors`` beside the
MIT notice. Input is ``config.AUDIOSET_AUDIO``'s ``ln(mel + 1e-5)``; ``normalize`` applies the
network's ``(x + 4.5) / 5``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

WEIGHTS = Path(__file__).resolve().parent.parent / "models" / "pretrained" / "mn04_as.safetensors"
NOTICE = "NOTICE-EfficientAT"  # the MIT licence of the weights, copied into every bundle derived from them
WIDTH = 0.4
BN_EPS = 1e-3
SE_REDUCTION = 4
N_CLASSES = 527
HIDDEN = 1280  # before the width multiplier: 512 at 0.4
LOG_SHIFT, LOG_SCALE = 4.5, 5.0  # the reference's input scaling of ln(mel + 1e-5)
MOOD_CLASSES = range(276, 283)  # AudioSet's music-mood classes: happy, funny, sad, tender, exciting, angry, scary
# torchvision's MobileNetV3-Large: (kernel, expanded, out, squeeze-excite, hardswish, stride) at width 1.0
BLOCKS = (
    (3, 16, 16, False, False, 1), (3, 64, 24, False, False, 2), (3, 72, 24, False, False, 1),
    (5, 72, 40, True, False, 2), (5, 120, 40, True, False, 1), (5, 120, 40, True, False, 1),
    (3, 240, 80, False, True, 2), (3, 200, 80, False, True, 1), (3, 184, 80, False, True, 1),
    (3, 184, 80, False, True, 1), (3, 480, 112, True, True, 1), (3, 672, 112, True, True, 1),
    (5, 672, 160, True, True, 2), (5, 960, 160, True, True, 1), (5, 960, 160, True, True, 1),
)
STEM = 16


def make_divisible(value: float, divisor: int = 8) -> int:
    """MobileNet's channel rounding: the nearest multiple of ``divisor``, never below 90 % of ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def width(channels: int) -> int:
    return make_divisible(channels * WIDTH)


EMBEDDING_DIMS = 6 * width(BLOCKS[-1][2])  # the pooled embedding: 384 at width 0.4


def conv_bn(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1,
            activation: type[nn.Module] | None = None) -> nn.Sequential:
    """Conv (no bias, 'same' padding) + batch norm (+ activation): keys ``0.weight`` and ``1.*``."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(c_out, eps=BN_EPS)]
    if activation is not None:
        layers.append(activation())
    return nn.Sequential(*layers)


class Excite(nn.Module):
    """Channel squeeze-excitation: mean over frequency and time, ReLU bottleneck, sigmoid gate."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        squeeze = make_divisible(channels // SE_REDUCTION)
        self.fc1 = nn.Linear(channels, squeeze)
        self.fc2 = nn.Linear(squeeze, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3))))))
        return x * gate[:, :, None, None]


class SqueezeExcite(nn.Module):
    """The reference's container of concurrent excitations; ``mn04_as`` has the channel one only."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conc_se_layers = nn.ModuleList([Excite(channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conc_se_layers[0](x)


class InvertedResidual(nn.Module):
    """Expand (1x1, when wider), depthwise k x k, optional excitation, project (1x1, linear); residual
    when the shape is kept."""

    def __init__(self, c_in: int, kernel: int, expanded: int, c_out: int, excite: bool, hardswish: bool,
                 stride: int) -> None:
        super().__init__()
        act = nn.Hardswish if hardswish else nn.ReLU
        layers: list[nn.Module] = []
        if expanded != c_in:
            layers.append(conv_bn(c_in, expanded, activation=act))
        layers.append(conv_bn(expanded, expanded, kernel, stride, groups=expanded, activation=act))
        if excite:
            layers.append(SqueezeExcite(expanded))
        layers.append(conv_bn(expanded, c_out))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.residual else out


def normalize(logmel: torch.Tensor) -> torch.Tensor:
    """(batch, mels, frames) ``ln(mel + 1e-5)`` -> the network's (batch, 1, mels, frames) input."""
    return ((logmel + LOG_SHIFT) / LOG_SCALE).unsqueeze(1)


class MobileNet(nn.Module):
    """(batch, 1, 128, frames) normalised log-mel -> the final feature map; ``pooled``, ``hidden`` and
    ``forward`` (AudioSet logits) read on from it."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(1, width(STEM), 3, 2, activation=nn.Hardswish)]
        c_in = width(STEM)
        for kernel, expanded, out, excite, hardswish, stride in BLOCKS:
            layers.append(InvertedResidual(c_in, kernel, width(expanded), width(out), excite, hardswish, stride))
            c_in = width(out)
        layers.append(conv_bn(c_in, 6 * c_in, activation=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.embedding_dims = 6 * c_in
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(self.embedding_dims, width(HIDDEN)), nn.Hardswish(),
            nn.Dropout(0.2), nn.Linear(width(HIDDEN), N_CLASSES),
        )

    def stages(self) -> list[nn.Module]:
        """The body by depth, input side first, for layer-wise rates: the stem, every block and the last
        convolution (the AudioSet classifier, unused by our heads, rides with the last)."""
        *early, last = self.features
        return [*early, nn.ModuleList([last, self.classifier])]

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, 384): the globally averaged last feature map, the embedding our heads read."""
        return self.features(x).mean(dim=(2, 3))

    def tags(self, pooled: torch.Tensor) -> torch.Tensor:
        """(batch, 527) AudioSet logits from the pooled embedding (the classifier after its pooling)."""
        return self.classifier[2:](pooled)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, 512): the classifier's hidden layer after hardswish."""
        return self.classifier[3](self.classifier[2](self.pooled(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def load_weights(path: Path = WEIGHTS) -> dict[str, torch.Tensor]:
    """The converted ``mn04_as`` state dict (every key of the checkpoint)."""
    from safetensors.numpy import load_file

    if not path.is_file():
        raise FileNotFoundError(f"{path}: pretrained weights missing; run scripts/convert_mn04.py")
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in load_file(str(path)).items()}


def pretrained() -> MobileNet:
    """``mn04_as`` with its AudioSet weights, in eval mode."""
    net = MobileNet()
    net.load_state_dict(load_weights())
    return net.eval()
