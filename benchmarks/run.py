"""Entry point: ``python -m benchmarks.run NAME [ARGS]`` from a clone (``mer-live bench`` runs that).

Benchmarks: latency, live, label, ray_label, train, accuracy, soak; ``all`` runs them in that order with
the shared options; ``readme`` rewrites the README's results section from the JSON files.
Benchmark modules are imported only when chosen, so ``--help`` costs nothing.
"""

from __future__ import annotations

import argparse
import importlib
import sys

BENCHMARKS = {
    "latency": "per-update compute across segment lengths 1-5 s: ORT 1/2 threads vs PyTorch eager (+CUDA)",
    "live": "end-to-end latency of the live path, file source at real-time pace",
    "label": "batch labeling throughput on 4q-dev vs vibenet and a librosa + ONNX Runtime pipeline; 1-hour file",
    "ray_label": "labeling locally vs --ray on a 2-node local Ray cluster on the same cores; per-core cost model",
    "train": "training throughput: segments/s, data loading apart from compute, warm-up and SSSL steps",
    "accuracy": "accuracy vs segment length (SSSL vs naive) from an evaluation report, with latency",
    "soak": "an hour of audio through the live path with --fast: memory over time",
}
ALL_ORDER = ("latency", "live", "label", "ray_label", "train", "accuracy", "soak")


def _parser(name: str) -> tuple[argparse.ArgumentParser, object]:
    module = importlib.import_module(f"benchmarks.{name}")
    parser = argparse.ArgumentParser(prog=f"mer-live bench {name}", description=BENCHMARKS.get(name))
    module.add_arguments(parser)
    return parser, module


def run_all(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mer-live bench all", description="every benchmark in turn")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--results-dir")
    parser.add_argument("--work-dir", "--cache", dest="cache",
                        help="keep stand-in bundles and generated audio here between benchmarks")
    parser.add_argument("--no-peers", action="store_true", help="label: skip vibenet and librosa")
    args = parser.parse_args(argv)
    shared = (["--quick"] if args.quick else []) + (["--results-dir", args.results_dir] if args.results_dir else [])
    status = 0
    for name in ALL_ORDER:
        extra = list(shared)
        if name in ("latency", "live", "label", "ray_label", "soak") and args.cache:
            extra += ["--work-dir", args.cache]
        if name == "label" and args.no_peers:
            extra.append("--no-peers")
        print(f"\n=== mer-live bench {name} {' '.join(extra)}", flush=True)
        status = max(status, main([name, *extra]))
    return status


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    name = argv[0] if argv else "all"
    rest = argv[1:]
    if name in ("-h", "--help", "help"):
        lines = [f"  {n:<9} {text}" for n, text in BENCHMARKS.items()]
        print("usage: mer-live bench NAME [ARGS]   (NAME --help for its options)\n\n" + "\n".join(lines)
              + "\n  all       every benchmark in turn\n  readme    rewrite the README results section from "
              "benchmarks/results/*.json")
        return 0
    if name == "all":
        return run_all(rest)
    if name == "readme":
        from benchmarks import readme

        return readme.main(rest)
    if name not in BENCHMARKS:
        print(f"mer-live bench: unknown benchmark {name!r}; choose from {', '.join([*BENCHMARKS, 'all', 'readme'])}",
              file=sys.stderr)
        return 2
    parser, module = _parser(name)
    args = parser.parse_args(rest)
    return int(module.run(args, rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
