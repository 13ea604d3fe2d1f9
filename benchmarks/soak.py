"""Soak: an hour of audio through the live path (`mer-live --file X --fast --jsonl`), memory over time.

The real command runs as a subprocess on a generated MP3 (44.1 kHz stereo, so decoding,
resampling and downmixing run too); a thread samples its resident memory while another reads
its JSON lines to know how much audio has gone through. Memory should level off after the first
song horizon: the report gives start, end and peak RSS and the slope after the first tenth.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks import bundles, common

GROWTH_LIMIT_MB = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_common_arguments(parser)
    bundles.add_bundle_arguments(parser)
    parser.add_argument("--minutes", type=float, help="audio to stream (default 60; quick: 2)")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between memory samples (quick: 0.02)")


class Progress:
    """Reads the JSON lines: the audio time of the latest update and the update count."""

    def __init__(self, stream) -> None:
        self.audio_t, self.updates = 0.0, 0
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            try:
                self.audio_t = float(json.loads(line)["t"])
                self.updates += 1
            except (ValueError, KeyError):
                continue

    def join(self) -> None:
        self._thread.join()


def soak(bundle, path: Path, interval: float) -> tuple[dict, list[tuple[float, float, float]]]:
    cmd = [sys.executable, "-m", "mer_live", "--file", str(path), "--fast", "--jsonl", "--model", str(bundle.path)]
    samples: list[tuple[float, float, float]] = []  # (wall s, audio s, RSS MB)
    begin = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    progress = Progress(proc.stdout)
    while proc.poll() is None:
        rss, _ = common.tree_rss_mb(proc.pid)
        if rss and progress.updates:
            samples.append((time.perf_counter() - begin, progress.audio_t, rss))
        time.sleep(interval)
    progress.join()
    err = proc.stderr.read()
    wall = time.perf_counter() - begin
    return {"returncode": proc.returncode, "wall_s": round(wall, 2), "updates": progress.updates,
            "audio_s": progress.audio_t, "stderr_tail": err.strip().splitlines()[-3:]}, samples


def analyse(samples: list[tuple[float, float, float]], audio_s: float) -> dict:
    """Start (first tenth), end, peak and the slope of RSS against audio time after the first tenth."""
    if len(samples) < 3:
        return {"samples": len(samples)}
    arr = np.array(samples)
    settled = arr[arr[:, 1] >= 0.1 * audio_s]
    settled = settled if len(settled) >= 3 else arr
    slope = np.polyfit(settled[:, 1] / 3600, settled[:, 2], 1)[0] if np.ptp(settled[:, 1]) > 0 else 0.0
    growth = float(settled[-1, 2] - settled[0, 2])
    return {"samples": len(samples), "start_mb": round(float(settled[0, 2]), 1), "end_mb": round(float(arr[-1, 2]), 1),
            "peak_mb": round(float(arr[:, 2].max()), 1), "first_sample_mb": round(float(arr[0, 2]), 1),
            "growth_after_first_tenth_mb": round(growth, 1), "slope_mb_per_audio_hour": round(float(slope), 2),
            "growth_limit_mb": GROWTH_LIMIT_MB, "met": growth <= GROWTH_LIMIT_MB}


def plot(samples: list[tuple[float, float, float]], path: Path) -> None:
    arr = np.array(samples)
    fig, ax = common.figure(figsize=(8, 3.6))
    ax.plot(arr[:, 1] / 60, arr[:, 2], lw=1)
    ax.set(xlabel="audio streamed (min)", ylabel="RSS (MB)", title="live path memory over time (--fast)")
    ax.set_ylim(0, max(arr[:, 2]) * 1.15)
    ax.grid(alpha=0.3)
    common.save_figure(fig, path)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    minutes = args.minutes or (2.0 if args.quick else 60.0)
    interval = 0.02 if args.quick else args.interval
    with bundles.workdir(args.cache) as work:
        bundle = bundles.one(args, work)
        common.console.print(f"generating {minutes:g} min of 44.1 kHz stereo MP3", highlight=False)
        path = common.cached_music(work, minutes * 60)
        common.console.print(f"streaming it with --fast through {bundles.describe(bundle)}", highlight=False)
        result, samples = soak(bundle, path, interval)
    memory = analyse(samples, result["audio_s"])
    common.console.print(
        f"{result['audio_s'] / 60:.1f} min of audio in {result['wall_s']:.0f} s ({result['updates']} updates, exit "
        f"{result['returncode']}); RSS start {memory.get('start_mb')} MB, end {memory.get('end_mb')} MB, peak "
        f"{memory.get('peak_mb')} MB, growth {memory.get('growth_after_first_tenth_mb')} MB, slope "
        f"{memory.get('slope_mb_per_audio_hour')} MB per audio hour", highlight=False)
    if result["returncode"]:
        common.console.print(f"mer-live failed: {result['stderr_tail']}", highlight=False)
    if samples:
        plot(samples, args.results_dir / "soak.png")
    common.write_result(args.results_dir, "soak", argv, {
        "what": "`mer-live --file MP3 --fast --jsonl` as a subprocess; RSS of its process tree sampled every "
                f"{interval:g} s against the audio time of its latest update",
        "bundle": bundles.describe(bundle), "minutes": minutes, **result, "memory": memory,
        "series": [[round(w, 2), round(a, 2), round(r, 1)] for w, a, r in samples[:: max(1, len(samples) // 400)]],
    })
    return 0 if result["returncode"] == 0 else 1
