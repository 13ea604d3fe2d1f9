"""``SegmentNet``: a VGG-style CNN on log-mel, raw audio in, per-task logits out.

Two architectures share one definition: ``vgg16`` (the 13-conv VGG16 layout with batch norm,
from scratch on one input channel, as SSSL uses) and ``compact`` (one conv per stage at an
eighth of the width, for laptop CPUs and live use). The front end sits inside the module so
one graph runs from samples to logits; ``backbone`` alone takes log-mel, which is what
training uses on cached spectrograms.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from mer_live.config import AudioConfig
from mer_live.frontend import LogMel

ARCHITECTURES: dict[str, tuple[int | str, ...]] = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "compact": (16, "M", 32, "M", 64, "M", 128, "M", 128, "M"),
}
HIDDEN = {"vgg16": 512, "compact": 64}
# Fixed input scaling: log-mel of music has mean about -4 and std about 4 (measured on 4Q). A
# constant keeps loudness, an arousal cue, that per-clip normalisation would remove.
INPUT_MEAN, INPUT_STD = -4.0, 4.0
DEFAULT_TASKS = {"valence": 2, "arousal": 2}


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and heads; ``tasks`` maps head name to class count (class 1 = high)."""

    arch: str = "compact"
    tasks: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_TASKS))
    dropout: float = 0.5

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown model {self.arch!r}; choose from {sorted(ARCHITECTURES)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        return cls(**data)


def _features(layout: tuple[int | str, ...]) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    channels = 1
    for item in layout:
        if item == "M":
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        else:
            layers += [nn.Conv2d(channels, int(item), 3, padding=1, bias=False),
                       nn.BatchNorm2d(int(item)), nn.ReLU(inplace=True)]
            channels = int(item)
    return nn.Sequential(*layers), channels


class Backbone(nn.Module):
    """(batch, n_mels, frames) log-mel -> (batch, sum of task classes) logits."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.features, channels = _features(ARCHITECTURES[config.arch])
        hidden = HIDDEN[config.arch]
        self.head = nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(channels, hidden), nn.ReLU(inplace=True),
            nn.Dropout(config.dropout), nn.Linear(hidden, sum(config.tasks.values())),
        )

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        x = self.features(((logmel - INPUT_MEAN) / INPUT_STD).unsqueeze(1))
        return self.head(x.mean(dim=(2, 3)))


class SegmentNet(nn.Module):
    """(batch, samples) raw mono audio -> (batch, sum of task classes) logits."""

    def __init__(self, audio: AudioConfig, config: ModelConfig) -> None:
        super().__init__()
        self.audio = audio
        self.config = config
        self.frontend = LogMel(audio)
        self.backbone = Backbone(config)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.frontend(audio))

    def split(self, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-task logits from the concatenated output, in ``config.tasks`` order."""
        return split_logits(logits, self.config.tasks)


def split_logits(logits: torch.Tensor, tasks: dict[str, int]) -> dict[str, torch.Tensor]:
    out, start = {}, 0
    for name, classes in tasks.items():
        out[name] = logits[:, start : start + classes]
        start += classes
    return out


class SegmentProbabilities(nn.Module):
    """Export wrapper: raw audio -> (batch, tasks) probability of class 1 ("high") per task."""

    def __init__(self, net: SegmentNet | Backbone, tasks: dict[str, int]) -> None:
        super().__init__()
        self.net = net
        self.tasks = tasks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = split_logits(self.net(x), self.tasks)
        return torch.stack([torch.softmax(v, dim=1)[:, 1] for v in logits.values()], dim=1)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_macs(net: SegmentNet, seconds: float = 3.0) -> int:
    """Multiply-accumulates for one segment of ``seconds`` (convs, STFT, mel, linears)."""
    macs = 0
    hooks = []

    def conv_hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs
        kernel = module.weight[0].numel()  # in_channels/groups * kernel size
        macs += output.numel() * kernel

    def linear_hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs
        macs += output.numel() * module.in_features

    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            hooks.append(module.register_forward_hook(linear_hook))
    audio = net.audio.replace(segment_seconds=seconds)
    with torch.no_grad():
        net.eval()
        net(torch.zeros(1, audio.segment_samples))
    for hook in hooks:
        hook.remove()
    frames = audio.segment_frames
    macs += frames * 2 * audio.n_freqs * audio.n_fft  # conv1d STFT
    macs += frames * audio.n_mels * audio.n_freqs  # mel matmul
    return macs
