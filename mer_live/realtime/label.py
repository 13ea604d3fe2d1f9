"""Batch labeling: song-level valence, arousal and quadrant for many files.

Worker processes stream each file (decode and resample in blocks, never the whole file) through
the front end (``frontend.onnx`` over the clip, not once per segment), keeping only its log-mel
frames, and run the backbone on slices of them; the main process runs the aggregator. With one
worker (or one file) all of it runs in the main process with the engine's graphs; on CUDA the
workers stop at the log-mel and the main process runs the backbone on the GPU.
Results are consumed in sorted input order, so the output is the same on every run. The output
file is rewritten atomically every few seconds, so a kill leaves the old file or a valid partial
one that ``--resume`` continues.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from fnmatch import fnmatch
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from mer_live.audio import AUDIO_EXTENSIONS, AudioError, audio_duration, iter_audio_blocks
from mer_live.bundle import Bundle, atomic_write_text
from mer_live.config import AudioConfig
from mer_live.errors import MerLiveError
from mer_live.realtime.engine import Engine, Graph, LogmelStream, open_session, segment_probs
from mer_live.realtime.pipeline import label
from mer_live.stats import QUADRANTS, quadrant, segment_statistics

COLUMNS = ["path", "duration_s", "segments", "valence", "arousal", "valence_label", "arousal_label",
           "quadrant", "quadrant_name", "error"]
SEGMENT_COLUMNS = ["segment_valence", "segment_arousal"]
FORMATS = ("csv", "jsonl", "json", "table")
SCALE = ("valence and arousal: song-level probability of high valence / high arousal (0-1); "
         "labels: high when >= 0.5; quadrant: Russell Q1 +V+A, Q2 -V+A, Q3 -V-A, Q4 +V-A")
SAVE_SECONDS = 2.0  # a killed run loses at most this much labeling (--save-every)


# ---------------------------------------------------------------- inputs

def collect(paths: list[str], recursive: bool = False, pattern: str | None = None) -> list[str]:
    """Audio files named or found in folders, sorted and unique; named files are kept as given.

    A folder contributes files with a known audio extension (matching ``pattern`` if given);
    ``recursive`` walks sub-folders without following symlinked folders, so a loop cannot hang.
    """
    found: set[str] = set()
    for given in paths:
        if not os.path.isdir(given):
            found.add(os.path.normpath(given))
            continue
        for root, dirs, files in os.walk(given, followlinks=False):
            dirs.sort()
            for name in files:
                if name.lower().endswith(AUDIO_EXTENSIONS) and (pattern is None or fnmatch(name, pattern)):
                    found.add(os.path.normpath(os.path.join(root, name)))
            if not recursive:
                break
    return sorted(found)


# ---------------------------------------------------------------- workers

@dataclass
class Decoded:
    """A worker's result: the clip's segment probabilities (or its log-mel), or why there are none."""

    path: str
    duration: float = 0.0
    probs: np.ndarray | None = None
    logmel: np.ndarray | None = None
    error: str = ""


_worker: dict = {}


def _init_worker(config_json: str, frontend_path: str, backbone_path: str | None) -> None:
    _worker["config"] = AudioConfig.from_json(config_json)
    _worker["frontend"] = Graph(open_session(frontend_path, "cpu", 1))
    _worker["backbone"] = Graph(open_session(backbone_path, "cpu", 1)) if backbone_path else None


def _decode(path: str) -> Decoded:
    """Stream one file through the front end (and the backbone); every failure becomes a one-line reason."""
    config: AudioConfig = _worker["config"]
    try:
        expected = round(audio_duration(path) * config.sample_rate)
        stream = LogmelStream(_worker["frontend"], config, expected)
        for block in iter_audio_blocks(path, config.sample_rate):
            stream.push(block)
        logmel = stream.finish()
        duration = stream.n_samples / config.sample_rate
        if _worker["backbone"] is None:
            return Decoded(path, duration, logmel=logmel)
        return Decoded(path, duration, probs=segment_probs(_worker["backbone"], config, logmel))
    except AudioError as exc:
        return Decoded(path, error=exc.reason)
    except MemoryError:
        return Decoded(path, error="out of memory while decoding (file too long?)")
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch
        return Decoded(path, error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


def decoded(paths: list[str], engine: Engine, workers: int) -> Iterator[Decoded]:
    """Results in input order; at most ~2 per worker in flight, so memory stays bounded.

    Worker processes run the graphs on the CPU (the backbone only if the engine does); in the main
    process they are the engine's own.
    """
    if workers <= 1 or len(paths) <= 1:
        _worker.update(config=engine.config, frontend=engine.frontend, backbone=engine.backbone)
        for path in paths:
            yield _decode(path)
        return
    backbone = str(engine.bundle.file("backbone.onnx")) if engine.provider == "CPU" else None
    args = (engine.config.to_json(), str(engine.bundle.file("frontend.onnx")), backbone)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                             initargs=args) as pool:
        pending: deque[Future] = deque()
        todo = iter(paths)
        try:
            for path in todo:
                pending.append(pool.submit(_decode, path))
                if len(pending) >= 2 * workers:
                    break
            while pending:
                result = pending.popleft().result()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(pool.submit(_decode, nxt))
                yield result
        finally:
            for future in pending:
                future.cancel()


# ---------------------------------------------------------------- rows

def label_row(engine: Engine, item: Decoded, segments: bool) -> dict:
    row: dict = dict.fromkeys(COLUMNS, None)
    row.update(path=item.path, error=item.error or "")
    if item.error:
        return row
    probs = item.probs if item.probs is not None else engine.clip_probs_from_logmel(item.logmel)
    song = engine.song_probs(segment_statistics(probs, engine.bundle.theta))[0]
    tasks = engine.bundle.tasks
    v, a = float(song[tasks.index("valence")]), float(song[tasks.index("arousal")])
    q = quadrant(v >= 0.5, a >= 0.5)
    row.update(duration_s=round(item.duration, 3), segments=len(probs), valence=round(v, 6), arousal=round(a, 6),
               valence_label=label(v), arousal_label=label(a), quadrant=q, quadrant_name=QUADRANTS[q])
    if segments:
        row["segment_valence"] = [round(float(p), 6) for p in probs[:, tasks.index("valence")]]
        row["segment_arousal"] = [round(float(p), 6) for p in probs[:, tasks.index("arousal")]]
    return row


def format_rows(rows: list[dict], fmt: str, segments: bool, model: str) -> str:
    columns = COLUMNS + (SEGMENT_COLUMNS if segments else [])
    rows = [{c: row.get(c) for c in columns} for row in rows]
    if fmt == "jsonl":
        return "".join(json.dumps(row) + "\n" for row in rows)
    if fmt == "json":
        return json.dumps({"scale": SCALE, "model": model, "files": rows}, indent=2) + "\n"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: " ".join(map(str, v)) if isinstance(v, list) else ("" if v is None else v)
                         for c, v in row.items()})
    return buffer.getvalue()


def read_rows(path: str, fmt: str) -> list[dict]:
    """Rows of an earlier output (for --resume)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        if fmt == "jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        if fmt == "json":
            return list(json.loads(text)["files"])
        return list(csv.DictReader(io.StringIO(text)))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise MerLiveError(f"--resume: cannot read {path} as {fmt} ({exc}); remove it or drop --resume") from None


def print_table(rows: list[dict], console) -> None:
    from rich.table import Table

    table = Table(caption=SCALE, caption_justify="left")
    for name in ("path", "duration_s", "valence", "arousal", "quadrant", "error"):
        table.add_column(name, overflow="fold")
    for row in rows:
        if row["error"]:
            table.add_row(row["path"], "", "", "", "", f"[red]{row['error']}[/red]")
        else:
            table.add_row(row["path"], f"{row['duration_s']:.1f}", f"{row['valence']:.2f} {row['valence_label']}",
                          f"{row['arousal']:.2f} {row['arousal_label']}",
                          f"{row['quadrant']} {row['quadrant_name']}", "")
    console.print(table)


# ---------------------------------------------------------------- the command

def output_format(fmt: str | None, out: str | None) -> str:
    if fmt is None:
        if out is None:
            return "table" if sys.stdout.isatty() else "csv"
        suffix = Path(out).suffix.lower().lstrip(".")
        return suffix if suffix in ("csv", "jsonl", "json") else "csv"
    if fmt == "table" and out is not None:
        raise MerLiveError("--format table prints to the terminal; use csv, jsonl or json with --out")
    return fmt


def check_output(out: str) -> None:
    """Refuse an --out whose folder is missing or not writable before any work is done."""
    folder = Path(out).parent
    if os.path.isdir(out):
        raise MerLiveError(f"--out {out}: is a folder; give a file name such as {Path(out) / 'labels.csv'}")
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise MerLiveError(f"--out {out}: the folder {folder} {what}; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MerLiveError(f"--out {out}: cannot write in the folder {folder} (read-only or no permission)")


def label_files(bundle: Bundle, paths: list[str], *, recursive: bool = False, pattern: str | None = None,
                out: str | None = None, fmt: str | None = None, segments: bool = False, workers: int | None = None,
                strict: bool = False, resume: bool = False, provider: str = "auto", aggregator: str = "onnx",
                save_every: float = SAVE_SECONDS, stdout=None, stderr=None) -> int:
    """Label every file; write the output; return 0, or 1 when any file failed."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    stdout = stdout or sys.stdout
    err = Console(file=stderr or sys.stderr, soft_wrap=True)  # soft wrap: each message stays one line
    fmt = output_format(fmt, out)
    if resume and out is None:
        raise MerLiveError("--resume needs --out FILE (the earlier output to continue)")
    if out is not None:
        check_output(out)
    files = collect(paths, recursive, pattern)
    if not files:
        raise MerLiveError(f"no audio files found in {', '.join(paths)} (extensions: {' '.join(AUDIO_EXTENSIONS)})")
    kept: dict[str, dict] = {}
    if resume and out is not None and os.path.exists(out):
        kept = {row["path"]: row for row in read_rows(out, fmt) if not row.get("error")}
    todo = [f for f in files if f not in kept]
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    engine = Engine(bundle, provider=provider, aggregator=aggregator)
    model = str(bundle.path)

    rows = dict(kept)
    failed: list[dict] = []
    audio_seconds = 0.0
    processed = 0
    last_save = time.perf_counter()

    def save() -> None:
        if out is None:
            return
        try:
            atomic_write_text(out, format_rows([rows[p] for p in sorted(rows)], fmt, segments, model))
        except OSError as exc:
            raise MerLiveError(f"--out {out}: cannot write it ({exc.strerror or exc})") from None

    begin = time.perf_counter()
    if kept:
        err.print(f"mer-live: resuming: {len(kept)} files already labeled in {out}, {len(todo)} to go")
    progress = Progress(TextColumn("labeling"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        TextColumn("{task.fields[name]}"), console=err, disable=not err.is_terminal,
                        transient=True)
    with progress:
        task = progress.add_task("label", total=len(todo), name="")
        for item in decoded(todo, engine, workers):
            row = label_row(engine, item, segments)
            rows[item.path] = row
            processed += 1
            if row["error"]:
                failed.append(row)
            else:
                audio_seconds += item.duration
            progress.update(task, advance=1, name=os.path.basename(item.path)[-40:])
            if strict and row["error"]:
                break
            if time.perf_counter() - last_save >= save_every:
                save()
                last_save = time.perf_counter()
    save()
    ordered = [rows[p] for p in sorted(rows)]
    if out is None:
        if fmt == "table":
            print_table(ordered, Console(file=stdout))
        else:
            stdout.write(format_rows(ordered, fmt, segments, model))
            stdout.flush()
    report(err, processed, len(todo), failed, audio_seconds, time.perf_counter() - begin, engine.provider, out,
           strict)
    return 1 if failed else 0


def report(err, processed: int, total: int, failed: list[dict], audio_seconds: float, elapsed: float,
           provider: str, out: str | None, strict: bool) -> None:
    speed = f", {audio_seconds / elapsed:.0f}x real time" if elapsed > 0 and audio_seconds else ""
    err.print(f"mer-live: labeled {processed - len(failed)} of {total} files ({audio_seconds / 60:.1f} min of "
              f"audio in {elapsed:.1f} s{speed}, {provider})" + (f" -> {out}" if out else ""),
              highlight=False, markup=False)
    for row in failed[:10]:
        err.print(f"  failed: {row['path']}: {row['error']}", highlight=False, markup=False)
    if len(failed) > 10:
        err.print(f"  ... and {len(failed) - 10} more failures (see the error column)")
    if strict and failed:
        err.print("mer-live: stopped at the first failure (--strict)")
