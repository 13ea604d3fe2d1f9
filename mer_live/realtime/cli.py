"""Arguments of live monitoring (`mer-live --mic`, `--file`, `--demo`) and `mer-live label`.

Only argparse loads here; ONNX Runtime, rich and sounddevice are imported when a command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading

from mer_live.errors import MerLiveError
from mer_live.realtime.choices import AGGREGATORS, MODES, PROVIDERS

DEFAULT_PORT = 8765  # mer_live.live.web.DEFAULT_PORT (not imported: --help loads no server code)


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="BUNDLE",
                        help="model bundle directory, or a packaged model: default (pretrained musicnn, most "
                             "accurate) or compact (about ten times less compute)")
    parser.add_argument("--compute", dest="provider", choices=PROVIDERS, default="auto",
                        help="where the model runs (ONNX Runtime provider): auto uses CUDA when this onnxruntime "
                             "has it, else the CPU (the provider actually used is reported)")
    parser.add_argument("--provider", dest="provider", choices=PROVIDERS, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)  # the old name of --compute
    parser.add_argument("--aggregator", choices=AGGREGATORS, default="onnx",
                        help="song-level model: the ONNX graph (default) or the bundle's pickled scikit-learn "
                             "model (same numbers; needs scikit-learn)")


def add_live_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--mic", action="store_true", help="monitor the microphone live")
    source.add_argument("--file", metavar="PATH", help="monitor an audio file streamed at real-time pace")
    source.add_argument("--demo", action="store_true",
                        help="the microphone if there is one, else a generated 60 s demo: two synthetic pieces "
                             "(fast major, then slow minor), not recorded music")
    _common(parser)
    parser.add_argument("--device", metavar="D",
                        help="input device index or unique part of its name (with --mic or --demo)")
    parser.add_argument("--list-devices", action="store_true", help="list audio input devices and exit")
    parser.add_argument("--fast", action="store_true", help="with --file: stream as fast as possible, not in real time")
    parser.add_argument("--jsonl", action="store_true",
                        help="print one JSON object per segment instead of the dashboard (the default when "
                             "stdout is not a terminal): t (s of audio), segment and song valence/arousal as "
                             "P(high) on 0-1, labels, quadrant, latency_ms")
    parser.add_argument("--horizon", type=_positive, metavar="SECONDS",
                        help="song horizon: the song estimate uses the segments of the last SECONDS "
                             "(default: the clip length the aggregator was trained on)")
    parser.add_argument("--duration", type=_positive, metavar="SECONDS",
                        help="stop after SECONDS of audio")
    parser.add_argument("--web", nargs="?", type=int, const=DEFAULT_PORT, metavar="PORT",
                        help=f"also serve a live page (Russell plane, song estimate, timelines, finished songs) at "
                             f"http://127.0.0.1:PORT/ (default {DEFAULT_PORT}; 0: any free port), its events at "
                             "/events; the dashboard or JSON lines go on beside it")
    parser.add_argument("--host", metavar="ADDRESS",
                        help="with --web: the address to serve on (default 127.0.0.1, this machine only); 0.0.0.0 "
                             "lets anyone who can reach this machine see the page and its events")
    parser.add_argument("--mode", choices=MODES, default="incremental",
                        help="incremental (default): compute each log-mel frame once and reuse it across "
                             "overlapping segments; full: run the one-graph segment model on every window "
                             "(the reference)")


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
                             "the compute (default model on 4Q: within a point of every segment)")
    parser.add_argument("--strict", action="store_true", help="stop at the first file that fails")
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows already in --out and skip those files (failed ones are retried)")
    parser.add_argument("--save-every", type=float, metavar="SECONDS",
                        help="rewrite --out with the rows so far this often, so a killed run loses at most "
                             "this much (default 2)")
    parser.add_argument("--progress-every", type=_positive, metavar="SECONDS",
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
    _common(parser)


def _model(args: argparse.Namespace, stride: int = 1):
    from mer_live.api import load

    return load(args.model, provider=args.provider, aggregator=args.aggregator, stride=stride)


def refuse_ignored(args: argparse.Namespace) -> None:
    """An option the chosen source does not use is a mistake worth one line, not silence."""
    if args.device is not None and args.file:
        raise MerLiveError("--device picks an input device: it does not apply to --file")
    if args.host is not None and args.web is None:
        raise MerLiveError("--host is where --web serves its page: add --web [PORT]")
    if args.web is not None and not 0 <= args.web <= 65535:
        raise MerLiveError(f"--web {args.web}: a port is 0-65535 (0: any free one)")
    if args.fast and args.mic:
        raise MerLiveError("--fast applies to --file and the generated demo, not to --mic (live input comes in "
                           "real time)")


def run_live(args: argparse.Namespace) -> int:
    if args.list_devices:
        from mer_live.realtime.sources import describe_devices

        print(describe_devices())
        return 0
    if not (args.mic or args.file or args.demo):
        raise MerLiveError("choose a source: --mic, --file PATH or --demo (or `mer-live label PATH` for files)")
    refuse_ignored(args)
    from mer_live.realtime import sources
    from mer_live.realtime.monitor import monitor

    stop = threading.Event()
    page = None
    if args.web is not None:  # first: a port in use is refused before the model loads
        from mer_live.live.web import LivePage

        page = LivePage(stop, args.host or "127.0.0.1", args.web)
    model = _model(args)
    rate = model.audio.sample_rate
    mic = args.mic or (args.demo and sources.has_input_device())
    if mic:
        source = sources.MicSource(rate, args.device, stop)
        name = f"microphone {source.name}"
    elif args.file:
        source = sources.FileSource(args.file, rate, fast=args.fast, stop=stop)
        name = args.file
    else:
        from mer_live.realtime.demo import CAPTION, synthesize

        print(f"mer-live: no microphone found; playing {CAPTION}", file=sys.stderr)
        source = sources.ArraySource(synthesize(rate), rate, "generated demo", fast=args.fast, stop=stop)
        name = source.name
    model.warm_up()
    # A file is one song; a live input is a stream of songs separated by silence.
    stream = model.stream(horizon=args.horizon, silence_reset=not args.file, mode=args.mode)
    print(f"mer-live: model {model.bundle.path}, ONNX Runtime on {stream.provider}", file=sys.stderr)
    from mer_live.stopping import stop_on_signals

    with stop_on_signals(stop), page or contextlib.nullcontext():
        if page is not None:
            page.start(name, model.bundle.path.name, stream.provider, stream.horizon,
                       model.audio.effective_segment_seconds)
            print(f"mer-live: live page at {page.url}", file=sys.stderr)
        code = monitor(stream, source, name, stop, jsonl=args.jsonl, duration=args.duration,
                       whole_file=bool(args.file), page=page)
        if page is not None:
            page.close(t=round(stream.time, 3), segments=stream.segments_emitted)
        return code


def run_label(args: argparse.Namespace) -> int:
    from mer_live.realtime.label import PROGRESS_SECONDS, SAVE_SECONDS, label_files
    from mer_live.scale.manifest import expand

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
    options = dict(recursive=args.recursive, pattern=args.glob, out=args.out, fmt=args.format,
                   segments=args.segments, strict=args.strict, resume=args.resume,
                   save_every=args.save_every or SAVE_SECONDS, hidden=args.hidden,
                   progress_every=args.progress_every or PROGRESS_SECONDS, report=args.report)
    paths = expand(args.paths)
    if ray_address is None:
        return label_files(_model(args, args.stride), paths, workers=args.workers, **options)
    from mer_live.scale.ray_label import import_ray, ray_runner

    import_ray()  # one line naming the extra before any model loads
    # The driver's model only names the bundle and shapes rows; the cluster runs the compute.
    from mer_live.api import load

    model = load(args.model, provider="cpu", aggregator=args.aggregator, stride=args.stride, threads=1)
    with ray_runner(model, ray_address, args.provider, args.ray_gpus, args.ray_actors) as (runner, where):
        return label_files(model, paths, runner=runner, where=where, **options)
