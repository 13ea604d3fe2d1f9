"""``mer-live label`` locally and ``--ray`` on a local multi-node Ray cluster, on the same cores.

Both run as subprocesses on the same files, timed from start to exit (interpreter start, model
load and, for Ray, joining the cluster and starting the actors count, as they do for a user). The
cluster is real: ``ray start --head`` plus ``ray start --address`` per extra node on this machine,
the cores split between the nodes (``harness.local_cluster``); its own start is timed apart.
A small untimed Ray job first warms the fresh cluster (its time is recorded as ``first_job_s``); a
small timed one after the full run (``--probe`` files) measures the fixed cost of a Ray run, so the
steady rate (what a long run on a cluster converges to) is (N - probe) files / (wall - probe wall).

From the rates per core: x real time per core, and the core-hours a million 4-minute tracks cost
(compute grows with audio length: decoding and the segment model are per second of audio).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import bundles, common
from benchmarks.label import DATA_ENV, DEFAULT_DATA, timed
from mer_live.audio.read import audio_duration

MILLION = 1_000_000
TRACK_SECONDS = 240.0  # a 4-minute track


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_common_arguments(parser)
    bundles.add_bundle_arguments(parser)
    parser.add_argument("--data", type=Path, help=f"folder of 4Q MP3s (default ${DATA_ENV} or {DEFAULT_DATA})")
    parser.add_argument("--files", type=int, help="use the first N files (sorted); default all (quick: 6)")
    parser.add_argument("--per-quadrant", type=int,
                        help="use the first N files of each quadrant folder instead (a documented subset)")
    parser.add_argument("--nodes", type=int, default=2, help="Ray nodes on this machine (default 2)")
    parser.add_argument("--probe", type=int, default=4, help="files in the small Ray run that measures the fixed "
                                                            "cost of a run (default 4; 0: skip)")
    parser.add_argument("--stride", type=int, default=1, help="label from every K-th segment (both paths)")


def data_files(args: argparse.Namespace) -> list[str]:
    root = args.data or Path(os.environ.get(DATA_ENV, DEFAULT_DATA))
    if not root.is_dir():
        return []
    if args.per_quadrant:
        return sorted(str(p) for q in sorted(root.glob("Q*")) for p in sorted(q.glob("*.mp3"))[: args.per_quadrant])
    files = sorted(str(p) for p in root.rglob("*.mp3"))
    limit = args.files if args.files is not None else (6 if args.quick else None)
    return files if limit is None else files[:limit]


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def compare(local: list[dict], ray: list[dict]) -> dict:
    """Same files, same order, same errors and quadrants; the largest probability difference."""
    same_order = [r["path"] for r in local] == [r["path"] for r in ray]
    diffs = [abs(float(a[k]) - float(b[k])) for a, b in zip(local, ray) for k in ("valence", "arousal")
             if a[k] not in ("", None) and b[k] not in ("", None)]
    fields = ("error", "quadrant", "segments", "duration_s")
    return {"rows_local": len(local), "rows_ray": len(ray), "same_order": same_order,
            "same_errors_quadrants_segments": same_order and all(a[k] == b[k] for a, b in zip(local, ray)
                                                                  for k in fields),
            "max_abs_diff": max(diffs) if diffs else None}


def rates(name: str, files: int, audio_s: float, wall_s: float, cores: int) -> dict:
    x_rt = audio_s / wall_s
    per_core = x_rt / cores
    return {"pipeline": name, "files": files, "wall_s": round(wall_s, 2), "files_per_s": round(files / wall_s, 3),
            "x_realtime": round(x_rt, 1), "files_per_s_per_core": round(files / wall_s / cores, 3),
            "x_realtime_per_core": round(per_core, 2),
            "core_hours_million_4min_tracks": round(MILLION * TRACK_SECONDS / per_core / 3600)}


def run(args: argparse.Namespace, argv: list[str]) -> int:
    try:
        import ray  # noqa: F401
    except ImportError:
        common.console.print("ray_label: Ray is not installed: pip install '.[ray]'")
        return 1
    from harness.local_cluster import LocalCluster

    files = data_files(args)
    if not files:
        common.console.print(f"no 4Q MP3s found (set ${DATA_ENV} or --data); nothing measured")
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    audio_s = sum(audio_duration(f) for f in files)
    for f in files:  # into the page cache, so the first pipeline does not pay for the disk alone
        Path(f).read_bytes()
    result_rows, cluster_info = [], {}
    with bundles.workdir(args.cache) as work, tempfile.TemporaryDirectory(prefix="mer-live-ray-bench-") as tmp:
        bundle = bundles.one(args, work)
        tmp = Path(tmp)
        common.console.print(f"model: {bundles.describe(bundle)}; {len(files)} MP3s, {audio_s / 60:.1f} min of audio; "
                             f"{cores} cores", highlight=False)
        base = [sys.executable, "-m", "mer_live", "label", *files, "--model", str(bundle.path),
                "--stride", str(args.stride)]
        manifest = tmp / "files.txt"
        manifest.write_text("\n".join(files) + "\n")
        ray_base = [sys.executable, "-m", "mer_live", "label", str(manifest), "--model", str(bundle.path),
                    "--stride", str(args.stride)]

        common.console.print(f"local: mer-live label ({cores} cores, default workers)", highlight=False)
        local = timed([*base, "--out", str(tmp / "local.csv")])
        result_rows.append({**rates("mer-live label (local)", len(files), audio_s, local["wall_s"], cores),
                            "returncode": local["returncode"], "peak_rss_tree_mb": local["peak_rss_tree_mb"],
                            "stderr_tail": local["stderr_tail"]})

        cpus = cores / args.nodes
        begin = time.perf_counter()
        with LocalCluster(nodes=args.nodes, cpus=cpus, fast_health_checks=False) as cluster:
            started = round(time.perf_counter() - begin, 2)
            cluster_info = {"nodes": args.nodes, "cpus_per_node": cpus, "start_s": started,
                            "how": f"ray start --head --num-cpus {cpus:g} + {args.nodes - 1} x ray start --address "
                                   f"--num-cpus {cpus:g}, each with its own --temp-dir, on this machine"}
            common.console.print(f"Ray: {args.nodes} nodes x {cpus:g} CPUs up in {cluster_info['start_s']} s",
                                 highlight=False)
            probe_list = tmp / "probe.txt"
            probe_list.write_text("\n".join(files[: max(1, args.probe)]) + "\n")
            probe_cmd = [*ray_base[:4], str(probe_list), *ray_base[5:], "--out", str(tmp / "probe.csv"),
                         "--ray", cluster.address]
            # the first job on a fresh cluster pays once for Ray Data's own actors and cold imports
            warm = timed(probe_cmd)
            cluster_info["first_job_s"] = warm["wall_s"]
            common.console.print(f"Ray: first job ({max(1, args.probe)} files, untimed warm-up): "
                                 f"{warm['wall_s']:.1f} s", highlight=False)
            common.console.print(f"Ray: mer-live label --ray {cluster.address}", highlight=False)
            remote = timed([*ray_base, "--out", str(tmp / "ray.csv"), "--ray", cluster.address])
            # the steady rate only from a run long enough to tell it from the noise of a small one
            probe = timed(probe_cmd) if args.probe and len(files) >= 10 * args.probe else None
            if probe is not None:
                common.console.print(f"Ray: {args.probe} files (the fixed cost of a run): {probe['wall_s']:.1f} s",
                                     highlight=False)
        row = {**rates(f"mer-live label --ray ({args.nodes}-node local cluster)", len(files), audio_s,
                       remote["wall_s"], cores),
               "returncode": remote["returncode"], "stderr_tail": remote["stderr_tail"]}
        result_rows.append(row)
        if probe is not None and probe["returncode"] == 0 and remote["wall_s"] > probe["wall_s"]:
            n = len(files) - args.probe
            steady_audio = sum(audio_duration(f) for f in files[args.probe:])
            steady = rates("--ray steady state (fixed cost removed)", n, steady_audio,
                           remote["wall_s"] - probe["wall_s"], cores)
            steady["fixed_cost_s"] = probe["wall_s"]
            result_rows.append(steady)
        agreement = compare(read_rows(tmp / "local.csv"), read_rows(tmp / "ray.csv"))

    print_table(result_rows, agreement, cluster_info)
    plot(result_rows, args.results_dir / "ray_label.png")
    local_row, ray_row = result_rows[0], result_rows[1]
    common.write_result(args.results_dir, "ray_label", argv, {
        "what": "wall time from process start to exit, local path vs --ray on a local multi-node Ray cluster on the "
                "same cores; x real time = audio seconds (file headers) / wall; per core = / cores of the machine; "
                "core-hours for a million 4-minute tracks = 1e6 x 240 s / (x real time per core) / 3600",
        "bundle": bundles.describe(bundle), "files": len(files), "audio_seconds": round(audio_s, 1),
        "stride": args.stride, "cores": cores, "ray": ray.__version__, "cluster": cluster_info, "rows": result_rows,
        "ray_overhead_factor": round(ray_row["wall_s"] / local_row["wall_s"], 3),
        "ray_vs_local_rows": agreement,
    })
    ok = local["returncode"] == 0 and remote["returncode"] == 0 and agreement["same_order"]
    return 0 if ok else 1


def print_table(rows: list[dict], agreement: dict, cluster: dict) -> None:
    from rich.table import Table

    table = Table(title=f"labeling, local vs Ray on the same cores ({rows[0]['files']} files)")
    for col in ("pipeline", "files", "wall s", "files/s", "x real time", "files/s/core", "x RT/core",
                "core-h per 1M 4-min tracks"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["pipeline"], str(r["files"]), f"{r['wall_s']:.1f}", f"{r['files_per_s']:.2f}",
                      f"{r['x_realtime']:.0f}", f"{r['files_per_s_per_core']:.3f}", f"{r['x_realtime_per_core']:.1f}",
                      f"{r['core_hours_million_4min_tracks']:,}")
    common.console.print(table)
    common.console.print(f"cluster: {cluster}", highlight=False)
    common.console.print(f"Ray rows vs local rows: {agreement}", highlight=False)
    for r in rows:
        if r.get("returncode"):
            common.console.print(f"{r['pipeline']} exited {r['returncode']}: {r['stderr_tail']}", highlight=False)


def plot(rows: list[dict], path: Path) -> None:
    fig, ax = common.figure(1, 1, figsize=(8, 2.8))
    names = [r["pipeline"] for r in rows]
    ax.barh(names, [r["x_realtime_per_core"] for r in rows], color="tab:blue")
    ax.set(xlabel="x real time per CPU core (higher is better)", title="labeling: local vs Ray, same cores")
    ax.invert_yaxis()
    ax.grid(alpha=0.3, axis="x")
    common.save_figure(fig, path)
