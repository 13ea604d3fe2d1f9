"""`mer-live export RUN_DIR --out BUNDLE_DIR`: torch and ONNX load only when it runs."""

from __future__ import annotations

import argparse


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="training run directory (written by `mer-live train`)")
    parser.add_argument("--out", required=True, help="bundle directory to write")
    parser.add_argument("--fp16", action="store_true",
                        help="also write segment.fp16.onnx (needs onnxconverter-common) and record its error")
    parser.add_argument("--int8", action="store_true",
                        help="also write segment.int8.onnx (dynamic int8) and record its error")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out directory")
    parser.add_argument("--segment-hop", type=float, metavar="SECONDS",
                        help="label with windows this far apart (e.g. 1: overlapping 3 s windows every second); "
                             "default: the hop the run trained on")
    parser.add_argument("--without-view", action="store_true",
                        help="leave a run's pretrained view out (trained with --pretrained-view): the fine-tuned "
                             "network and song SVM alone, half the network's work per window")


def run_export(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from mer_live.export.exporter import export_run
    from mer_live.runtime.bundle import load_bundle

    console = Console()
    variants = [name for name in ("fp16", "int8") if getattr(args, name)]
    out = export_run(args.run_dir, args.out, variants=variants, force=args.force, segment_hop=args.segment_hop,
                     without_view=args.without_view, log=lambda message: console.print(message, highlight=False))
    bundle = load_bundle(out)  # what the runtime will do: proves the bundle opens and verifies
    table = Table(title=f"bundle {out}", title_justify="left")
    table.add_column("file")
    table.add_column("size", justify="right")
    for name in sorted(bundle.manifest["files"]):
        table.add_row(name, f"{(out / name).stat().st_size / 1e6:.2f} MB")
    console.print(table)
    check = bundle.manifest["verification"]
    console.print(
        f"ONNX Runtime vs PyTorch on {check['segments']} segments: segment.onnx "
        f"{check['segment_onnx_vs_torch_max_abs']:.2g}, frontend+backbone "
        f"{check['frontend_backbone_onnx_vs_torch_max_abs']:.2g}; aggregator.onnx vs pickle on "
        f"{check['songs']} songs: {check['aggregator_onnx_vs_pickle_max_abs']:.2g} (max abs probability)",
        highlight=False,
    )
    for name, info in bundle.manifest["variants"].items():
        console.print(f"{name}: {info['file']} {info['bytes'] / 1e6:.2f} MB, max probability change "
                      f"vs fp32 {info['max_abs_prob_change_vs_fp32']:.2g}", highlight=False)
    return 0
