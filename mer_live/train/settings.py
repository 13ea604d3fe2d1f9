"""Training settings and choice lists, torch-free: the CLI builds its options from them.

``TrainConfig`` (the SSSL hyperparameters) is the one place their defaults live: argparse reads
them from ``TRAIN_DEFAULTS``. ``DataConfig`` says where clips come from and where their log-mel
is cached, ``RunSettings`` where a `mer-live train` run goes; library functions take these
typed objects, never an argparse namespace.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

# dataset layouts `load_dataset` reads; training needs labels, so it takes all but "unlabeled"
DATASET_NAMES = ("4q", "pmemo", "deam", "eim", "manifest", "synth", "unlabeled")
TRAIN_DATASETS = tuple(name for name in DATASET_NAMES if name != "unlabeled")
METHODS = ("sssl", "naive", "clip")  # SSSL, the naive segment baseline (plain CE), the clip-level baseline
GMM_INPUTS = ("loss", "clip-relative")
MOOD_SOURCES = ("tags", "quadrant")
COMPUTE = ("auto", "cpu", "cuda")
NAIVE_OVERRIDES = {"gmm": False, "mixup": False, "rdrop": False, "refine": False, "co_divide": False}


@dataclass(frozen=True)
class TrainConfig:
    """SSSL hyperparameters. [inferred] defaults are not fixed by the paper; measure them."""

    epochs: int = 12
    warmup_epochs: int = 4  # DivideMix uses 10-30 on CIFAR; short runs here [inferred]
    batch_size: int = 64  # per process under data-parallel training
    lr: float = 1e-3  # Adam; from scratch on a small CNN [inferred]
    backbone_lr_scale: float = 0.1  # pretrained back end, when fine-tuned: a tenth of the heads' rate [inferred]
    # < 1: layer-wise rates in a fine-tuned AudioSet MobileNet's body: its last stage learns at backbone_lr_scale
    # of the heads' rate, every stage before it at this factor of the next one's, so the stem's general
    # filters move least (ULMFiT's discriminative rates, BEiT's layer decay) [inferred]; 1: one rate for the body
    layer_decay: float = 1.0
    # > 0: the rate rises linearly over this many epochs, then follows a cosine to 0, set every step (fine-tuning
    # a whole pretrained network: large early steps on a random head would wreck the body) [inferred]; 0: a
    # cosine over epochs, stepped once per epoch
    lr_warmup_epochs: float = 0.0
    weight_decay: float = 1e-4
    tau: float = 0.5  # clean threshold (DivideMix p_threshold)
    temperature: float = 0.5  # sharpening T
    alpha: float = 1.0  # mixup Beta(alpha, alpha); DivideMix CIFAR uses 4 [inferred for spectrograms]
    # unlabeled MSE weight, ramped over `rampup_epochs`. DivideMix uses 25 on CIFAR's synthetic noise but 0 on
    # the real-world noise of Clothing1M and WebVision; inherited segment labels are real-world noise, and on
    # 4Q a first 25 cut validation valence AUC from 0.71 to 0.63 within one epoch [inferred]
    lambda_u: float = 0.0
    rampup_epochs: int = 16
    lambda_kl: float = 1.0  # R-Drop weight
    gmm: bool = True
    gmm_input: str = "loss"  # "loss" (DivideMix) or "clip-relative" (loss minus its clip's mean) [inferred]
    gmm_per_class: bool = False  # one GMM per task and class (optional in the method doc) [inferred]
    mixup: bool = True
    rdrop: bool = True
    refine: bool = True
    shift_frames: int = 8  # view augmentation: random time shift within the clip
    freq_mask: int = 8  # SpecAugment: one frequency mask of up to this many mel bands
    time_mask: int = 12  # and one time mask of up to this many frames
    segments_per_epoch: int = 0  # 0 = every segment each epoch; else a fresh random subset
    gain_augment_db: tuple[float, ...] = ()  # also train on every clip as if recorded at these gains [inferred]
    air_copies: int = 0  # also train on this many random room / noise / band / gain recordings of every clip
    air_phone: float = 0.0  # the share of those recordings heard through a telephone's band [inferred]
    # the song SVM fits on the clean songs and the first this many other versions of them (None: all, as the
    # segment model); every version adds its songs' rows to the support vectors, so fewer make a smaller bundle
    svm_copies: int | None = None
    # > 0: an exponential moving average of the weights, updated every step with this decay, is what is validated
    # and kept; under SSSL it is also the teacher that divides the segments and guesses their targets (Mean
    # Teacher's alternative to the paper's R-Drop passes) [inferred]
    ema: float = 0.0
    # > 0 (with air_copies or gain_augment_db): those other recordings of a clip are not extra segments but
    # paired views; every step also hears each segment through one of them and pulls that prediction towards
    # the clean view's (KL from the clean softmax, its gradient stopped, times this weight: UDA's consistency
    # loss), so the network says through a room what it says on the file [inferred]
    consistency: float = 0.0
    # SSSL with an ensemble of two bodies (``bodies=2``): they train in lockstep, and each network steps on the
    # clean/noisy division made by the other's losses while both guess the unlabeled targets (DivideMix's
    # co-divide and co-guessing: a network does not confirm its own mistakes); off: each divides for itself
    co_divide: bool = False
    # > 0: mixup in the plain cross-entropy steps too (every naive epoch, SSSL's warm-up): pairs of segments
    # and their inherited labels mixed at l ~ Beta(ce_mixup, ce_mixup), the larger share first; fine-tuning a
    # pretrained body on 400 songs overfits, and audio-tagging fine-tuning recipes mix [inferred]
    ce_mixup: float = 0.0
    # > 0 (a fine-tuned AudioSet MobileNet): every step also pulls the body's own AudioSet outputs (its 527 tags,
    # which our heads do not read) towards the pretrained network's on the same clean segments (a Bernoulli KL
    # summed over the tags, times this weight), through the air too: Learning without Forgetting's distillation,
    # so 320 songs of fine-tuning keep what AudioSet taught the body [inferred]
    distill: float = 0.0
    # > 0: the share of training batches whose views swap part of their per-mel-band level and spread over time
    # with another segment's (Freq-MixStyle; p 0.4 in EfficientAT's and CP-JKU's device-robust recipes): a room,
    # a microphone and a master colour the bands, and the network should hear through them [inferred]
    freq_mixstyle: float = 0.0
    # > 0: the plain cross-entropy steps (every naive epoch, SSSL's warm-up) score each inherited label smoothed
    # this far towards uniform (0.1: 0.95 / 0.05): the simplest loss for noisy labels, where a segment that does
    # not sound like its clip's label is not pushed to certainty (Lukasik et al. 2020) [inferred]
    label_smoothing: float = 0.0
    # != 1 (heads for valence and arousal): in the plain cross-entropy steps the valence loss of every segment
    # whose inherited arousal is low counts this many times. Most of the default's valence errors are sad songs
    # heard as calm and calm as sad (docs/evaluation, "Where valence is lost"): the weight asks the network to
    # spend more of itself on that distinction [inferred]
    quiet_valence: float = 1.0
    # > 0 (an AudioSet MobileNet, a dataset with mood tags: 4Q's AllMusic moods): a second head on the embedding
    # also learns every segment's clip's mood tags (softmax cross-entropy against them as one distribution, times
    # this weight). Two binary labels say little about 320 songs; "sad", "bittersweet" and "gloomy" say which
    # way and how far, and the quadrant labels were derived from these very tags [inferred]
    mood_tags: float = 0.0
    # what the mood head learns: "tags" (the dataset's mood tags, above) or "quadrant" (every song's annotated
    # quadrant as one of four classes, any dataset with both labels): the two binary heads cannot give sad
    # against calm a direction of its own, a four-class head can [inferred]
    mood_source: str = "tags"
    # > 0 (a network on log-mels): every training view is shifted in pitch by a random amount, uniform in
    # +-this many semitones, by reading each mel band at its frequency over 2^(s/12) (tempo unchanged). 320
    # songs are 320 keys and registers; a song's mode and harmony, which carry its valence, do not move
    # with its key (pitch shifting is the standard music augmentation: McFee et al. 2015, MUDA) [inferred]
    pitch_shift: float = 0.0
    # > 0 (a fine-tuned pretrained network): before its epochs, this many epochs step the heads alone, the
    # pretrained parts frozen (LP-FT: Kumar et al. 2022, "Fine-tuning can distort pretrained features"): the
    # whole network then starts from heads that already read the body, not random ones whose first gradients
    # reshape the body's features to fit them; the body's batch-norm statistics follow the data meanwhile, as
    # they do once it steps [inferred]
    probe_epochs: int = 0
    # > 0: every step is sharpness-aware (SAM: Foret et al. 2021): the gradient is taken again at the weights
    # moved this far (an L2 radius) up the batch's own gradient, so the network settles where the loss is flat
    # around it, not in a narrow minimum that 320 songs' noisy segment labels carve; twice a step's compute [inferred]
    sam: float = 0.0
    # > 0: the plain cross-entropy steps (every naive epoch, SSSL's warm-up) score songs beside segments: every
    # batch holds runs of a few segments of one song, and the loss is (1 - this) times the segments' cross-entropy
    # on their inherited labels plus this times the cross-entropy of each song's mean segment logits on its label
    # (1: multiple-instance learning alone). A clip's label says what the song is, not what every 3 s of it is;
    # only its segments' average is asked to say it, as the song aggregator reads their statistics [inferred]
    song_loss: float = 0.0
    # the share of training songs held out to choose the epoch by their song ROC AUC; 0: none, every song trains
    # and the last epoch is kept. The learning curve still climbs at 320 songs, and on the default's 5 folds the
    # epochs chosen (4, 5, 3, 4, 4 of 6) scored within 0.005 song AUC of the last one on 48 songs [measured]
    val_fraction: float = 0.15
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "gain_augment_db", tuple(float(g) for g in self.gain_augment_db))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


TRAIN_DEFAULTS = TrainConfig()


def default_cache_dir() -> Path:
    return Path(os.environ.get("MER_LIVE_CACHE", Path.home() / ".cache" / "mer-live" / "logmel"))


@dataclass(frozen=True)
class DataConfig:
    """Which clips to train on and where their log-mel is cached."""

    dataset: str
    root: Path | None = None
    thresholds: dict[str, float] = field(default_factory=dict)  # override a dataset's binarization per task
    cache_dir: Path | None = None  # None: $MER_LIVE_CACHE or ~/.cache/mer-live/logmel
    workers: int = 2  # decoding threads for the cache
    synth_clips: int = 80  # synth: clips to generate
    synth_seconds: float = 12.0  # synth: clip length
    seed: int = 0  # synth: generator seed

    @property
    def cache(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else default_cache_dir()


DATA_DEFAULTS = DataConfig(dataset="synth")


@dataclass(frozen=True)
class RunSettings:
    """Where `mer-live train` writes its run and how: the method, resuming, data-parallel training."""

    out: Path
    method: str = "sssl"
    resume: bool = False
