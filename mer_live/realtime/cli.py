"""Arguments of live monitoring (`mer-live --mic`, `--file`) and `mer-live label`."""

from __future__ import annotations

import argparse

from mer_live.errors import MerLiveError


def add_live_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--mic", action="store_true", help="monitor the microphone live")
    source.add_argument("--file", metavar="PATH", help="monitor an audio file streamed at real-time pace")
    parser.add_argument("--model", metavar="BUNDLE", help="model bundle directory (default: the packaged model)")


def add_label_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", help="audio files or folders")
    parser.add_argument("--model", metavar="BUNDLE", help="model bundle directory (default: the packaged model)")


def run_live(args: argparse.Namespace) -> int:
    raise MerLiveError("live monitoring is not built yet (issue: realtime runner)")


def run_label(args: argparse.Namespace) -> int:
    raise MerLiveError("`mer-live label` is not built yet (issue: realtime runner)")
