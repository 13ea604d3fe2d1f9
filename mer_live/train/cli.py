"""Arguments of `mer-live train` and `mer-live evaluate` (torch is imported only when run)."""

from __future__ import annotations

import argparse

from mer_live.errors import MerLiveError


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=["4q", "pmemo", "deam", "eim", "manifest", "synth"], required=True)
    parser.add_argument("--root", help="dataset root folder (or manifest CSV)")
    parser.add_argument("--out", required=True, help="run directory to write")


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=["4q", "pmemo", "deam", "eim", "manifest", "synth"], required=True)
    parser.add_argument("--root", help="dataset root folder (or manifest CSV)")
    parser.add_argument("--folds", type=int, default=5)


def run_train(args: argparse.Namespace) -> int:
    raise MerLiveError("`mer-live train` is not built yet (issue: SSSL trainer)")


def run_evaluate(args: argparse.Namespace) -> int:
    raise MerLiveError("`mer-live evaluate` is not built yet (issue: SSSL trainer)")
