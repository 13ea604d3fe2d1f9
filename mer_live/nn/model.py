"""``SegmentNet``: a CNN on log-mel, raw audio in, per-task logits out.

Two families share one seam. From scratch: ``vgg16`` (the 13-conv VGG16 layout with batch
norm on one input channel, as SSSL uses) and ``compact`` (one conv per stage at an eighth of
the width, for laptop CPUs and live use). Pretrained on music tagging (``mer_live.nn.musicnn``):
``musicnn-msd``, ``musicnn-mtt``, ``vgg-msd``, ``vgg-mtt``, a frozen body plus a ``top`` that
SSSL fine-tunes. The front end sits inside the module so one graph runs from samples to
logits; ``backbone`` alone takes log-mel, and ``trainable`` is the part training updates
(the whole backbone from scratch; only the top of a pretrained one, fed with cached body
features).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, replace

import torch
from torch import nn

from mer_live.config import AUDIOSET_AUDIO, FRONTEND_FIELDS, MUSICNN_AUDIO, AudioConfig
from mer_live.nn import mobilenet, musicnn
from mer_live.nn.frontend import LogMel
from mer_live.nn.names import ARCH_CHOICES, AUDIOSET, FINETUNE, LOUDNESS, PRETRAINED

ARCHITECTURES: dict[str, tuple[int | str, ...]] = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "compact": (16, "M", 32, "M", 64, "M", 128, "M", 128, "M"),
}
HIDDEN = {"vgg16": 512, "compact": 64}
PRETRAINED_HIDDEN = 128
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
    finetune: str = "heads"  # pretrained only: "heads", "top" or "mid" (musicnn), or "full" (AudioSet MobileNet)
    loudness: str = "none"  # pretrained only: "none" or "segment" (each segment at one loudness; gain-proof)
    bodies: int = 1  # AudioSet only: an ensemble of this many networks, each trained with its own seed
    # an ensemble's own finetune per body, e.g. ("full", "heads"): a fine-tuned network beside the frozen
    # pretrained one, which hears as AudioSet taught it (empty: every body ``finetune``)
    body_finetune: tuple[str, ...] = ()
    # AudioSet only: mood tags a second head learns from the training songs' tags (``--mood-tags``); the song
    # model does not read it, so a bundle's outputs are the same with or without
    moods: tuple[str, ...] = ()
    # AudioSet, one network fine-tuned end to end: the pretrained network beside it, frozen and without heads; its
    # pooled embedding follows the network's in what the song stage reads (``SongConfig.view``), training never sees it
    view: bool = False

    def __post_init__(self) -> None:
        if self.arch not in ARCH_CHOICES:
            raise ValueError(f"unknown model {self.arch!r}; choose from {', '.join(ARCH_CHOICES)}")
        if self.finetune not in FINETUNE:
            raise ValueError(f"unknown finetune {self.finetune!r}; choose from {', '.join(FINETUNE)}")
        if self.finetune == "full" and self.arch not in AUDIOSET:
            raise ValueError(f"finetune 'full' trains a whole AudioSet network ({', '.join(AUDIOSET)}); "
                             f"{self.arch}'s body stays frozen (use 'top')")
        if self.finetune == "top" and self.arch in AUDIOSET:
            raise ValueError(f"{self.arch} fine-tunes 'heads' or the whole network ('full'), not 'top'")
        if self.finetune == "mid" and PRETRAINED.get(self.arch, ("", ""))[1] != "musicnn":
            raise ValueError(f"finetune 'mid' trains musicnn's mid-end (musicnn-msd, musicnn-mtt), not {self.arch}'s")
        if self.loudness not in LOUDNESS:
            raise ValueError(f"unknown loudness {self.loudness!r}; choose from {', '.join(LOUDNESS)}")
        if self.bodies < 1 or (self.bodies > 1 and self.arch not in AUDIOSET):
            raise ValueError(f"bodies {self.bodies}: an ensemble is of AudioSet networks ({', '.join(AUDIOSET)}), "
                             "at least 1")
        if self.moods and self.arch not in AUDIOSET:
            raise ValueError(f"a mood-tag head sits on an AudioSet network's embedding ({', '.join(AUDIOSET)}), "
                             f"not {self.arch}'s")
        if self.view and (self.arch not in AUDIOSET or self.finetune != "full" or self.bodies != 1):
            raise ValueError("the pretrained view sits beside one AudioSet network fine-tuned end to end "
                             f"(--arch {', '.join(AUDIOSET)} --finetune full, one body)")
        if self.body_finetune:
            if len(self.body_finetune) != self.bodies or self.bodies == 1 or self.body_finetune[0] != self.finetune:
                raise ValueError(f"finetune {','.join(self.body_finetune)}: one mode per body of an ensemble "
                                 f"(bodies {self.bodies})")
            for k in range(self.bodies):
                self.member(k)  # each body's mode is checked as one network's

    @property
    def finetunes(self) -> tuple[str, ...]:
        """Every body's finetune, in order."""
        return self.body_finetune or (self.finetune,) * self.bodies

    def member(self, k: int) -> ModelConfig:
        """Body ``k`` (from 0) of the ensemble: what it trains as, one network."""
        return replace(self, bodies=1, finetune=self.finetunes[k], body_finetune=())

    @property
    def pretrained(self) -> bool:
        """A frozen musicnn-family body whose per-segment features training caches (only the top learns)."""
        return self.arch in PRETRAINED

    @property
    def caches_front_maps(self) -> bool:
        """Training caches musicnn's front-end maps (``finetune="mid"``), not the whole body's pooled vector."""
        return self.finetune == "mid"

    @property
    def audioset(self) -> bool:
        """An AudioSet MobileNet: trained on log-mel like a from-scratch model, from pretrained weights."""
        return self.arch in AUDIOSET

    @property
    def has_embedding(self) -> bool:
        """Whether the backbone exposes what its heads read (for the song aggregator's embedding statistics)."""
        return self.pretrained or self.audioset

    def default_audio(self) -> AudioConfig:
        """The front end this architecture needs: musicnn's or AudioSet's for the pretrained ones."""
        if self.audioset:
            return AUDIOSET_AUDIO
        return MUSICNN_AUDIO if self.pretrained else AudioConfig()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        return cls(**{**data, "body_finetune": tuple(data.get("body_finetune", ())),  # JSON reads them as lists
                      "moods": tuple(data.get("moods", ()))})


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


class Top(nn.Module):
    """Pretrained body features -> task logits: musicnn's tagging back end (its 200-d layer and 50
    tag activations) then our heads; for the VGGs, our heads on the body's pooled maps.

    Takes (batch, features) or (batch, features, 1): the latter is one frame of a clip's cached
    per-segment feature sequence, which is how training feeds it.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        arch = PRETRAINED[config.arch][1]
        self.backend = musicnn.MusicnnBackend() if arch == "musicnn" else None
        width = musicnn.BACKEND_UNITS + musicnn.N_TAGS if arch == "musicnn" else musicnn.VggBody.out_features
        self.frozen_backend = config.finetune == "heads"
        self.embedding_dims = width
        self.head = nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(width, PRETRAINED_HIDDEN), nn.ReLU(inplace=True),
            nn.Dropout(config.dropout), nn.Linear(PRETRAINED_HIDDEN, sum(config.tasks.values())),
        )
        if self.backend is not None and self.frozen_backend:
            self.backend.requires_grad_(False)

    def train(self, mode: bool = True) -> Top:
        super().train(mode)
        if self.backend is not None and self.frozen_backend:
            self.backend.eval()  # a frozen back end keeps its batch-norm statistics and no dropout
        return self

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """What the heads read: musicnn's 200-d penultimate layer and 50 tag activations, or the VGG's pooled maps."""
        x = features.flatten(1)
        if self.backend is None:
            return x
        penultimate, tags = self.backend(x)
        return torch.cat([penultimate, torch.sigmoid(tags)], dim=1)

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.head(embedding)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(features))


class MidendTop(nn.Module):
    """Cached front-end maps (batch, 561, frames) -> task logits: musicnn's mid-end, pooling, then ``Top``.

    What ``finetune="mid"`` trains. It is a view over a backbone's own ``body`` and ``top`` (keyed as the
    backbone keys them), not a part of the network: the front end stays frozen, so training reads its
    maps from the cache and runs only the mid-end and what follows.
    """

    def __init__(self, body: musicnn.MusicnnBody, top: Top) -> None:
        super().__init__()
        self.body = body
        self.top = top

    def embed(self, front: torch.Tensor) -> torch.Tensor:
        return self.top.embed(musicnn.pool_max_mean(self.body.mid(front)))

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.top.head(embedding)

    def forward(self, front: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(front))


class PretrainedBackbone(nn.Module):
    """(batch, n_mels, frames) log-mel -> logits: the frozen pretrained body, then ``Top``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.body = musicnn.pretrained_body(config.arch, config.loudness)
        self.top = Top(config)
        if self.top.backend is not None:
            self.top.backend.load_state_dict(musicnn.load_pretrained(config.arch, "head"))
        self.body.requires_grad_(False)
        self.midend_top: MidendTop | None = None
        if config.caches_front_maps:
            for part in (*self.body.midend, *self.body.midend_bn):
                part.requires_grad_(True)
            # a view, not a child module: registering it would list the body's and top's weights twice
            object.__setattr__(self, "midend_top", MidendTop(self.body, self.top))

    @property
    def trainable(self) -> nn.Module:
        """What training updates, on cached inputs: the mid-end and top (``mid``), else the top."""
        return self.midend_top if self.midend_top is not None else self.top

    @property
    def embedding_dims(self) -> int:
        return self.top.embedding_dims

    def embed(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.top.embed(self.body(logmel))

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.top.head(embedding)

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.top(self.body(logmel))


class AudioSetBackbone(nn.Module):
    """(batch, n_mels, frames) ``ln(mel + 1e-5)`` -> logits: the AudioSet MobileNet's pooled embedding,
    then dropout and one linear layer for every task's classes.

    ``finetune="full"`` trains the whole network (``body`` at a lower rate, see ``param_groups``);
    ``"heads"`` keeps the body frozen, batch-norm statistics included. With ``config.view`` the pretrained
    network runs beside it, frozen: ``embed`` gives the body's embedding then the view's, the heads read the first.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.body = mobilenet.pretrained()
        self.width = self.body.embedding_dims  # what the heads read
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(self.width, sum(config.tasks.values())))
        self.moods = nn.Linear(self.width, len(config.moods)) if config.moods else None
        self.view = None
        if config.view:
            with torch.random.fork_rng():  # its random init before loading draws nothing the network's training sees
                self.view = mobilenet.pretrained().requires_grad_(False)
        self.embedding_dims = self.width + (0 if self.view is None else self.view.embedding_dims)
        self.frozen_body = config.finetune != "full"
        if self.frozen_body:
            self.body.requires_grad_(False)

    def train(self, mode: bool = True) -> AudioSetBackbone:
        super().train(mode)
        for frozen in (self.body if self.frozen_body else None, self.view):
            if frozen is not None:
                frozen.eval()
        return self

    def embed(self, logmel: torch.Tensor) -> torch.Tensor:
        x = mobilenet.normalize(logmel)
        own = self.body.pooled(x)
        return own if self.view is None else torch.cat([own, self.view.pooled(x)], dim=1)

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.head(embedding[:, : self.width])

    def forward(self, logmel: torch.Tensor, tags: bool = False, moods: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The heads' logits; with ``tags``, also the body's own AudioSet logits of the same pass (distillation
        from the pretrained network, ``--distill``), and with ``moods`` the mood-tag head's (``--mood-tags``), in
        that order; through ``forward`` so data-parallel training syncs them."""
        embedding = self.body.pooled(mobilenet.normalize(logmel))  # the view is the song stage's, not training's
        outputs = [self.head(embedding)]
        if tags:
            outputs.append(self.body.tags(embedding))
        if moods:
            outputs.append(self.moods(embedding))
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


class Bodies(nn.Module):
    """An ensemble of backbones on one log-mel: the embedding is every member's, side by side (the song
    aggregator reads all their statistics), the logits their mean. Members train one at a time, each with
    its own seed (``train.trainer.fit``), or together under co-divide (``train.loop.train``)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.widths = [member.embedding_dims for member in members]
        self.embedding_dims = sum(self.widths)

    def embed(self, logmel: torch.Tensor) -> torch.Tensor:
        return torch.cat([member.embed(logmel) for member in self.members], dim=1)

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        parts = embedding.split(self.widths, dim=1)
        return torch.stack([member.classify(part) for member, part in zip(self.members, parts)]).mean(dim=0)

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(logmel))


class SegmentNet(nn.Module):
    """(batch, samples) raw mono audio -> (batch, sum of task classes) logits."""

    def __init__(self, audio: AudioConfig, config: ModelConfig) -> None:
        super().__init__()
        if config.pretrained or config.audioset:
            expected = config.default_audio()
            wrong = [f for f in FRONTEND_FIELDS if getattr(audio, f) != getattr(expected, f)]
            if wrong:
                raise ValueError(f"{config.arch} was pretrained on another front end; these audio settings "
                                 f"differ from it: {', '.join(wrong)}")
        self.audio = audio
        self.config = config
        self.frontend = LogMel(audio)
        self.backbone: nn.Module
        if config.audioset:
            members = [AudioSetBackbone(config.member(k)) for k in range(config.bodies)]
            self.backbone = members[0] if config.bodies == 1 else Bodies(members)
        else:
            self.backbone = PretrainedBackbone(config) if config.pretrained else Backbone(config)

    @classmethod
    def ensemble(cls, nets: list[SegmentNet], config: ModelConfig) -> SegmentNet:
        """One network running the members (trained apart as ``config``'s bodies, same front end) together."""
        net = cls(nets[0].audio, config)
        for member, trained in zip(net.backbone.members, nets):
            member.load_state_dict(trained.backbone.state_dict())
        return net

    def members(self) -> list[SegmentNet]:
        """An ensemble's bodies, each as a network of its own on the same front end (one network: itself)."""
        if self.config.bodies == 1:
            return [self]
        nets = []
        for k, member in enumerate(self.backbone.members):
            net = SegmentNet(self.audio, self.config.member(k))
            net.backbone.load_state_dict(member.state_dict())
            nets.append(net.eval())
        return nets

    def toward_pretrained(self, share: float) -> SegmentNet:
        """A copy whose AudioSet body's weights lie ``share`` of the way from the pretrained network's to this
        fine-tuned one's (WiSE-FT, Wortsman et al. 2022: 0 is the pretrained body, 1 this one), batch-norm
        statistics too; the heads stay as trained."""
        if not self.config.audioset or self.config.bodies != 1:
            raise ValueError("weight interpolation needs one AudioSet network (--arch mn04, one body)")
        start = mobilenet.load_weights()
        net = copy.deepcopy(self)
        body = net.backbone.body
        body.load_state_dict({name: start[name] + share * (value - start[name]) if value.is_floating_point()
                              else value for name, value in body.state_dict().items()})
        return net.eval()

    @property
    def trainable(self) -> nn.Module:
        """What training updates: the top of a pretrained backbone (on cached body features or front-end maps),
        else all of it."""
        return self.backbone.trainable if self.config.pretrained else self.backbone

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
    """Export wrapper: raw audio (a SegmentNet) or log-mel (a backbone) -> (batch, tasks) probability
    of class 1 ("high") per task; with ``embedding``, also (batch, dims) what the heads read, for the
    song aggregator's embedding statistics (pretrained backbones only)."""

    def __init__(self, net: SegmentNet | Backbone | PretrainedBackbone | AudioSetBackbone, tasks: dict[str, int],
                 embedding: bool = False) -> None:
        super().__init__()
        self.net = net
        self.tasks = tasks
        self.embedding = embedding

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if not self.embedding:
            return self._probs(self.net(x))
        backbone = self.net.backbone if isinstance(self.net, SegmentNet) else self.net
        logmel = self.net.frontend(x) if isinstance(self.net, SegmentNet) else x
        embedding = backbone.embed(logmel)
        return self._probs(backbone.classify(embedding)), embedding

    def _probs(self, logits: torch.Tensor) -> torch.Tensor:
        parts = split_logits(logits, self.tasks)
        return torch.stack([torch.softmax(v, dim=1)[:, 1] for v in parts.values()], dim=1)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_macs(net: SegmentNet, seconds: float = 3.0) -> int:
    """Multiply-accumulates for one segment of ``seconds`` (convs, STFT, mel, linears), as labeling computes it:
    with a pretrained view, its network too."""
    macs = 0
    hooks = []
    audio = net.audio.replace(segment_seconds=seconds)
    silence = torch.zeros(1, audio.segment_samples)
    with torch.no_grad():
        logmel = net.frontend(silence)  # before the hooks: the front end is counted by its own ``macs``

    def conv_hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs
        kernel = module.weight[0].numel()  # in_channels/groups * kernel size
        macs += output.numel() * kernel

    def linear_hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs
        macs += output.numel() * module.in_features

    for module in net.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            hooks.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            hooks.append(module.register_forward_hook(linear_hook))
    view = getattr(net.backbone, "view", None)
    with torch.no_grad():
        net.eval()
        net(silence)
        if view is not None:
            view.pooled(mobilenet.normalize(logmel))
    for hook in hooks:
        hook.remove()
    return macs + net.frontend.macs(audio.segment_frames)
