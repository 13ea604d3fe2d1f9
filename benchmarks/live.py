"""End-to-end latency of the live path: a file played at real-time pace, one update per hop.

The loop is the one ``mer-live --file`` runs (``monitor.run``: source -> stream -> sink); the
sink here writes each update as a JSON line (as ``--jsonl`` does) and notes the clock. Latency
is measured from the arrival of the block that holds the window's last sample to the update's
line being written. The paced source releases a block when its last sample is due, so a
second figure, from the moment the window's last sample was due, also holds the block's wait
(at most one block, 50 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

from benchmarks import bundles, common
from mer_live.api import Model
from mer_live.live.monitor import run as monitor_run
from mer_live.live.sources import FILE_BLOCK_SECONDS, FileSource


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_common_arguments(parser)
    bundles.add_bundle_arguments(parser)
    parser.add_argument("--seconds", type=float, help="audio to stream, at real-time pace (default 300; quick: 10)")
    parser.add_argument("--segment-seconds", type=float, default=3.0, help="segment length of a stand-in bundle")
    parser.add_argument("--mode", choices=("incremental", "full"), default="incremental")
    parser.add_argument("--threads", type=int, help="ONNX Runtime threads (default: the runtime's choice)")


class Source:
    """Wraps a source and remembers when its latest block arrived."""

    def __init__(self, source) -> None:
        self.source, self.overflows, self.drops = source, 0, 0
        self.first_arrival: float | None = None
        self.first_samples = 0
        self.last_arrival = 0.0

    def __iter__(self):
        for block in self.source:
            if self.first_arrival is None:
                self.first_arrival, self.first_samples = block.arrival, len(block.samples)
            self.last_arrival = block.arrival
            yield block


class Sink:
    """Writes updates as JSON lines (like ``--jsonl``) and records when each one went out."""

    def __init__(self, source: Source, rate: int, stream) -> None:
        self.source, self.rate, self.stream = source, rate, stream
        self.from_arrival: list[float] = []
        self.from_due: list[float] = []
        self.compute: list[float] = []
        self.wall: list[float] = []

    def updates(self, updates, stream) -> None:
        for update in updates:
            self.stream.write(json.dumps(update.to_json()) + "\n")
        self.stream.flush()
        now = time.perf_counter()
        start = self.source.first_arrival - self.source.first_samples / self.rate  # when sample 0 was due
        for update in updates:
            self.from_arrival.append((now - self.source.last_arrival) * 1e3)
            self.from_due.append((now - (start + update.t)) * 1e3)
            self.compute.append(update.compute_ms)
            self.wall.append(now - start)

    def song_ended(self, song) -> None:
        pass  # one file, one song: the measurement is per segment

    def tick(self, stream) -> None:
        pass


def print_table(result: dict) -> None:
    from rich.table import Table

    table = Table(title=f"live end-to-end latency (ms), {result['audio_seconds']:.0f} s at real-time pace")
    for col in ("measured from", "n", "p50", "p95", "p99", "max"):
        table.add_column(col, justify="right")
    for key, label in (("from_arrival_ms", "last sample's block arrives"), ("from_due_ms", "last sample is due"),
                       ("compute_ms", "pipeline compute only")):
        s = result[key]
        table.add_row(label, str(s["n"]), common.fmt(s["p50"], 2), common.fmt(s["p95"], 2), common.fmt(s["p99"], 2),
                      common.fmt(s["max"], 2))
    common.console.print(table)


def plot(sink: Sink, path: Path) -> None:
    fig, (left, right) = common.figure(1, 2, figsize=(11, 3.8))
    left.plot(sink.wall, sink.from_arrival, ".", ms=3, label="from block arrival")
    left.plot(sink.wall, sink.from_due, ".", ms=2, alpha=0.5, label="from sample due")
    left.set(xlabel="wall time (s)", ylabel="latency (ms)", title="live end-to-end latency per update")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    right.hist(sink.from_arrival, bins=40)
    right.set(xlabel="latency from block arrival (ms)", ylabel="updates", title="distribution")
    common.save_figure(fig, path)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    seconds = args.seconds or (10.0 if args.quick else 300.0)
    with bundles.workdir(args.cache) as work:
        bundle = bundles.one(args, work, args.segment_seconds)
        rate = bundle.audio.sample_rate
        wav = common.cached_music(work, seconds, suffix=".wav")
        model = Model(bundle, provider="cpu", threads=args.threads)
        model.warm_up()
        stream = model.stream(silence_reset=False, mode=args.mode)
        source = Source(FileSource(wav, rate, fast=False, stop=threading.Event()))
        common.console.print(f"streaming {seconds:g} s of 44.1 kHz stereo WAV at real-time pace through "
                             f"{bundles.describe(bundle)} ({bundle.path})", highlight=False)
        with open(os.devnull, "w") as devnull:
            sink = Sink(source, rate, devnull)
            begin = time.perf_counter()
            monitor_run(stream, source, sink, threading.Event(), duration=None)
            wall = time.perf_counter() - begin
    result = {
        "audio_seconds": seconds, "wall_seconds": round(wall, 3), "updates": len(sink.from_arrival),
        "from_arrival_ms": common.summarize(sink.from_arrival), "from_due_ms": common.summarize(sink.from_due),
        "compute_ms": common.summarize(sink.compute),
    }
    print_table(result)
    plot(sink, args.results_dir / "live.png")
    common.write_result(args.results_dir, "live", argv, {
        "what": "file source at real-time pace (44.1 kHz stereo WAV, resampled and downmixed live) -> pipeline -> "
                "JSON line; latency from the arrival of the block holding a window's last sample to its line "
                f"being written; 'from due' adds the block's wait (blocks of {FILE_BLOCK_SECONDS * 1e3:g} ms) "
                "and the source thread's scheduling jitter",
        "bundle": bundles.describe(bundle), "bundle_path": str(bundle.path),
        "segment_seconds": bundle.audio.segment_seconds,
        "algorithmic_latency_s": round(bundle.audio.effective_segment_seconds, 4), "mode": args.mode,
        "provider": stream.provider, "threads": args.threads, **result,
    })
    return 0
