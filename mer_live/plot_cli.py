"""``mer-live plot FILE``: the song picture of ``mer_live.plot`` from a file (labeled through the model)
or from a live run's ``--jsonl`` output. Apart from ``plot`` so that the pictures never import the
engine (``SongResult.plot`` reads them; the engine makes results: no import cycle).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mer_live.errors import MerLiveError
from mer_live.plot import JSON_SUFFIXES, figure, live_pictures, result_picture, save


def add_plot_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Draw a song: segment valence and arousal over time with the song estimate, the quadrant of each "
        "segment, and the loudness. FILE is an audio file (labeled with --model), or a live run's --jsonl output "
        "(its finished songs; --song picks one).")
    parser.add_argument("file", metavar="FILE", help="an audio file, or the JSON lines of mer-live --jsonl")
    parser.add_argument("-o", "--out", metavar="PICTURE",
                        help="where to write it: .png, .svg or .pdf (default: FILE's name with .png, in the "
                             "current folder; song-N added for a live song)")
    parser.add_argument("--song", type=int, metavar="N", help="with JSON lines: which song (default: the last one)")
    parser.add_argument("--model", metavar="BUNDLE", help="model bundle, or a packaged model: default or compact")
    parser.add_argument("--compute", dest="provider", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where the model runs")


def run_plot(args: argparse.Namespace) -> int:
    path = args.file
    if path.lower().endswith(JSON_SUFFIXES):
        pictures = live_pictures(path)
        number = args.song if args.song is not None else max(pictures)
        if number not in pictures:
            raise MerLiveError(f"--song {number}: {path} has finished songs {', '.join(map(str, sorted(pictures)))}")
        picture = pictures[number]
        default = f"{Path(path).stem}-song-{number}.png"
    else:
        if args.song is not None:
            raise MerLiveError("--song picks a song of a live run's JSON lines; an audio file is one song")
        from mer_live.api import load

        model = load(args.model, provider=args.provider)
        result = model.predict(path)
        picture = result_picture(result, model.audio.effective_segment_seconds)
        default = f"{Path(path).stem}.png"
    out = save(figure(picture), args.out or default)
    print(f"mer-live: wrote {out}", file=sys.stderr)
    return 0
