"""Arguments of live monitoring (`mer-live --mic`, `--file`, `--demo`) and running it.

Only argparse loads here; ONNX Runtime, rich and sounddevice are imported when a command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from pathlib import Path

from mer_live.errors import MerLiveError
from mer_live.runtime.choices import MODES
from mer_live.runtime.options import add_model_arguments, open_model, positive_seconds

DEFAULT_PORT = 8765  # mer_live.live.web.DEFAULT_PORT (not imported: --help loads no server code)


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
        from mer_live.live.sources import describe_devices

        print(describe_devices())
        return 0
    if not (args.mic or args.file or args.demo):
        raise MerLiveError("choose a source: --mic, --file PATH or --demo (or `mer-live label PATH` for files)")
    refuse_ignored(args)
    from mer_live.live import sources
    from mer_live.live.monitor import monitor

    stop = threading.Event()
    page = None
    if args.web is not None:  # first: a port in use is refused before the model loads
        from mer_live.live.web import LivePage

        page = LivePage(stop, args.host or "127.0.0.1", args.web)
    model = open_model(args)
    rate = model.audio.sample_rate
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
    print(f"mer-live: model {model.name}, ONNX Runtime on {stream.provider}", file=sys.stderr)
    from mer_live.stopping import stop_on_signals

    with stop_on_signals(stop), page or contextlib.nullcontext():
        if page is not None:
            page.start(name, Path(model.name).name, stream.provider, stream.horizon,
                       model.audio.effective_segment_seconds)
            print(f"mer-live: live page at {page.url}", file=sys.stderr)
        code = monitor(stream, source, name, stop, jsonl=args.jsonl, duration=args.duration,
                       whole_file=bool(args.file), page=page)
        if page is not None:
            page.close(t=round(stream.time, 3), segments=stream.segments_emitted)
        return code
