"""Arguments of `mer-live label` and running it, locally or on a Ray cluster.

Only argparse loads here; ONNX Runtime (and Ray, with ``--ray``) load when the command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from mer_live.errors import MerLiveError
from mer_live.runtime.options import add_model_arguments, open_model, positive_seconds


def add_label_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Label audio files with song-level valence and arousal (probability of high, 0-1), their labels and "
        "the Russell quadrant (Q1 +V+A happy/excited, Q2 -V+A angry/tense, Q3 -V-A sad/depressed, "
        "Q4 +V-A calm/relaxed). One row per file, in sorted path order; a file that cannot be read gets its "
        "reason in the error column and the batch goes on. Exit status 1 when any file failed."
    )
    parser.add_argument("paths", nargs="+",
                        help="audio files or folders, or manifests listing files: .txt/.lst (a path a line) or "
                             ".csv/.parquet (a path column); relative paths from the manifest's folder")
    parser.add_argument("-r", "--recursive", action="store_true",
                        help="search folders recursively (symlinked folders are not followed)")
    parser.add_argument("--glob", metavar="PATTERN",
                        help="only files in folders whose name matches, e.g. '*.mp3' (case-insensitive)")
    parser.add_argument("--hidden", action="store_true",
                        help="also label dot-files and files in dot-folders (skipped by default: macOS '._' "
                             "resource forks are not audio)")
    parser.add_argument("--out", metavar="FILE",
                        help="write rows to FILE (atomically, rewritten every few seconds while running); "
                             "format from the extension .csv/.jsonl/.json/.parquet (another extension needs "
                             "--format; Parquet needs pyarrow, in the ray extra)")
    parser.add_argument("--format", choices=("csv", "jsonl", "json", "parquet", "table"),
                        help="output format (default: from --out's extension, else a table on a terminal and "
                             "CSV when stdout is redirected)")
    parser.add_argument("--segments", action="store_true",
                        help="also output every segment's valence and arousal probabilities")
    parser.add_argument("--report", metavar="FILE.html",
                        help="also write a library report: one self-contained HTML file (the Russell plane, quadrant "
                             "counts, a sortable table with each song's timeline, the failures); opens offline")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="decoding processes (default: number of CPUs, at most 4); 0 or 1 decodes in the "
                             "main process (least memory)")
    parser.add_argument("--stride", type=int, default=1, metavar="K",
                        help="label from every K-th segment only: 3 gives non-overlapping 3 s segments, a third of "
                             "the compute (--model fast hops 3 s already)")
    parser.add_argument("--strict", action="store_true", help="stop at the first file that fails")
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows already in --out and skip those files (failed ones are retried)")
    parser.add_argument("--save-every", type=float, metavar="SECONDS",
                        help="rewrite --out with the rows so far this often, so a killed run loses at most "
                             "this much (default 2)")
    parser.add_argument("--progress-every", type=positive_seconds, metavar="SECONDS",
                        help="when stderr is not a terminal (nohup, CI, cron), print a progress line this often "
                             "(default 10)")
    parser.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                        help="label on a Ray cluster with Ray Data (needs the ray extra): ADDRESS of its head "
                             "(host:6379, or ray://host:10001), auto for the cluster this machine runs or "
                             "joined, none to start a local one for this run; put it after the paths "
                             "(or write --ray=ADDRESS)")
    parser.add_argument("--ray-actors", type=int, metavar="N",
                        help="with --ray: segment-model actors (default: one per GPU, or one per CPU on a "
                             "cluster without GPUs)")
    parser.add_argument("--ray-gpus", type=float, metavar="G",
                        help="with --ray: GPUs per segment-model actor, CUDA provider (default 1 when the "
                             "cluster has GPUs, else 0: CPU actors; 0.5 packs two actors on a GPU)")
    add_model_arguments(parser)


def run_label(args: argparse.Namespace) -> int:
    from mer_live.audio.manifest import expand
    from mer_live.label.batch import PROGRESS_SECONDS, SAVE_SECONDS, LabelOptions, label_files

    if args.workers is not None and args.workers < 0:
        raise MerLiveError("--workers must be 0 or more")
    if args.save_every is not None and args.save_every <= 0:
        raise MerLiveError("--save-every must be a positive number of seconds")
    ray_address = getattr(args, "ray", None)
    if ray_address is None and (args.ray_actors is not None or args.ray_gpus is not None):
        raise MerLiveError("--ray-actors and --ray-gpus size a Ray run: add --ray [ADDRESS]")
    if ray_address is not None and args.workers is not None:
        raise MerLiveError("--workers sets local decoding processes: with --ray the cluster decodes "
                           "(--ray-actors sizes its segment-model pool)")
    options = LabelOptions(recursive=args.recursive, pattern=args.glob, hidden=args.hidden, out=args.out,
                           fmt=args.format, segments=args.segments, workers=args.workers, strict=args.strict,
                           resume=args.resume, save_every=args.save_every or SAVE_SECONDS,
                           progress_every=args.progress_every or PROGRESS_SECONDS, report=args.report)
    paths = expand(args.paths)
    if ray_address is None:
        return label_files(open_model(args, args.stride), paths, options)
    from mer_live.label.cluster import import_ray, ray_runner

    import_ray()  # one line naming the extra before any model loads
    # The driver's model only names the bundle and shapes rows; the cluster runs the compute.
    from mer_live.runtime.engine import load

    model = load(args.model, provider="cpu", aggregator=args.aggregator, stride=args.stride, threads=1)
    rows = sys.stdout  # the rows' alone: what Ray prints meanwhile (a worker died, a task retried) goes to stderr
    with contextlib.redirect_stdout(sys.stderr), \
            ray_runner(model, ray_address, args.provider, args.ray_gpus, args.ray_actors) as (runner, where):
        return label_files(model, paths, options, runner=runner, where=where, stdout=rows)
