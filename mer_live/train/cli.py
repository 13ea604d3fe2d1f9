"""`mer-live train` and `mer-live evaluate`. Only argparse at import: torch loads when a command runs."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from mer_live.errors import MerLiveError
from mer_live.model_names import ARCH_CHOICES, FINETUNE, LOUDNESS

DATASETS = ["4q", "pmemo", "deam", "eim", "manifest", "synth"]


def _common(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=DATASETS, required=True, help="dataset layout to read")
    data.add_argument("--root", help="dataset root folder (the manifest CSV's folder for manifest; "
                      "for synth, where to generate the corpus)")
    data.add_argument("--synth-clips", type=int, default=80, help="synth: number of clips to generate")
    data.add_argument("--synth-seconds", type=float, default=12.0, help="synth: clip length")
    data.add_argument("--threshold-valence", type=float, help="override the dataset's valence binarization")
    data.add_argument("--threshold-arousal", type=float, help="override the dataset's arousal binarization")
    data.add_argument("--cache-dir", help="log-mel cache (default $MER_LIVE_CACHE or ~/.cache/mer-live/logmel)")
    data.add_argument("--workers", type=int, default=2, help="decoding workers for the cache")
    model = parser.add_argument_group("model and segments")
    model.add_argument("--model", dest="model", choices=list(ARCH_CHOICES), default=argparse.SUPPRESS,
                       help=argparse.SUPPRESS)  # the old name of --arch
    model.add_argument("--arch", dest="model", choices=list(ARCH_CHOICES), default="compact",
                       help="segment model: a pretrained music CNN (musicnn-msd, musicnn-mtt, vgg-msd, vgg-mtt; "
                            "16 kHz front end) or one trained from scratch (compact, vgg16); default compact")
    model.add_argument("--finetune", choices=list(FINETUNE), default="heads",
                       help="pretrained models: train our heads only (heads) or also the tagging back end (top)")
    model.add_argument("--loudness", choices=list(LOUDNESS), default="none",
                       help="pretrained models: 'segment' scales every segment to one loudness first (gain-proof)")
    model.add_argument("--segment-hop", type=float, default=1.0, help="segment hop in seconds")
    opt = parser.add_argument_group("SSSL ([inferred] defaults: not fixed by the paper, measured here)")
    opt.add_argument("--epochs", type=int, default=12)
    opt.add_argument("--warmup-epochs", type=int, default=4)
    opt.add_argument("--batch-size", type=int, default=64)
    opt.add_argument("--lr", type=float, default=1e-3)
    opt.add_argument("--backbone-lr-scale", type=float, default=0.1,
                     help="learning rate of a fine-tuned pretrained back end, as a fraction of --lr")
    opt.add_argument("--tau", type=float, default=0.5, help="clean-probability threshold")
    opt.add_argument("--temperature", type=float, default=0.5, help="sharpening temperature T")
    opt.add_argument("--alpha", type=float, default=1.0, help="mixup Beta(alpha, alpha)")
    opt.add_argument("--lambda-u", type=float, default=0.0,
                     help="unlabeled loss weight, ramped (DivideMix: 25 on CIFAR, 0 on real-world noise)")
    opt.add_argument("--lambda-kl", type=float, default=1.0, help="R-Drop weight")
    opt.add_argument("--theta", type=float, default=0.5, help="share-above threshold of the song statistics")
    opt.add_argument("--gain-augment", default="",
                     help="also train on every clip as if recorded this many dB quieter or louder, e.g. -20,-10,6 "
                          "(a microphone's gain is arbitrary)")
    opt.add_argument("--song-embedding", action="store_true",
                     help="pretrained models: the song aggregator also reads the mean and std of the segment "
                          "embedding (penultimate layer and tags) over the song")
    opt.add_argument("--segments-per-epoch", type=int, default=0,
                     help="train on a fresh random subset of this many segments per epoch (0: all)")
    opt.add_argument("--no-gmm", action="store_true", help="ablation: every segment keeps its inherited label")
    opt.add_argument("--gmm-input", choices=["loss", "clip-relative"], default="loss",
                     help="what the GMM divides: the CE loss (DivideMix) or the loss minus its clip's mean")
    opt.add_argument("--gmm-per-class", action="store_true",
                     help="one GMM per task and class instead of one per task over both classes")
    opt.add_argument("--no-mixup", action="store_true", help="ablation: no mixup")
    opt.add_argument("--no-rdrop", action="store_true", help="ablation: no R-Drop consistency")
    opt.add_argument("--no-refine", action="store_true", help="ablation: no label refinement")
    opt.add_argument("--seed", type=int, default=0)
    opt.add_argument("--compute", dest="device", choices=["auto", "cpu", "cuda"], default="auto",
                     help="where training runs: auto is CUDA when torch sees a GPU, else the CPU")
    opt.add_argument("--device", dest="device", choices=["auto", "cpu", "cuda"], default=argparse.SUPPRESS,
                     help=argparse.SUPPRESS)  # the old name of --compute
    opt.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--out", required=True, help="run directory to write")
    parser.add_argument("--segment-seconds", type=float, default=3.0, help="segment length, 1-5 s")
    parser.add_argument("--method", choices=["sssl", "naive", "clip"], default="sssl",
                        help="sssl, the naive segment baseline (plain CE), or the clip-level baseline")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt")


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--max-folds", type=int, default=0, help="run only the first N folds (0: all)")
    parser.add_argument("--segment-seconds", default="3", help="one length or a comma list, e.g. 1,2,3,4,5")
    parser.add_argument("--methods", default="sssl,naive,clip", help="comma list of sssl, naive, clip")
    parser.add_argument("--out", default="runs/evaluation", help="folder for evaluation.json and evaluation.md")
    parser.add_argument("--strides", default="",
                        help="pretrained models: also predict every fold's test songs from every k-th segment only, "
                             "e.g. 2,3 (segments a song really needs)")
    parser.add_argument("--gains", default="",
                        help="also test every fold's songs scaled by these gains in dB, e.g. -20,-10,6")


def _numbers(text: str, flag: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise MerLiveError(f"{flag} takes numbers like -10 or -20,-10,6: got {text!r}") from None


def _setup(args: argparse.Namespace):
    """Shared by train and evaluate: threads, dataset, cache, config objects."""
    import dataclasses

    import torch

    from mer_live.config import SongConfig
    from mer_live.model import ModelConfig
    from mer_live.train.sssl import TrainConfig
    from mer_live.train.trainer import prepare_data

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(
        epochs=args.epochs, warmup_epochs=args.warmup_epochs, batch_size=args.batch_size, lr=args.lr,
        tau=args.tau, temperature=args.temperature, alpha=args.alpha, lambda_u=args.lambda_u,
        lambda_kl=args.lambda_kl, gmm=not args.no_gmm, gmm_input=args.gmm_input, gmm_per_class=args.gmm_per_class,
        mixup=not args.no_mixup, rdrop=not args.no_rdrop, refine=not args.no_refine,
        segments_per_epoch=args.segments_per_epoch, seed=args.seed, device=args.device,
        backbone_lr_scale=args.backbone_lr_scale, gain_augment_db=_numbers(args.gain_augment, "--gain-augment"),
    )
    if cfg.warmup_epochs > cfg.epochs:
        cfg = dataclasses.replace(cfg, warmup_epochs=cfg.epochs)
    first = float(str(args.segment_seconds).split(",")[0])
    model_config = ModelConfig(arch=args.model, finetune=args.finetune, loudness=args.loudness)
    audio = model_config.default_audio().replace(segment_seconds=first, segment_hop_seconds=args.segment_hop)
    thresholds = {k: v for k, v in (("valence", args.threshold_valence), ("arousal", args.threshold_arousal))
                  if v is not None}
    dataset, clips, logmels = prepare_data(args, audio, thresholds or None)
    song = SongConfig(theta=args.theta, embedding=args.song_embedding)
    return cfg, audio, model_config, song, dataset, clips, logmels


def run_train(args: argparse.Namespace) -> int:
    from mer_live.train.trainer import train_run

    cfg, audio, model_config, song, dataset, clips, logmels = _setup(args)
    train_run(args, cfg, audio, model_config, song, dataset, clips, logmels)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from mer_live.train.evaluate import cross_validate, markdown_table, write_report
    from mer_live.train.trainer import cache_dir, log_console, model_inputs

    try:
        lengths = [float(s) for s in str(args.segment_seconds).split(",")]
        methods = tuple(m.strip() for m in args.methods.split(","))
        gains = tuple(float(g) for g in args.gains.split(",") if g.strip())
        strides = tuple(int(k) for k in args.strides.split(",") if k.strip())
    except ValueError:
        raise MerLiveError(f"--segment-seconds takes numbers like 3 or 1,2,3: got {args.segment_seconds!r}") from None
    unknown = set(methods) - {"sssl", "naive", "clip"}
    if unknown:
        raise MerLiveError(f"unknown methods {sorted(unknown)}: choose from sssl, naive, clip")
    cfg, audio, model_config, song, dataset, clips, logmels = _setup(args)
    console = log_console()

    def inputs(seg_audio, gain_db: float):
        return model_inputs(logmels, seg_audio, model_config, cache_dir(args), gain_db, log=console.log,
                            threads=args.threads)

    report = cross_validate(clips, inputs, audio, model_config, cfg, args.folds, methods, lengths, song,
                            log=console.log, max_folds=args.max_folds, gains=gains, strides=strides)
    report["dataset"] = {"name": dataset.name, "root": str(dataset.root), "binarization": dataset.binarization}
    command = "mer-live " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    json_path, md_path = write_report(report, Path(args.out), command)
    print(markdown_table(report))
    console.log(f"wrote {json_path} and {md_path}")
    return 0
