"""Options that open a model (``--model``, ``--compute``, ``--aggregator``), shared by live monitoring and
``mer-live label``. Only argparse loads here; ONNX Runtime loads when ``open_model`` runs."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from mer_live.runtime.choices import AGGREGATORS, PROVIDERS

if TYPE_CHECKING:
    from mer_live.runtime.engine import Model


def positive_seconds(text: str) -> float:
    """argparse type of a duration option: a number of seconds above zero."""
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--compute`` (and its old name ``--provider``), ``--aggregator``."""
    parser.add_argument("--model", metavar="BUNDLE",
                        help="model bundle directory, or a packaged model: default (an AudioSet MobileNet "
                             "fine-tuned end to end; a window every second), fast (the same network trained to "
                             "hear music through the air; a window every 3 s: a third of the compute), musicnn "
                             "(the previous default, about 8 times the compute) or compact (from scratch, least "
                             "accurate)")
    parser.add_argument("--compute", dest="provider", choices=PROVIDERS, default="auto",
                        help="where the model runs (ONNX Runtime provider): auto uses CUDA when this onnxruntime "
                             "has it, else the CPU (the provider actually used is reported)")
    parser.add_argument("--provider", dest="provider", choices=PROVIDERS, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)  # the old name of --compute
    parser.add_argument("--aggregator", choices=AGGREGATORS, default="onnx",
                        help="song-level model: the ONNX graph (default) or the bundle's pickled scikit-learn "
                             "model (same numbers; needs scikit-learn)")


def open_model(args: argparse.Namespace, stride: int = 1) -> Model:
    """The model these options name; ``stride`` for labeling (live streams hop every segment)."""
    from mer_live.runtime.engine import load

    return load(args.model, provider=args.provider, aggregator=args.aggregator, stride=stride)
