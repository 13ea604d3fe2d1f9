"""What every benchmark shares: the record of machine and versions, percentiles, JSON, plots, RSS.

A benchmark number is only useful with the machine, the library versions, the provider and the
exact command that produced it, so ``write_result`` adds all of them to every JSON file.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import sys
import threading
import time
from importlib import metadata
from pathlib import Path

import numpy as np
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
console = Console(width=None if sys.stdout.isatty() else 160)  # wide tables in logs too


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="tiny inputs: checks that the benchmark runs")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR,
                        help=f"where the JSON and PNG go (default {RESULTS_DIR.relative_to(ROOT)})")


def machine() -> dict:
    """CPU model, cores and RAM from /proc (Linux), else what ``platform`` knows."""
    cpu = platform.processor() or platform.machine()
    ram_gb = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram_gb = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": os.cpu_count(), "cores_usable": affinity, "ram_gb": ram_gb,
            "platform": platform.platform(), "python": platform.python_version(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def versions() -> dict:
    out = {}
    for name in ("mer-live", "onnxruntime", "numpy", "torch", "soundfile", "soxr", "scikit-learn"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def command(name: str, argv: list[str]) -> str:
    return shlex.join(["mer-live", "bench", name, *argv])


def summarize(values_ms: list[float] | np.ndarray) -> dict:
    """p50/p95/p99/mean/max of a list of milliseconds (linear-interpolated percentiles)."""
    v = np.asarray(values_ms, dtype=np.float64)
    if v.size == 0:
        return {"n": 0}
    p50, p95, p99 = np.percentile(v, [50, 95, 99])
    return {"n": int(v.size), "p50": round(float(p50), 4), "p95": round(float(p95), 4), "p99": round(float(p99), 4),
            "mean": round(float(v.mean()), 4), "max": round(float(v.max()), 4)}


def write_result(results_dir: Path, name: str, argv: list[str], payload: dict) -> Path:
    """``<results_dir>/<name>.json`` with machine, versions and command around ``payload``."""
    results_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command(name, argv),
        "machine": machine(),
        "versions": versions(),
        **payload,
    }
    path = results_dir / f"{name}.json"
    path.write_text(json.dumps(record, indent=2, default=float) + "\n")
    console.print(f"wrote {path}", highlight=False)
    return path


def figure(*args, **kwargs):
    """A matplotlib figure on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    console.print(f"wrote {path}", highlight=False)
    return path


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# ---------------------------------------------------------------- memory of a process tree

def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def tree_rss_mb(pid: int) -> tuple[float, float]:
    """(sum, largest) resident memory in MB of ``pid`` and all its descendants."""
    tree, todo, total, largest = _children(), [pid], 0.0, 0.0
    while todo:
        p = todo.pop()
        rss = _rss_mb(p)
        total, largest = total + rss, max(largest, rss)
        todo.extend(tree.get(p, []))
    return total, largest


class RssSampler:
    """Samples a process tree's RSS every ``interval`` s in a thread: decoder workers count too,
    which ``ru_maxrss`` (the largest single process) would miss."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float]] = []  # (seconds since start, MB of the tree)
        self.peak_tree_mb = 0.0
        self.peak_process_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> RssSampler:
        self._start = time.perf_counter()
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            total, largest = tree_rss_mb(self.pid)
            if total:
                self.samples.append((time.perf_counter() - self._start, total))
                self.peak_tree_mb = max(self.peak_tree_mb, total)
                self.peak_process_mb = max(self.peak_process_mb, largest)
            self._stop.wait(self.interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------- generated music

def music(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """Arpeggiated chords with noise bursts, changing key and tempo every 20 s: real work for the
    front end and a model, nothing silent (silence would pause the live path)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    out = np.zeros(n, np.float32)
    t_note = np.arange(int(0.5 * sr)) / sr
    pos, note_i = 0, 0
    while pos < n:
        section = pos // (20 * sr)
        root = 48 + (section * 5) % 24
        beat = 0.2 + 0.1 * (section % 3)
        midi = root + (0, 4, 7, 12, 3, 10)[note_i % 6]
        freq = 440.0 * 2 ** ((midi - 69) / 12)
        tone = (np.sin(2 * np.pi * freq * t_note) + 0.3 * np.sin(4 * np.pi * freq * t_note)) * np.exp(-t_note / 0.15)
        tone += 0.05 * rng.standard_normal(len(t_note)) * np.exp(-t_note / 0.02)
        end = min(n, pos + len(tone))
        out[pos:end] += 0.3 * tone[: end - pos].astype(np.float32)
        pos += int(beat * sr)
        note_i += 1
    return np.clip(out, -1.0, 1.0)


def cached_music(folder: Path, seconds: float, sr: int = 44100, channels: int = 2, suffix: str = ".mp3") -> Path:
    """Generated music in ``folder``, written once per length and format and reused after."""
    path = folder / f"music-{seconds:g}s-{sr}-{channels}ch{suffix}"
    if not path.is_file():
        tmp = path.with_name(".tmp-" + path.name)
        os.replace(write_music(tmp, seconds, sr, channels), path)
    return path


def write_music(path: Path, seconds: float, sr: int, channels: int = 1, chunk_seconds: float = 60.0) -> Path:
    """Write generated music to ``path`` (format from the extension) in chunks: an hour never sits
    in memory."""
    import soundfile as sf

    subtype = "MPEG_LAYER_III" if path.suffix.lower() == ".mp3" else "PCM_16"
    kind = "MP3" if subtype == "MPEG_LAYER_III" else "WAV"
    with sf.SoundFile(str(path), "w", format=kind, samplerate=sr, channels=channels, subtype=subtype) as f:
        done, k = 0.0, 0
        while done < seconds:
            part = music(min(chunk_seconds, seconds - done), sr, seed=k)
            f.write(np.repeat(part[:, None], channels, axis=1) if channels > 1 else part)
            done += chunk_seconds
            k += 1
    return path
