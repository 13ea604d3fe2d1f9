"""The latency/accuracy trade-off on one figure: cross-validated accuracy per segment length (SSSL
vs the naive segment baseline) with the per-update compute latency on a second axis.

Nothing is trained here: the accuracy comes from the report ``mer-live evaluate`` writes (its
evaluation.json), the latency from ``benchmarks/results/latency.json``. The x axis, the
segment length, is also the algorithmic latency.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks import common

DEFAULT_REPORT = common.ROOT / "runs" / "evaluation" / "evaluation.json"
EVALUATE = ("mer-live evaluate --dataset 4q --root ../shared/data/4q-dev/MER_audio_taffc_dataset "
            "--segment-seconds 1,2,3,4,5 --methods sssl,naive,clip --folds 5 --out runs/evaluation")
METRICS = ("valence_acc", "arousal_acc", "quadrant_acc")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_common_arguments(parser)
    parser.add_argument("--report", type=Path, nargs="+", default=[DEFAULT_REPORT],
                        help="evaluation.json from `mer-live evaluate`, or several (e.g. one per segment length, "
                             "run in parallel) to put on one figure (default runs/evaluation/evaluation.json)")
    parser.add_argument("--latency", type=Path, help="latency.json (default: the one in --results-dir)")


def latency_by_length(path: Path) -> dict[float, float]:
    """Compact, ORT incremental, fewest threads: p99 per-update compute (ms) per segment length."""
    if not path.is_file():
        return {}
    rows = [r for r in json.loads(path.read_text())["rows"]
            if r["arch"] == "compact" and r["runtime"] == "ort-incremental" and r["provider"] == "CPU"]
    if not rows:
        return {}
    threads = min(r["threads"] for r in rows)
    return {float(r["segment_seconds"]): r["compute_ms"]["p99"] for r in rows if r["threads"] == threads}


def merge_reports(reports: list[dict]) -> dict:
    """One report from several: results concatenated, distinct protocols and commands kept."""
    def distinct(key: str) -> list:
        return list(dict.fromkeys(r.get(key) for r in reports if r.get(key)))

    return {"results": [row for r in reports for row in r["results"]],
            "protocol": "; ".join(distinct("protocol")), "command": distinct("command"),
            "n_songs": reports[0].get("n_songs")}


def table_rows(report: dict, latency: dict[float, float]) -> list[dict]:
    rows = []
    for r in report["results"]:
        seconds = r["segment_seconds"]
        rows.append({"segment_seconds": seconds, "method": r["method"], "aggregation": r["aggregation"],
                     **{m: r["summary"][m] for m in METRICS if m in r["summary"]},
                     "compute_p99_ms": None if seconds is None else latency.get(float(seconds))})
    return sorted(rows, key=lambda r: (r["segment_seconds"] is None, r["segment_seconds"] or 0, r["method"]))


def print_table(rows: list[dict]) -> None:
    from rich.table import Table

    table = Table(title="song-level accuracy (mean ± std over folds, %) and per-update compute p99")
    for col in ("segment", "method", "aggregation", *METRICS, "compute p99 ms"):
        table.add_column(col, justify="right")
    for r in rows:
        cells = [f"{100 * r[m]['mean']:.1f} ± {100 * r[m]['std']:.1f}" if m in r else "-" for m in METRICS]
        seg = "whole clip" if r["segment_seconds"] is None else f"{r['segment_seconds']:g} s"
        table.add_row(seg, r["method"], r["aggregation"], *cells, common.fmt(r["compute_p99_ms"], 2))
    common.console.print(table)


def plot(rows: list[dict], latency: dict[float, float], path: Path) -> None:
    fig, axes = common.figure(1, len(METRICS), figsize=(5 * len(METRICS), 4))
    for ax, metric in zip(axes, METRICS):
        series: dict[str, list[dict]] = {}
        for r in rows:
            if metric in r:
                series.setdefault(f"{r['method']} ({r['aggregation']})", []).append(r)
        for name, points in sorted(series.items()):
            if points[0]["segment_seconds"] is None:
                ax.axhline(100 * points[0][metric]["mean"], color="gray", ls="--", lw=1, label=name)
                continue
            x = [p["segment_seconds"] for p in points]
            y = [100 * p[metric]["mean"] for p in points]
            err = [100 * p[metric]["std"] for p in points]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, ls="-" if "svm" in name else ":", label=name)
        ax.set(title=metric.replace("_", " "), xlabel="segment length (s) = algorithmic latency", ylabel="accuracy (%)")
        ax.grid(alpha=0.3)
        if latency:
            twin = ax.twinx()
            xs = sorted(latency)
            twin.plot(xs, [latency[x] for x in xs], color="black", marker="s", ms=3, lw=0.8, alpha=0.5,
                      label="compute p99 (ms)")
            twin.set_ylabel("per-update compute p99 (ms)")
            twin.set_ylim(0, 1.2 * max(latency.values()))
    axes[0].legend(fontsize=7, loc="lower right")
    common.save_figure(fig, path)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    latency = latency_by_length(args.latency or args.results_dir / "latency.json")
    missing = [p for p in args.report if not p.is_file()]
    if missing:
        common.console.print(f"no evaluation report at {missing[0]}; make it with (hours on a CPU):\n  {EVALUATE}",
                             highlight=False)
        common.write_result(args.results_dir, "accuracy", argv, {
            "report": None, "make_report": EVALUATE, "rows": [], "latency_p99_ms": latency})
        return 0
    report = merge_reports([json.loads(p.read_text()) for p in args.report])
    rows = table_rows(report, latency)
    print_table(rows)
    plot(rows, latency, args.results_dir / "accuracy.png")
    common.write_result(args.results_dir, "accuracy", argv, {
        "what": "song-level accuracy per segment length from the evaluation report; latency = compact model, "
                "ORT incremental, per-update compute p99 from latency.json",
        "report": [str(p) for p in args.report], "report_command": report["command"],
        "protocol": report.get("protocol"),
        "n_songs": report.get("n_songs"), "make_report": EVALUATE, "latency_p99_ms": latency, "rows": rows,
    })
    return 0
