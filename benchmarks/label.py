"""Batch labeling throughput on the 4Q MP3s, mer-live side by side with its peers, and the memory
of labeling one long file.

Every pipeline runs as its own subprocess on the same files, timed from start to exit (so the
interpreter start and model load count, as they do for a user) while a thread samples the
resident memory of the whole process tree (decoder workers included). Speed is audio seconds
(from the files' headers, the same total for all) over wall seconds.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import bundles, common, peers
from mer_live.audio.read import audio_duration

TARGET_X_REALTIME = 500.0
TARGET_LONG_FILE_MB = 400.0
DATA_ENV = "MER_LIVE_4Q_ROOT"
DEFAULT_DATA = common.ROOT.parent / "shared" / "data" / "4q-dev" / "MER_audio_taffc_dataset"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_common_arguments(parser)
    bundles.add_bundle_arguments(parser)
    parser.add_argument("--data", type=Path, help=f"folder of 4Q MP3s (default ${DATA_ENV} or {DEFAULT_DATA})")
    parser.add_argument("--files", type=int, help="use the first N files (sorted; 0: none); default all")
    parser.add_argument("--workers", type=int, help="mer-live and librosa decoding workers (default: mer-live's)")
    parser.add_argument("--no-peers", action="store_true", help="skip vibenet and the librosa pipeline")
    parser.add_argument("--long-minutes", type=float,
                        help="also label one generated MP3 this long and report its peak memory (default 60; "
                             "quick: 1; 0: skip)")


def data_files(args: argparse.Namespace) -> list[str]:
    root = args.data or Path(os.environ.get(DATA_ENV, DEFAULT_DATA))
    files = sorted(str(p) for p in root.rglob("*.mp3")) if root.is_dir() else []
    limit = args.files if args.files is not None else (6 if args.quick else None)
    return files if limit is None else files[:limit]


def timed(cmd: list[str], stdout=None, env: dict | None = None) -> dict:
    """Run ``cmd``; wall seconds, exit status, peak RSS of its process tree, stderr's tail."""
    begin = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=stdout or subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    with common.RssSampler(proc.pid, interval=0.05) as rss:
        _, err = proc.communicate()
    wall = time.perf_counter() - begin
    return {"wall_s": round(wall, 3), "returncode": proc.returncode, "peak_rss_tree_mb": round(rss.peak_tree_mb, 1),
            "peak_rss_process_mb": round(rss.peak_process_mb, 1), "stderr_tail": err.strip().splitlines()[-3:]}


def read_csv(path: Path, valence: str, arousal: str) -> dict[str, tuple[float, float]]:
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {os.path.normpath(r["path"]): (float(r[valence]), float(r[arousal]))
                for r in csv.DictReader(f) if r.get(valence) not in (None, "")}


def agreement(a: dict, b: dict) -> dict:
    """How closely two pipelines' song probabilities agree on the files both labeled."""
    common_paths = sorted(set(a) & set(b))
    if not common_paths:
        return {"files": 0}
    diffs = [max(abs(a[p][0] - b[p][0]), abs(a[p][1] - b[p][1])) for p in common_paths]
    same = [(a[p][0] >= 0.5, a[p][1] >= 0.5) == (b[p][0] >= 0.5, b[p][1] >= 0.5) for p in common_paths]
    return {"files": len(common_paths), "max_abs_diff": round(max(diffs), 6),
            "quadrant_agreement": round(sum(same) / len(same), 4)}


def label_rows(files: list[str], bundle, name: str, tmp: Path, worker_args: list[str], model: str | None = None,
               strided: bool = True) -> tuple[list[dict], dict[str, dict]]:
    """``mer-live label`` with one bundle (or the packaged name ``model``), and with ``strided`` also at
    non-overlapping segments when its hop is shorter."""
    rows, outputs = [], {}
    out = tmp / f"{name.replace(' ', '_')}.csv"
    cmd = [sys.executable, "-m", "mer_live", "label", *files, "--model", model or str(bundle.path), "--out", str(out),
           *worker_args]
    rows.append({"pipeline": name, "settings": f"workers {worker_args[-1] if worker_args else 'default'}",
                 **timed(cmd)})
    outputs[name] = read_csv(out, "valence", "arousal")
    stride = bundle.audio.segment_frames // bundle.audio.hop_frames  # non-overlapping segments
    if strided and stride > 1 and model is None:
        label = f"{name} --stride {stride}"
        out = tmp / f"{name.replace(' ', '_')}-stride.csv"
        cmd = [*cmd[: cmd.index("--out")], "--out", str(out), *worker_args, "--stride", str(stride)]
        rows.append({"pipeline": label, "settings": f"every {stride}th segment", **timed(cmd)})
        outputs[label] = read_csv(out, "valence", "arousal")
    return rows, outputs


def run_pipelines(files: list[str], bundle, tmp: Path, workers: int | None, with_peers: bool,
                  others: dict | None = None) -> tuple[list[dict], str, float]:
    """mer-live with ``bundle`` (the row the others are compared with), with each of ``others`` (name ->
    bundle: the model tiers side by side), then the peers, all on the same files in one run."""
    audio_s = sum(audio_duration(f) for f in files)
    for f in files:  # into the page cache, so the first pipeline does not pay for the disk alone
        Path(f).read_bytes()
    worker_args = ["--workers", str(workers)] if workers else []
    others = others or {}
    rows, outputs = label_rows(files, bundle, "mer-live label", tmp, worker_args, strided="fast" not in others)
    for name, other in others.items():
        more, more_outputs = label_rows(files, other, f"mer-live label --model {name}", tmp, worker_args, name)
        rows += more
        outputs.update(more_outputs)
    note = "peers skipped (--no-peers)"
    if with_peers:
        problem = peers.ensure(lambda m: common.console.print(m, highlight=False))
        if problem:
            note = problem
        else:
            note = f"peers from PyPI in {peers.VENV}: {peers.versions()}"
            out = tmp / "librosa.csv"
            env = {**os.environ, "PYTHONPATH": str(common.ROOT)}
            cmd = [str(peers.python()), str(Path(__file__).with_name("peer_librosa.py")), "--bundle", str(bundle.path),
                   "--out", str(out), "--workers", str(workers or min(4, os.cpu_count() or 1)), *files]
            timed(cmd[:-len(files)] + files[:1], env=env)  # untimed: librosa's numba compiles on first use
            rows.append({"pipeline": "librosa + ORT", "settings": f"workers {cmd[cmd.index('--workers') + 1]}",
                         **timed(cmd, env=env)})
            outputs["librosa + ORT"] = read_csv(out, "valence", "arousal")
            out = tmp / "vibenet.csv"
            with open(out, "w") as f:
                cmd = [str(peers.VENV / "bin" / "vibenet"), *files, "--format", "csv", "--quiet"]
                rows.append({"pipeline": "vibenet", "settings": "its defaults (threads = CPU count)",
                             **timed(cmd, stdout=f)})
            outputs["vibenet"] = read_csv(out, "valence", "energy")
    base = rows[0]
    for row in rows:
        row["files_ok"] = len(outputs[row["pipeline"]])
        row["x_realtime"] = round(audio_s / row["wall_s"], 1)
        row["files_per_s"] = round(row["files_ok"] / row["wall_s"], 2)
        row["mer_live_speedup"] = round(row["wall_s"] / base["wall_s"], 2)
    for row in rows[1:]:
        if row["pipeline"] != "vibenet" and row["pipeline"] in outputs:  # vibenet's scales are its own
            row["agreement_with_mer_live"] = agreement(outputs["mer-live label"], outputs[row["pipeline"]])
    return rows, note, audio_s


def long_file(bundle, work: Path, minutes: float) -> dict:
    """Peak memory while labeling one long generated MP3 (44.1 kHz stereo)."""
    path = common.cached_music(work, minutes * 60)
    cmd = [sys.executable, "-m", "mer_live", "label", str(path), "--model", str(bundle.path), "--format", "csv"]
    result = timed(cmd)
    return {"minutes": minutes, "file_mb": round(path.stat().st_size / 2**20, 1), **result,
            "x_realtime": round(minutes * 60 / result["wall_s"], 1),
            "target_mb": TARGET_LONG_FILE_MB, "met": result["returncode"] == 0
            and result["peak_rss_tree_mb"] <= TARGET_LONG_FILE_MB}


def print_table(rows: list[dict], audio_s: float, long: dict | None) -> None:
    from rich.table import Table

    if rows:
        table = Table(title=f"batch labeling, {rows[0]['files_ok']} files, {audio_s / 60:.1f} min of audio")
        for col in ("pipeline", "files ok", "wall s", "x real time", "files/s", "peak RSS tree MB",
                    "mer-live faster by", "exit"):
            table.add_column(col, justify="right")
        for r in rows:
            table.add_row(r["pipeline"], str(r["files_ok"]), f"{r['wall_s']:.1f}", f"{r['x_realtime']:.0f}",
                          f"{r['files_per_s']:.2f}", f"{r['peak_rss_tree_mb']:.0f}", f"x{r['mer_live_speedup']:.2f}",
                          str(r["returncode"]))
        common.console.print(table)
    for r in rows:
        if "agreement_with_mer_live" in r:
            common.console.print(f"{r['pipeline']} vs mer-live label: {r['agreement_with_mer_live']}",
                                 highlight=False)
        if r["returncode"]:
            common.console.print(f"{r['pipeline']} exited {r['returncode']}: {r['stderr_tail']}", highlight=False)
    if long:
        common.console.print(f"long file: {long['minutes']:g} min MP3 labeled in {long['wall_s']:.1f} s, peak RSS "
                             f"{long['peak_rss_tree_mb']:.0f} MB (target <= {TARGET_LONG_FILE_MB:g} MB: "
                             f"{'met' if long['met'] else 'NOT met'})", highlight=False)


def plot(rows: list[dict], path: Path) -> None:
    fig, (left, right) = common.figure(1, 2, figsize=(10, 3.6))
    names = [r["pipeline"] for r in rows]
    left.barh(names, [r["x_realtime"] for r in rows], color="tab:blue")
    left.axvline(TARGET_X_REALTIME, color="red", ls=":", lw=1, label=f"target {TARGET_X_REALTIME:g}x")
    left.set(xlabel="x real time (higher is better)", title="labeling speed")
    left.legend(fontsize=8)
    right.barh(names, [r["peak_rss_tree_mb"] for r in rows], color="tab:orange")
    right.set(xlabel="peak RSS of the process tree (MB)", title="memory")
    for ax in (left, right):
        ax.invert_yaxis()
        ax.grid(alpha=0.3, axis="x")
    common.save_figure(fig, path)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    files = data_files(args)
    minutes = args.long_minutes if args.long_minutes is not None else (1.0 if args.quick else 60.0)
    rows, note, audio_s, long = [], "", 0.0, None
    with bundles.workdir(args.cache) as work, tempfile.TemporaryDirectory(prefix="mer-live-label-") as tmp:
        bundle = bundles.one(args, work)
        others = {} if args.bundle is not None else bundles.tiers(exclude="default")
        common.console.print(f"model: {bundles.describe(bundle)}"
                             + "".join(f"; {n}: {bundles.describe(b)}" for n, b in others.items()), highlight=False)
        if files:
            common.console.print(f"labeling {len(files)} MP3s with each pipeline", highlight=False)
            rows, note, audio_s = run_pipelines(files, bundle, Path(tmp), args.workers, not args.no_peers, others)
        else:
            note = f"no 4Q MP3s found (set ${DATA_ENV} or --data); throughput not measured"
            common.console.print(note)
        if minutes > 0:
            common.console.print(f"labeling one generated {minutes:g} min MP3", highlight=False)
            long = long_file(bundle, work, minutes)
    print_table(rows, audio_s, long)
    if rows:
        plot(rows, args.results_dir / "label.png")
    common.write_result(args.results_dir, "label", argv, {
        "what": "wall time from process start to exit per pipeline on the same files; x real time = audio seconds "
                "(file headers) / wall; peak RSS sampled every 50 ms over the process tree",
        "bundle": bundles.describe(bundle), "files": len(files), "audio_seconds": round(audio_s, 1),
        "peers": note, "target_x_realtime": TARGET_X_REALTIME,
        "met": bool(rows) and rows[0]["x_realtime"] >= TARGET_X_REALTIME, "rows": rows, "long_file": long,
    })
    return 0 if all(r["returncode"] == 0 for r in rows[:1]) else 1
