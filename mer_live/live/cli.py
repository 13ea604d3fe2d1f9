"""Arguments of live monitoring (`mer-live --mic`, `--file`, `--demo`) and running it.

Only argparse loads here; ONNX Runtime, rich and sounddevice are imported when a command runs.
"""

from __future__ import annotations

import argparse
import sys
import threading

from mer_live.errors import MerLiveError
from mer_live.runtime.choices import MODES
from mer_live.runtime.options import add_model_arguments, open_model, positive_seconds


def add_live_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--mic", action="store_true", help="monitor the microphone live")
    source.add_argument("--file", metavar="PATH", help="monitor an audio file streamed at real-time pace")
    source.add_argument("--demo", action="store_true",
                        help="the microphone if there is one, else a generated 60 s demo: two synthetic pieces "
                             "(fast major, then slow minor), not recorded music")
    add_model_arguments(parser)
    parser.add_argument("--device", metavar="D",
                        help="input device index or unique part of its name (with --mic or --demo)")
    parser.add_argument("--list-devices", action="store_true", help="list audio input devices and exit")
    parser.add_argument("--fast", action="store_true", help="with --file: stream as fast as possible, not in real time")
    parser.add_argument("--jsonl", action="store_true",
                        help="print one JSON object per segment instead of the dashboard (the default when "
                             "stdout is not a terminal): t (s of audio), segment and song valence/arousal as "
                             "P(high) on 0-1, labels, quadrant, latency_ms")
    parser.add_argument("--horizon", type=positive_seconds, metavar="SECONDS",
                        help="song horizon: the song estimate uses the segments of the last SECONDS "
                             "(default: the clip length the aggregator was trained on)")
    parser.add_argument("--duration", type=positive_seconds, metavar="SECONDS",
                        help="stop after SECONDS of audio")
    parser.add_argument("--mode", choices=MODES, default="incremental",
                        help="incremental (default): compute each log-mel frame once and reuse it across "
                             "overlapping segments; full: run the one-graph segment model on every window "
                             "(the reference)")


def refuse_ignored(args: argparse.Namespace) -> None:
    """An option the chosen source does not use is a mistake worth one line, not silence."""
    if args.device is not None and args.file:
        raise MerLiveError("--device picks an input device: it does not apply to --file")
    if args.fast and args.mic:
        raise MerLiveError("--fast applies to --file and the generated demo, not to --mic (live input comes in "
                           "real time)")


def run_live(args: argparse.Namespace) -> int:
    if args.list_devices:
        from mer_live.live.sources import describe_devices

        print(describe_devices())
        return 0
    if not (args.mic or args.file or args.demo):
        raise MerLiveError("choose a source: --mic, --file PATH or --demo (or `mer-live label PATH` for files)")
    refuse_ignored(args)
    from mer_live.live import sources
    from mer_live.live.monitor import monitor

    model = open_model(args)
    rate = model.audio.sample_rate
    stop = threading.Event()
    mic = args.mic or (args.demo and sources.has_input_device())
    if mic:
        source = sources.MicSource(rate, args.device, stop)
        name = f"microphone {source.name}"
    elif args.file:
        source = sources.FileSource(args.file, rate, fast=args.fast, stop=stop)
        name = args.file
    else:
        from mer_live.live.demo import CAPTION, synthesize

        print(f"mer-live: no microphone found; playing {CAPTION}", file=sys.stderr)
        source = sources.ArraySource(synthesize(rate), rate, "generated demo", fast=args.fast, stop=stop)
        name = source.name
    model.warm_up()
    # A file is one song; a live input is a stream of songs separated by silence.
    stream = model.stream(horizon=args.horizon, silence_reset=not args.file, mode=args.mode)
    print(f"mer-live: model {model.bundle.path}, ONNX Runtime on {stream.provider}", file=sys.stderr)
    return monitor(stream, source, name, stop, jsonl=args.jsonl, duration=args.duration, whole_file=bool(args.file))
