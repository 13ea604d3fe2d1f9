"""Arguments of `mer-live export` (torch is imported only when run)."""

from __future__ import annotations

import argparse

from mer_live.errors import MerLiveError


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="training run directory")
    parser.add_argument("--out", required=True, help="bundle directory to write")


def run_export(args: argparse.Namespace) -> int:
    raise MerLiveError("`mer-live export` is not built yet (issue: exporter)")
