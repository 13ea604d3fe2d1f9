"""`mer-live train` and `mer-live evaluate`. Only argparse at import: torch loads when a command runs."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from pathlib import Path

from mer_live.config import DEFAULT_SONG, TASKS
from mer_live.errors import MerLiveError
from mer_live.nn.names import ARCH_CHOICES, FINETUNE, LOUDNESS
from mer_live.train.settings import (
    COMPUTE,
    DATA_DEFAULTS,
    GMM_INPUTS,
    METHODS,
    MOOD_SOURCES,
    TRAIN_DATASETS,
    TRAIN_DEFAULTS,
    DataConfig,
    RunSettings,
    TrainConfig,
)

D = TRAIN_DEFAULTS  # every SSSL option's default is the dataclass's


def _gains(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes numbers like -10 or -20,-10,6: got {text!r}") from None


def _common(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=TRAIN_DATASETS, required=True, help="dataset layout to read")
    data.add_argument("--root", type=Path, help="dataset root folder (the manifest CSV's folder for manifest; "
                      "for synth, where to generate the corpus)")
    data.add_argument("--synth-clips", type=int, default=DATA_DEFAULTS.synth_clips,
                      help="synth: number of clips to generate")
    data.add_argument("--synth-seconds", type=float, default=DATA_DEFAULTS.synth_seconds, help="synth: clip length")
    data.add_argument("--threshold-valence", type=float, help="override the dataset's valence binarization")
    data.add_argument("--threshold-arousal", type=float, help="override the dataset's arousal binarization")
    data.add_argument("--cache-dir", type=Path,
                      help="log-mel cache (default $MER_LIVE_CACHE or ~/.cache/mer-live/logmel)")
    data.add_argument("--workers", type=int, default=DATA_DEFAULTS.workers, help="decoding workers for the cache")
    model = parser.add_argument_group("model and segments")
    model.add_argument("--model", dest="model", choices=list(ARCH_CHOICES), default=argparse.SUPPRESS,
                       help=argparse.SUPPRESS)  # the old name of --arch
    model.add_argument("--arch", dest="model", choices=list(ARCH_CHOICES), default="compact",
                       help="segment model: a pretrained CNN (musicnn-msd, musicnn-mtt, vgg-msd, vgg-mtt, on music "
                            "tagging; mn04, on AudioSet) or one trained from scratch (compact, vgg16); default compact")
    model.add_argument("--finetune", default="heads", metavar="{" + ",".join(FINETUNE) + "}",
                       help="pretrained models: train our heads only (heads), also musicnn's tagging back end (top), "
                            "also musicnn's mid-end on cached front-end maps (mid), or the whole AudioSet network "
                            "(full, mn04); with --bodies K, one mode per body is allowed, e.g. full,heads (a "
                            "fine-tuned network beside the frozen pretrained one)")
    model.add_argument("--loudness", choices=list(LOUDNESS), default="none",
                       help="pretrained models: 'segment' scales every segment to one loudness first (gain-proof)")
    model.add_argument("--dropout", type=float, default=argparse.SUPPRESS,
                       help="dropout of the heads (default: the model's)")
    model.add_argument("--bodies", type=int, default=1, metavar="K",
                       help="AudioSet models: an ensemble of K networks, trained one after another with seeds "
                            "--seed, --seed+1, ..., run as one graph; the song aggregator reads every body's "
                            "embedding statistics (evaluate also scores each body alone)")
    model.add_argument("--segment-hop", type=float, default=1.0, help="segment hop in seconds")
    opt = parser.add_argument_group("SSSL ([inferred] defaults: not fixed by the paper, measured here)")
    opt.add_argument("--epochs", type=int, default=D.epochs)
    opt.add_argument("--warmup-epochs", type=int, default=D.warmup_epochs)
    opt.add_argument("--batch-size", type=int, default=D.batch_size,
                     help="segments per step (per process with --ddp)")
    opt.add_argument("--lr", type=float, default=D.lr)
    opt.add_argument("--backbone-lr-scale", type=float, default=D.backbone_lr_scale,
                     help="learning rate of a fine-tuned pretrained back end or body, as a fraction of --lr")
    opt.add_argument("--layer-decay", type=float, default=D.layer_decay, metavar="D",
                     help="--arch mn04 --finetune full: layer-wise rates, the body's last stage at "
                          "--backbone-lr-scale and every stage before it at D times the next one's, e.g. 0.85 "
                          "(1: one rate for the whole body)")
    opt.add_argument("--weight-decay", type=float, default=D.weight_decay, metavar="WD",
                     help="Adam's L2 penalty on every trained parameter, biases and norms too (0: none)")
    opt.add_argument("--lr-warmup-epochs", type=float, default=D.lr_warmup_epochs,
                     help="> 0: warm the rate up linearly over this many epochs, then a cosine to 0, every step")
    opt.add_argument("--probe-epochs", type=int, default=D.probe_epochs, metavar="N",
                     help="a fine-tuned pretrained network: first N epochs train the heads alone on the frozen body, "
                          "then the whole network trains its --epochs from them (LP-FT; 0: off)")
    opt.add_argument("--sam", type=float, default=D.sam, metavar="RHO",
                     help="sharpness-aware steps: the gradient is taken again at the weights moved RHO up the "
                          "batch's own gradient (SAM, e.g. 0.05; 0: off; twice a step's compute)")
    opt.add_argument("--song-loss", type=float, default=D.song_loss, metavar="W",
                     help="the plain cross-entropy steps (naive, SSSL's warm-up) take batches of a few segments per "
                          "song and score share W of their loss on each song's mean segment logits against its "
                          "label (multiple-instance learning; 1: by song alone; 0: off)")
    opt.add_argument("--tau", type=float, default=D.tau, help="clean-probability threshold")
    opt.add_argument("--temperature", type=float, default=D.temperature, help="sharpening temperature T")
    opt.add_argument("--alpha", type=float, default=D.alpha, help="mixup Beta(alpha, alpha)")
    opt.add_argument("--lambda-u", type=float, default=D.lambda_u,
                     help="unlabeled loss weight, ramped (DivideMix: 25 on CIFAR, 0 on real-world noise)")
    opt.add_argument("--lambda-kl", type=float, default=D.lambda_kl, help="R-Drop weight")
    opt.add_argument("--theta", type=float, default=DEFAULT_SONG.theta,
                     help="share-above threshold of the song statistics")
    opt.add_argument("--gain-augment", dest="gain_augment_db", type=_gains, metavar="DB[,DB...]",
                     default=D.gain_augment_db,
                     help="also train on every clip as if recorded this many dB quieter or louder, e.g. -20,-10,6 "
                          "(a microphone's gain is arbitrary)")
    opt.add_argument("--air-copies", type=int, default=D.air_copies, metavar="K",
                     help="also train on K random recordings of every clip through the air (a room's reverb, noise "
                          "at 5-30 dB SNR, band limits, a microphone's tilt, gain): for live microphone input")
    opt.add_argument("--air-phone", type=float, default=D.air_phone, metavar="P",
                     help="with --air-copies: this share of the recordings passes a telephone's band (250-400 Hz "
                          "to 3-4 kHz) instead of the wide band limits (0: none)")
    opt.add_argument("--svm-copies", type=int, default=D.svm_copies, metavar="K",
                     help="with --air-copies (or --gain-augment): the song SVM fits on the clean songs and only the "
                          "first K other recordings of them (default: all); every recording adds its songs to the "
                          "support vectors, so fewer make a smaller bundle")
    opt.add_argument("--consistency", type=float, default=D.consistency, metavar="W",
                     help="with --air-copies: the copies become paired views, and every naive (or warm-up) step "
                          "pulls each segment's prediction through the air towards its clean one (KL, weight W; "
                          "0: the copies are extra training segments)")
    opt.add_argument("--ce-mixup", type=float, default=D.ce_mixup, metavar="ALPHA",
                     help="mixup in the plain cross-entropy steps (every naive epoch, SSSL's warm-up): pairs of "
                          "segments and their labels mixed at Beta(ALPHA, ALPHA), e.g. 0.3 (0: off)")
    opt.add_argument("--distill", type=float, default=D.distill, metavar="W",
                     help="--arch mn04 --finetune full: every step also pulls the body's own AudioSet tags towards "
                          "the pretrained network's on the clean segment (Learning without Forgetting; weight W, "
                          "e.g. 1; 0: off)")
    opt.add_argument("--freq-mixstyle", type=float, default=D.freq_mixstyle, metavar="P",
                     help="the share of training batches whose segments mix their per-band level and spread with "
                          "another segment's (Freq-MixStyle, e.g. 0.4; 0: off)")
    opt.add_argument("--label-smoothing", type=float, default=D.label_smoothing, metavar="E",
                     help="the plain cross-entropy steps (naive, SSSL's warm-up) smooth every inherited label by E "
                          "towards uniform, e.g. 0.1 (0: off)")
    opt.add_argument("--quiet-valence", type=float, default=D.quiet_valence, metavar="W",
                     help="the plain cross-entropy steps count the valence loss of low-arousal segments (sad or "
                          "calm) W times, e.g. 2 (1: as every other)")
    opt.add_argument("--mood-tags", type=float, default=D.mood_tags, metavar="W",
                     help="--arch mn04: a second head also learns every segment's song's mood tags (a dataset "
                          "with them: 4Q) or its quadrant (--mood-source) (weight W, e.g. 0.1; 0: off); the bundle's "
                          "outputs stay the same")
    opt.add_argument("--mood-source", choices=MOOD_SOURCES, default=D.mood_source,
                     help="what --mood-tags' head learns: the songs' mood tags, or their annotated quadrant as one "
                          "of four classes (any dataset)")
    opt.add_argument("--freq-mask", type=int, default=D.freq_mask, metavar="N",
                     help="SpecAugment: every training view has one frequency mask of up to N mel bands (0: none)")
    opt.add_argument("--time-mask", type=int, default=D.time_mask, metavar="N",
                     help="SpecAugment: and one time mask of up to N frames (0: none)")
    opt.add_argument("--pitch-shift", type=float, default=D.pitch_shift, metavar="S",
                     help="a network trained on log-mels (mn04 --finetune full, compact): every training view is "
                          "shifted in pitch by a random amount within +-S semitones, tempo unchanged (e.g. 2; 0: off)")
    opt.add_argument("--ema", type=float, default=D.ema, metavar="DECAY",
                     help="keep a moving average of the weights (e.g. 0.99 per step) and keep it as the model; under "
                          "SSSL it is the teacher that divides the segments and guesses their targets (0: off)")
    opt.add_argument("--co-divide", action="store_true", default=D.co_divide,
                     help="SSSL with --bodies 2: the two networks train together, each on the clean/noisy division "
                          "made by the other, both guessing the unlabeled targets (DivideMix's co-divide)")
    opt.add_argument("--song-embedding", action="store_true",
                     help="pretrained models: the song aggregator also reads the mean and std of the segment "
                          "embedding (penultimate layer and tags) over the song")
    opt.add_argument("--pretrained-view", type=float, default=0.0, metavar="W",
                     help="with --song-embedding on an AudioSet network fine-tuned end to end: the pretrained network "
                          "also runs, frozen, beside it, and a logistic regression on the mean and std of its "
                          "embedding over the song gives the share W (0 < W < 1) of the song estimate, the song SVM "
                          "the rest (a second view; 0: off). Costs a second network per window when labeling")
    opt.add_argument("--segments-per-epoch", type=int, default=D.segments_per_epoch,
                     help="train on a fresh random subset of this many segments per epoch (0: all)")
    opt.add_argument("--no-gmm", dest="gmm", action="store_false", default=argparse.SUPPRESS,
                     help="ablation: every segment keeps its inherited label")
    opt.add_argument("--gmm-input", choices=GMM_INPUTS, default=D.gmm_input,
                     help="what the GMM divides: the CE loss (DivideMix) or the loss minus its clip's mean")
    opt.add_argument("--gmm-per-class", action="store_true", default=D.gmm_per_class,
                     help="one GMM per task and class instead of one per task over both classes")
    opt.add_argument("--no-mixup", dest="mixup", action="store_false", default=argparse.SUPPRESS,
                     help="ablation: no mixup")
    opt.add_argument("--no-rdrop", dest="rdrop", action="store_false", default=argparse.SUPPRESS,
                     help="ablation: no R-Drop consistency")
    opt.add_argument("--no-refine", dest="refine", action="store_false", default=argparse.SUPPRESS,
                     help="ablation: no label refinement")
    opt.add_argument("--val-fraction", type=float, default=D.val_fraction, metavar="F",
                     help="the share of training songs held out to choose the best epoch (0: none; every song "
                          "trains and the last epoch is kept)")
    opt.add_argument("--seed", type=int, default=D.seed)
    opt.add_argument("--compute", dest="device", choices=COMPUTE, default=D.device,
                     help="where training runs: auto is CUDA when torch sees a GPU, else the CPU")
    opt.add_argument("--device", dest="device", choices=COMPUTE, default=argparse.SUPPRESS,
                     help=argparse.SUPPRESS)  # the old name of --compute
    opt.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--out", required=True, type=Path, help="run directory to write")
    parser.add_argument("--segment-seconds", type=float, default=3.0, help="segment length, 1-5 s")
    parser.add_argument("--method", choices=METHODS, default="sssl",
                        help="sssl, the naive segment baseline (plain CE), or the clip-level baseline")
    parser.add_argument("--resume", action="store_true",
                        help="continue from RUN_DIR/checkpoint.pt; the settings must be the checkpoint's (only "
                             "--epochs, --compute and --threads may change): other ones are refused, naming them")
    parser.add_argument("--ddp", action="store_true",
                        help="data-parallel training (DistributedDataParallel: gloo on CPU, NCCL on GPUs); start it "
                             "with torchrun --nproc_per_node N -m mer_live train --ddp ... (alone: one process)")


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--max-folds", type=int, default=0, help="run only the first N folds (0: all)")
    parser.add_argument("--run-folds", default="",
                        help="run only these folds, a comma list counted from 1 (e.g. 4,5): reports of disjoint "
                             "folds merge with scripts/merge_evaluations.py")
    parser.add_argument("--segment-seconds", default="3", help="one length or a comma list, e.g. 1,2,3,4,5")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {', '.join(METHODS)}")
    parser.add_argument("--out", default="runs/evaluation", help="folder for evaluation.json and evaluation.md")
    parser.add_argument("--strides", default="",
                        help="pretrained models: also predict every fold's test songs from every k-th segment only, "
                             "e.g. 2,3 (segments a song really needs)")
    parser.add_argument("--gains", default="",
                        help="also test every fold's songs scaled by these gains in dB, e.g. -20,-10,6")
    parser.add_argument("--test-hops", default="",
                        help="log-mel models: also label every fold's test songs from segments at these hops in "
                             "seconds, e.g. 1 (a model trained at --segment-hop 3 labeling with overlapping windows)")
    parser.add_argument("--conditions", default="",
                        help="also test every fold's songs heard through the air: a comma list of room (highpass "
                             "120 Hz + reverb), noise (pink, 15 dB SNR), phone (300-3400 Hz), late (the clean song "
                             "from 1.5 s in: the agreement an air condition is read against); joined by + they "
                             "apply in turn (room+late: a microphone in a room, started later)")
    parser.add_argument("--compare-svm-copies", default="", metavar="K[,K...]",
                        help="with --air-copies: every fold's network also gets song SVMs fit on the clean songs "
                             "and only K of their other recordings, e.g. 0,1 (rows 'svm (K copies)', paired)")
    parser.add_argument("--interpolate", default="", metavar="A[,A...]",
                        help="an AudioSet network fine-tuned end to end (--arch mn04 --finetune full): every fold's "
                             "network is also scored with its body's weights a share A of the way from the "
                             "pretrained network to the fine-tuned one (WiSE-FT), the heads as trained and the song "
                             "SVM refit, e.g. 0.5,0.75 (methods 'naive, body A', paired)")
    parser.add_argument("--train-share", type=float, default=1.0, metavar="F",
                        help="fit every fold on a stratified share F of its training songs (0 < F <= 1) and test on "
                             "all of its test songs: one point of a learning curve, e.g. 0.25 or 0.5")
    parser.add_argument("--save-outputs", default="", metavar="DIR",
                        help="every fold also writes what its network gives every segment of its training and test "
                             "songs (probabilities, embeddings; every recording, every hop) to DIR/<length>s-<method>"
                             "-fold<k>.npz and the network beside it (.pt), to study song aggregators and test-time "
                             "views on the same networks")


def train_config(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig from the options named like its fields; the rest (and the --no-* switches not given)
    keep the dataclass's defaults."""
    cfg = TrainConfig(**{name: getattr(args, name) for name in TrainConfig.field_names() if hasattr(args, name)})
    if cfg.consistency < 0 or (cfg.consistency and not (cfg.air_copies or cfg.gain_augment_db)):
        raise MerLiveError("--consistency W needs W >= 0 and other recordings to be consistent with: "
                           "add --air-copies K (or --gain-augment DB)")
    if cfg.weight_decay < 0:
        raise MerLiveError(f"--weight-decay WD needs WD >= 0 (0: no penalty), got {cfg.weight_decay:g}")
    if not 0 < cfg.layer_decay <= 1:
        raise MerLiveError(f"--layer-decay D needs 0 < D <= 1 (1: one rate for the body), got {cfg.layer_decay:g}")
    if not 0 <= cfg.air_phone <= 1 or (cfg.air_phone and not cfg.air_copies):
        raise MerLiveError("--air-phone P needs 0 <= P <= 1 and recordings to pass through a telephone: "
                           "add --air-copies K")
    if cfg.svm_copies is not None and (cfg.svm_copies < 0 or not (cfg.air_copies or cfg.gain_augment_db)):
        raise MerLiveError("--svm-copies K needs K >= 0 and other recordings for the song SVM to fit on: "
                           "add --air-copies K (or --gain-augment DB)")
    if not 0 <= cfg.freq_mixstyle <= 1:
        raise MerLiveError(f"--freq-mixstyle P is a share of batches: it needs 0 <= P <= 1, got {cfg.freq_mixstyle:g}")
    if cfg.freq_mask < 0 or cfg.time_mask < 0:
        raise MerLiveError(f"--freq-mask and --time-mask are widths: they need N >= 0, got {cfg.freq_mask} and "
                           f"{cfg.time_mask}")
    if cfg.sam < 0:
        raise MerLiveError(f"--sam RHO is a radius: it needs RHO >= 0, got {cfg.sam:g}")
    if not 0 <= cfg.song_loss <= 1:
        raise MerLiveError(f"--song-loss W is a share of the loss: it needs 0 <= W <= 1, got {cfg.song_loss:g}")
    if cfg.song_loss and cfg.ce_mixup:
        raise MerLiveError("--song-loss scores each song by its segments' mean, and --ce-mixup mixes segments of two "
                           "songs: drop one of them")
    if not 0 <= cfg.label_smoothing < 1:
        raise MerLiveError(f"--label-smoothing E needs 0 <= E < 1, got {cfg.label_smoothing:g}")
    if cfg.quiet_valence <= 0:
        raise MerLiveError(f"--quiet-valence W weighs a loss: it needs W > 0, got {cfg.quiet_valence:g}")
    if not 0 <= cfg.val_fraction < 1:
        raise MerLiveError(f"--val-fraction F is a share of the training songs: it needs 0 <= F < 1 (0: none held "
                           f"out), got {cfg.val_fraction:g}")
    return dataclasses.replace(cfg, warmup_epochs=min(cfg.warmup_epochs, cfg.epochs))


def data_config(args: argparse.Namespace) -> DataConfig:
    thresholds = {task: getattr(args, f"threshold_{task}") for task in TASKS
                  if getattr(args, f"threshold_{task}", None) is not None}
    return DataConfig(dataset=args.dataset, root=args.root, thresholds=thresholds, cache_dir=args.cache_dir,
                      workers=args.workers, synth_clips=args.synth_clips, synth_seconds=args.synth_seconds,
                      seed=args.seed)


def _configs(args: argparse.Namespace):
    """Shared by train and evaluate: threads and the typed settings (TrainConfig, audio, model, song, data)."""
    import torch

    from mer_live.config import SongConfig
    from mer_live.nn import mobilenet
    from mer_live.nn.model import ModelConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # near-silent inputs make denormal activations: several times slower on CPUs
    first = float(str(args.segment_seconds).split(",")[0])
    model = {"dropout": args.dropout} if hasattr(args, "dropout") else {}
    try:
        modes = tuple(args.finetune.split(","))
        model_config = ModelConfig(arch=args.model, finetune=modes[0], loudness=args.loudness, bodies=args.bodies,
                                   body_finetune=modes if len(modes) > 1 else (), **model)
    except ValueError as exc:  # a combination of --arch, --finetune, --loudness, --bodies that does not exist
        raise MerLiveError(f"{exc}; see mer-live {args.command} --help") from None
    view = args.pretrained_view
    if view and not (0 < view < 1 and args.song_embedding and model_config.audioset
                     and model_config.finetunes == ("full",)):
        raise MerLiveError(f"--pretrained-view {view:g}: a share 0 < W < 1 of the song estimate, read from the "
                           "pretrained network beside one fine-tuned end to end: it needs --song-embedding and "
                           "--arch mn04 --finetune full (one body)")
    model_config = dataclasses.replace(model_config, view=bool(view))
    audio = model_config.default_audio().replace(segment_seconds=first, segment_hop_seconds=args.segment_hop)
    song = SongConfig(theta=args.theta, embedding=args.song_embedding, view=view,
                      view_dims=mobilenet.EMBEDDING_DIMS if view else 0)
    cfg = train_config(args)
    if cfg.layer_decay != 1 and not (model_config.audioset and model_config.finetune == "full"):
        raise MerLiveError("--layer-decay sets rates inside a fine-tuned AudioSet MobileNet's body: "
                           "add --arch mn04 --finetune full, or drop it")
    if cfg.distill < 0 or (cfg.distill and not (model_config.audioset and set(model_config.finetunes) == {"full"})):
        raise MerLiveError("--distill W keeps a fine-tuned AudioSet MobileNet's tags near the pretrained network's: "
                           "it needs W >= 0 and --arch mn04 --finetune full")
    if cfg.mood_tags < 0 or (cfg.mood_tags and not model_config.audioset):
        raise MerLiveError("--mood-tags W puts a mood-tag head on an AudioSet MobileNet's embedding: it needs W >= 0 "
                           "and --arch mn04")
    if cfg.mood_source != D.mood_source and not cfg.mood_tags:
        raise MerLiveError(f"--mood-source {cfg.mood_source} says what the mood head learns: add --mood-tags W "
                           "(e.g. 0.5), or drop it")
    if cfg.pitch_shift < 0 or (cfg.pitch_shift and model_config.pretrained):
        raise MerLiveError("--pitch-shift S shifts the log-mels a network trains on: it needs S >= 0 and a network "
                           "that reads log-mels (--arch mn04 --finetune full, or compact), not cached body features")
    tuned = (model_config.pretrained or model_config.audioset) and "heads" not in model_config.finetunes
    if cfg.probe_epochs < 0 or (cfg.probe_epochs and not tuned):
        raise MerLiveError("--probe-epochs N trains the heads before a pretrained network is fine-tuned: it needs "
                           "N >= 0 and --finetune top, mid or full")
    if cfg.co_divide and (model_config.bodies != 2 or cfg.ema or len(set(model_config.finetunes)) > 1):
        raise MerLiveError("--co-divide trains two networks that divide the segments for each other: add --bodies 2, "
                           "one --finetune for both, and drop --ema (the peer is the teacher)")
    return cfg, audio, model_config, song, data_config(args)


def run_train(args: argparse.Namespace) -> int:
    from mer_live.train import rundir
    from mer_live.train.command import prepare_data, run_record, train_run

    cfg, audio, model_config, song, data = _configs(args)
    run = RunSettings(out=args.out, method=args.method, resume=args.resume)
    if run.resume:  # before the data: a refused resume costs nothing
        rundir.check_resume(run.out, run_record(run, cfg, audio, model_config, song))
    torchrun = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if cfg.probe_epochs and torchrun:  # before the data, as the loop would
        raise MerLiveError("--probe-epochs trains in one process: drop it, or run without torchrun")
    if not (args.ddp or torchrun):  # torchrun implies --ddp
        dataset, clips, logmels = prepare_data(data, audio)
        train_run(run, data, cfg, audio, model_config, song, dataset, clips, logmels)
        return 0
    from mer_live.train.distributed import Comm

    with Comm.start(cfg.device) as comm:
        with comm.first_then_rest():  # the first process fills the caches, the others read them
            dataset, clips, logmels = prepare_data(data, audio, quiet=not comm.is_first)
        train_run(run, data, cfg, audio, model_config, song, dataset, clips, logmels, comm)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from mer_live.train.command import conditioned_logmels, log_console, prepare_data
    from mer_live.train.conditions import CONDITIONS, known_condition
    from mer_live.train.evaluate import cross_validate, markdown_table, write_report
    from mer_live.train.trainer import model_inputs

    try:
        lengths = [float(s) for s in str(args.segment_seconds).split(",")]
        methods = tuple(m.strip() for m in args.methods.split(","))
        gains = tuple(float(g) for g in args.gains.split(",") if g.strip())
        strides = tuple(int(k) for k in args.strides.split(",") if k.strip())
        conditions = tuple(c.strip() for c in args.conditions.split(",") if c.strip())
    except ValueError:
        raise MerLiveError(f"--segment-seconds takes numbers like 3 or 1,2,3: got {args.segment_seconds!r}") from None
    try:
        run_folds = tuple(int(k) for k in args.run_folds.split(",") if k.strip())
        test_hops = tuple(float(h) for h in args.test_hops.split(",") if h.strip())
        svm_copies = tuple(int(k) for k in args.compare_svm_copies.split(",") if k.strip())
        interpolate = tuple(float(a) for a in args.interpolate.split(",") if a.strip())
    except ValueError:
        raise MerLiveError(f"--run-folds, --test-hops, --compare-svm-copies and --interpolate take numbers like 4,5, "
                           f"1 and 0.5: got {args.run_folds!r}, {args.test_hops!r}, {args.compare_svm_copies!r}, "
                           f"{args.interpolate!r}") from None
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise MerLiveError(f"unknown methods {sorted(unknown)}: choose from {', '.join(METHODS)}")
    unknown = {c for c in conditions if not known_condition(c)}
    if unknown:
        raise MerLiveError(f"unknown conditions {sorted(unknown)}: choose from {', '.join(CONDITIONS)}, or several "
                           f"joined by + (room+late)")
    cfg, audio, model_config, song, data = _configs(args)
    if svm_copies and (min(svm_copies) < 0 or not (cfg.air_copies or cfg.gain_augment_db)):
        raise MerLiveError("--compare-svm-copies K needs K >= 0 and other recordings to fit on: add --air-copies K")
    if interpolate and not (model_config.audioset and model_config.finetunes == ("full",)):
        raise MerLiveError("--interpolate moves a fine-tuned body back towards its pretrained weights: it needs one "
                           "AudioSet network fine-tuned end to end (--arch mn04 --finetune full)")
    if any(not 0 <= a < 1 for a in interpolate):
        raise MerLiveError(f"--interpolate A needs 0 <= A < 1 (0: the pretrained body, 1: the fine-tuned one, "
                           f"scored anyway): {args.interpolate}")
    dataset, clips, logmels = prepare_data(data, audio)
    console = log_console()

    def inputs(seg_audio, gain_db: float, condition: str | None = None):
        heard = logmels if condition is None else conditioned_logmels(data, audio, clips, condition)
        return model_inputs(heard, seg_audio, model_config, data.cache, gain_db, log=console.log,
                            threads=args.threads)

    command = "mer-live " + " ".join(shlex.quote(a) for a in sys.argv[1:])

    def save(report: dict) -> tuple[Path, Path]:  # after every fold, and at the end
        report["dataset"] = {"name": dataset.name, "root": str(dataset.root), "binarization": dataset.binarization}
        return write_report(report, Path(args.out), command)

    report = cross_validate(clips, inputs, audio, model_config, cfg, args.folds, methods, lengths, song,
                            log=console.log, max_folds=args.max_folds, run_folds=run_folds, gains=gains,
                            strides=strides, conditions=conditions, test_hops=test_hops, svm_copies=svm_copies,
                            train_share=args.train_share, interpolate=interpolate, on_fold=save,
                            outputs_dir=Path(args.save_outputs) if args.save_outputs else None)
    json_path, md_path = save(report)
    print(markdown_table(report))
    console.log(f"wrote {json_path} and {md_path}")
    return 0
