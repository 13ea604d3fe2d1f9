"""The ``mer-live`` command: live monitoring at the top level, the other jobs as subcommands.

Only argparse and the stage ``cli`` modules (which import nothing heavy) load here, so
``mer-live --help`` answers at once and labeling and live monitoring never import torch.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from mer_live import __version__
from mer_live.errors import MerLiveError
from mer_live.stopping import quiet_exit
from mer_live.stopping import terminated as _terminated  # SIGTERM stops like Ctrl-C (see mer_live/stopping.py)


def build_parser() -> argparse.ArgumentParser:
    from mer_live.export import cli as export_cli
    from mer_live.label import cli as label_cli
    from mer_live.live import cli as live_cli
    from mer_live.plot_cli import add_plot_arguments as plot_arguments
    from mer_live.plot_cli import run_plot
    from mer_live.train import cli as train_cli

    parser = argparse.ArgumentParser(
        prog="mer-live",
        description="Real-time music emotion recognition: live valence, arousal and Russell quadrant "
        "from a microphone or a file, batch labeling, SSSL training, export and benchmarks.",
        epilog="Run `mer-live COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"mer-live {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    live_cli.add_live_arguments(parser)
    parser.set_defaults(run=live_cli.run_live)

    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = [
        ("label", "label audio files and folders with song-level valence, arousal and quadrant",
         label_cli.add_label_arguments, label_cli.run_label),
        ("plot", "draw a song: valence and arousal over time, quadrants, loudness (a file or --jsonl output)",
         plot_arguments, run_plot),
        ("train", "train a segment model with SSSL and fit the song-level SVM",
         train_cli.add_train_arguments, train_cli.run_train),
        ("evaluate", "cross-validated evaluation: SSSL vs baselines, segment-length sweep",
         train_cli.add_evaluate_arguments, train_cli.run_evaluate),
        ("export", "export a training run to a model bundle (ONNX + aggregator)",
         export_cli.add_export_arguments, export_cli.run_export),
        ("bench", "benchmarks: latency, throughput, accuracy sweep",
         add_bench_arguments, run_bench),
    ]
    for name, help_text, add_arguments, run in commands:
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        # SUPPRESS: without it the sub-command's default (False) would undo `mer-live --debug COMMAND`
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks on errors")
        add_arguments(p)
        _help_for_every_flag(p)
        p.set_defaults(run=run)
    return parser


def _help_for_every_flag(parser: argparse.ArgumentParser) -> None:
    """A flag without help text would hide its default in --help; name it at least."""
    for action in parser._actions:
        if action.help is None and action.option_strings:
            action.help = action.dest.replace("_", " ")


def refuse_ignored_flags(args: argparse.Namespace, argv: list[str]) -> None:
    """Options before a command name belong to live monitoring; the command would silently drop them
    (`mer-live --file X label Y`), so refuse them instead. ``--debug`` works in either place."""
    command = getattr(args, "command", None)
    if command is None or command not in argv:
        return
    given = [t.split("=")[0] for t in argv[: argv.index(command)] if t.startswith("-") and t != "--debug"]
    if given:
        flags = ", ".join(dict.fromkeys(given))
        raise MerLiveError(f"{flags}: live-monitoring option{'s' * (len(given) != 1)} that `mer-live {command}` "
                           f"ignores; give the command's own options after its name (mer-live {command} --help)")


BENCHMARK_NAMES = ("latency", "live", "label", "ray_label", "train", "accuracy", "soak", "all", "readme")


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", default="all",
                        help=f"benchmark to run: {', '.join(BENCHMARK_NAMES)} (`mer-live bench NAME --help` for "
                             "its options; benchmarks run from a source checkout)")
    parser.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments for the benchmark")


def run_bench(args: argparse.Namespace) -> int:
    """Benchmarks are not part of the package: they run as ``python -m benchmarks.run`` in a clone."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if not (root / "benchmarks" / "run.py").is_file():
        raise MerLiveError("benchmarks live in the source tree, not in the installed package: in a clone of "
                           "mer-live run `python -m benchmarks.run NAME`")
    return subprocess.call([sys.executable, "-m", "benchmarks.run", args.name, *args.bench_args], cwd=root)


# a module a runtime-only install lacks -> the extra that brings it
EXTRAS = {"torch": "train", "onnx": "train", "skl2onnx": "train", "matplotlib": "plot", "safetensors": "train",
          "sklearn": "train", "scipy": "train", "onnxruntime": "cpu"}


def missing_extra(exc: ModuleNotFoundError, args: argparse.Namespace) -> str | None:
    """One line naming the extra to install, or None for a module no extra provides (a real bug)."""
    module = (exc.name or "").split(".")[0]
    extra = EXTRAS.get(module)
    if extra is None:
        return None
    if module == "matplotlib" and getattr(args, "command", None) in ("train", "evaluate", "export", "bench"):
        extra = "train"  # which has it too, with the rest those commands need
    what = f"mer-live {args.command}" if getattr(args, "command", None) else "mer-live"
    if module == "sklearn" and getattr(args, "aggregator", None) == "pickle":
        what = "--aggregator pickle"
    options = "'mer-live[cpu]' (or [gpu] with CUDA)" if extra == "cpu" else f"'mer-live[{extra}]'"
    return (f"{what} needs {module}, which this install lacks: pip install {options} "
            f"(from a clone: pip install '.[{extra}]')")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminated)
    try:
        refuse_ignored_flags(args, argv)
        return int(args.run(args) or 0)
    except MerLiveError as exc:
        if args.debug:
            raise
        print(f"mer-live: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        line = missing_extra(exc, args)
        if line is None or args.debug:
            raise
        print(f"mer-live: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mer-live: interrupted", file=sys.stderr)
        return 130
    finally:
        quiet_exit()


if __name__ == "__main__":
    sys.exit(main())
