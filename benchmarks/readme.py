"""Regenerate the README's results section from ``benchmarks/results/*.json``.

The section sits between ``<!-- bench:start -->`` and ``<!-- bench:end -->``; every number in it
comes from a JSON file, with the command that produced it, so the README never drifts from the
measurements. Without the markers the section is printed instead.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from benchmarks import common

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
README = common.ROOT / "README.md"


def _load(results: Path, name: str) -> dict | None:
    path = results / name
    return json.loads(path.read_text()) if path.is_file() else None


def _image(results: Path, name: str, alt: str) -> list[str]:
    path = results / name
    if not path.is_file():
        return []
    try:
        rel = path.resolve().relative_to(common.ROOT)
    except ValueError:
        rel = path
    return [f"![{alt}]({rel.as_posix()})", ""]


def _source(data: dict) -> str:
    return f"_`{data['command']}`, {data['created'][:10]}_"


def _ms(summary: dict, key: str = "p99") -> str:
    return common.fmt(summary.get(key), 1)


def latency_section(data: dict, results: Path) -> list[str]:
    rows = [r for r in data["rows"] if r["provider"] == "CPU"]
    name = {id(r): r.get("model", r["arch"]) for r in rows}  # the packaged model's name (older results: arch)
    index = {(name[id(r)], r["segment_seconds"], r["runtime"], r["threads"]): r for r in rows}
    models = list(dict.fromkeys(name[id(r)] for r in rows))
    threads = sorted({r["threads"] for r in rows})
    lines = ["### Latency per update", "",
             "Per-update compute (ms) of the live path on the CPU: front end on the new hop, CNN on the window, "
             "statistics and aggregator (ONNX Runtime, incremental); the one-graph model on the whole window; and "
             "PyTorch eager of the same network. Algorithmic latency is the segment length (a window must fill); "
             "RTF = compute / hop. Each packaged model is measured at its own segment length and hop, and at the "
             "others as an untrained copy of its configuration (the default's with its pretrained view) with a 1 s "
             "hop (compute does not depend on the weights; `fast` hops 3 s, so its own row's front end covers three "
             "times the new audio); "
             "the figure has one panel per model, p50 solid and p99 dashed.", ""]
    head = ["model", "segment"] + [f"ORT {t}t p50 / p99" for t in threads] + \
        [f"one graph {threads[0]}t p99", f"PyTorch {threads[0]}t p99", "PyTorch / ORT", "RTF p99"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arch, seconds in sorted({(name[id(r)], r["segment_seconds"]) for r in rows},
                                key=lambda k: (models.index(k[0]), k[1])):
        t0 = threads[0]
        inc = [index.get((arch, seconds, "ort-incremental", t)) for t in threads]
        full = index.get((arch, seconds, "ort-full", t0))
        torch = index.get((arch, seconds, "torch-eager", t0))
        cells = [arch, f"{seconds:g} s"]
        cells += [f"{_ms(r['compute_ms'], 'p50')} / {_ms(r['compute_ms'])}" if r else "-" for r in inc]
        cells += [_ms(full["compute_ms"]) if full else "-", _ms(torch["compute_ms"]) if torch else "-"]
        cells.append(f"x{torch['compute_ms']['p50'] / inc[0]['compute_ms']['p50']:.1f}" if torch and inc[0] else "-")
        cells.append(f"{inc[0]['rtf_p99']:.3f}" if inc[0] else "-")
        lines.append("| " + " | ".join(cells) + " |")
    target = data.get("target", {})
    lines += ["", f"Target (compact, ORT incremental, p99 <= {target.get('compact_ort_incremental_p99_ms')} ms at "
              f"every length): {'met' if target.get('met') else 'not met'}. GPU: {data.get('gpu')}.", ""]
    repeats = {k: v for k, v in data.get("repeats", {}).items() if k != "warmup"}
    if repeats:  # a p99 over 60 updates is nearly their maximum; say how many each row timed
        lines[-1:-1] = ["Updates timed per row: " + ", ".join(f"{v} ({k})" for k, v in repeats.items())
                        + f", each after {data['repeats'].get('warmup', 0)} untimed."]
    if "vibenet" in models:
        lines[-1:-1] = ["vibenet labels a whole clip at once; its row is vibenet re-run on the newest 3 s window "
                        "(its own front end and graph, one update a second), in the one-graph column."]
    return lines + _image(results, "latency.png", "latency against segment length") + [_source(data), ""]


def live_section(data: dict, results: Path) -> list[str]:
    lines = ["### Live end-to-end latency", "",
             f"{data['audio_seconds']:.0f} s of a 44.1 kHz stereo file at real-time pace through the live path "
             f"({data['bundle']}, {data['mode']}); latency from the arrival of the block holding a window's last "
             "sample to its JSON line being written; 'from due' adds the wait for the block (50 ms blocks).", "",
             "| measured from | p50 ms | p95 ms | p99 ms |", "|---|---|---|---|"]
    for key, label in (("from_arrival_ms", "block arrival"), ("from_due_ms", "sample due"),
                       ("compute_ms", "compute only")):
        s = data[key]
        lines.append(f"| {label} | {_ms(s, 'p50')} | {_ms(s, 'p95')} | {_ms(s)} |")
    return lines + [""] + _image(results, "live.png", "live latency") + [_source(data), ""]


def label_section(data: dict, results: Path) -> list[str]:
    lines = ["### Batch labeling", ""]
    if data["rows"]:
        lines += [f"{data['files']} 4Q MP3s ({data['audio_seconds'] / 60:.0f} min), each pipeline a fresh process "
                  "from start to exit; peak RSS of the process tree.", "",
                  "| pipeline | x real time | files/s | peak RSS MB | `mer-live label` faster by | same quadrant as "
                  "`mer-live label` |", "|---|---|---|---|---|---|"]
        for r in data["rows"]:
            same = r.get("agreement_with_mer_live", {}).get("quadrant_agreement")
            lines.append(f"| {r['pipeline']} | {r['x_realtime']:.0f} | {r['files_per_s']:.2f} | "
                         f"{r['peak_rss_tree_mb']:.0f} | x{r['mer_live_speedup']:.2f} | "
                         f"{'-' if same is None else f'{100 * same:.1f} %'} |")
        lines += ["", f"Peers: {data['peers']}.", ""]
    else:
        lines += [f"Not measured: {data['peers']}.", ""]
    long = data.get("long_file")
    if long:
        lines += [f"One {long['minutes']:g} min MP3: {long['wall_s']:.1f} s ({long['x_realtime']:.0f}x real time), "
                  f"peak RSS {long['peak_rss_tree_mb']:.0f} MB (target <= {long['target_mb']:g} MB).", ""]
    return lines + _image(results, "label.png", "labeling throughput") + [_source(data), ""]


def train_section(data: dict, results: Path) -> list[str]:
    lines = ["### Training throughput", "", f"{data['data']}, {data['segment_seconds']:g} s segments, batch "
             f"{data['batch_size']}.", "",
             "| model | device | phase | segments/s | compute only | data loading only | loading share |",
             "|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        lines.append(f"| {r['arch']} | {r['device']} | {r['phase']} | {common.fmt(r['segments_per_s'])} | "
                     f"{common.fmt(r['compute_segments_per_s'])} | {common.fmt(r['load_segments_per_s'])} | "
                     f"{100 * r['load_share']:.0f} % |")
    return lines + [""] + [_source(data), ""]


def accuracy_section(data: dict, results: Path) -> list[str]:
    lines = ["### Accuracy against segment length", ""]
    if not data["rows"]:
        return lines + [f"No evaluation report yet; make it with `{data['make_report']}`.", ""]
    lines += [f"{data.get('n_songs')} songs, {data.get('protocol')}. Song-level accuracy, mean ± std over folds (%).",
              "", "| segment | method | aggregation | valence | arousal | quadrant | compute p99 ms |",
              "|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        seg = "whole clip" if r["segment_seconds"] is None else f"{r['segment_seconds']:g} s"
        cells = [f"{100 * r[m]['mean']:.1f} ± {100 * r[m]['std']:.1f}" if m in r else "-"
                 for m in ("valence_acc", "arousal_acc", "quadrant_acc")]
        lines.append(f"| {seg} | {r['method']} | {r['aggregation']} | " + " | ".join(cells)
                     + f" | {common.fmt(r['compute_p99_ms'])} |")
    made = [f"Evaluation made by `{c}`." for c in data.get("report_command") or []]
    return lines + [""] + _image(results, "accuracy.png", "accuracy and latency against segment length") + \
        made + ["", _source(data), ""]


def soak_section(data: dict, results: Path) -> list[str]:
    m = data["memory"]
    lines = ["### Soak", "", f"{data['audio_s'] / 60:.0f} min of audio through `mer-live --file ... --fast` in "
             f"{data['wall_s']:.0f} s: RSS {m.get('start_mb')} MB after the first tenth, {m.get('end_mb')} MB at the "
             f"end, peak {m.get('peak_mb')} MB; growth {m.get('growth_after_first_tenth_mb')} MB "
             f"({m.get('slope_mb_per_audio_hour')} MB per audio hour).", ""]
    return lines + _image(results, "soak.png", "memory over time") + [_source(data), ""]


SECTIONS = (("latency.json", latency_section), ("live.json", live_section), ("label.json", label_section),
            ("train.json", train_section), ("accuracy.json", accuracy_section), ("soak.json", soak_section))


_PRIVATE = (
    (re.compile(r"(?:[^\s'\"`]*/)?MER_audio_taffc_dataset"), "path/to/MER_audio_taffc_dataset"),
    (re.compile(r"/tmp/[^\s'\"`,)]+"), "CACHE_DIR"),
)


def public(text: str) -> str:
    """The section as a reader on another machine needs it: no checkout, data or temp paths of this one."""
    text = text.replace(f"{common.ROOT}/", "").replace(str(common.ROOT), ".")
    for pattern, replacement in _PRIVATE:
        text = pattern.sub(replacement, text)
    return text


def section(results: Path) -> str:
    found = [(name, _load(results, name), make) for name, make in SECTIONS]
    found = [(name, data, make) for name, data, make in found if data]
    lines = ["## Benchmarks", ""]
    if not found:
        return "\n".join(lines + ["No results yet: run `mer-live bench all`.", ""])
    m = found[0][1]["machine"]
    v = found[0][1]["versions"]
    lines += [f"Measured on {m['cpu']} ({m['cores']} cores, {m['ram_gb']} GB RAM), Python {m['python']}, "
              f"ONNX Runtime {v.get('onnxruntime')}, torch {v.get('torch')}. Regenerate with `mer-live bench all` "
              "then `mer-live bench readme`; each table names the command that made it, and the JSON files in "
              "`benchmarks/results/` hold every number.", ""]
    for name, data, make in found:
        try:
            lines += make(data, results)
        except (KeyError, TypeError, ZeroDivisionError) as exc:
            lines += [f"_{name}: cannot be summarised ({exc!r}); re-run its benchmark_", ""]
    return public("\n".join(lines))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mer-live bench readme", description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--print", action="store_true", help="print the section instead of writing it")
    args = parser.parse_args(argv)
    text = section(args.results_dir)
    readme = args.readme.read_text() if args.readme.is_file() else ""
    if args.print or START not in readme or END not in readme:
        if not args.print:
            print(f"{args.readme} has no {START} ... {END} markers; add them to place this section:\n")
        print(text)
        return 0
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    args.readme.write_text(f"{head}{START}\n{text}\n{END}{tail}")
    print(f"rewrote the results section of {args.readme}")
    return 0
