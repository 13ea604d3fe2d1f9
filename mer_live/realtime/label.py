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

import contextlib
import csv
import io
import json
import os
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from fnmatch import fnmatch
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from mer_live.atomic import atomic_write_text
from mer_live.audio import (
    AUDIO_EXTENSIONS,
    AudioError,
    audio_duration,
    decoder_messages,
    describe_messages,
    iter_audio_blocks,
)
from mer_live.bundle import Bundle
from mer_live.config import AudioConfig
from mer_live.errors import MerLiveError
from mer_live.realtime.engine import Engine, Graph, LogmelStream, open_session, segment_probs
from mer_live.realtime.pipeline import label
from mer_live.stats import QUADRANTS, quadrant

COLUMNS = ["path", "duration_s", "segments", "valence", "arousal", "valence_label", "arousal_label",
           "quadrant", "quadrant_name", "error"]
SEGMENT_COLUMNS = ["segment_valence", "segment_arousal"]
FORMATS = ("csv", "jsonl", "json", "table")
SCALE = ("valence and arousal: song-level probability of high valence / high arousal (0-1); "
         "labels: high when >= 0.5; quadrant: Russell Q1 +V+A, Q2 -V+A, Q3 -V-A, Q4 +V-A")
SAVE_SECONDS = 2.0  # a killed run loses at most this much labeling (--save-every)
PROGRESS_SECONDS = 10.0  # a plain progress line this often when stderr is not a terminal (--progress-every)
OUTPUT_SUFFIXES = {"csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl", "json": "json"}


# ---------------------------------------------------------------- inputs

@dataclass
class Found:
    """What a scan found: files to label (the path as the user gave it, keyed by the file's real path,
    so one file reached by two spellings is labeled once), and what it passed over."""

    files: dict[str, str] = field(default_factory=dict)  # real path -> path as given
    skipped: Counter = field(default_factory=Counter)  # extension -> files in folders that are not audio
    hidden: int = 0  # dot-files and files in dot-folders passed over

    def add(self, path: str) -> None:
        self.files.setdefault(real_path(path), path)

    @property
    def paths(self) -> list[str]:
        return sorted(self.files.values())


def real_path(path: str) -> str:
    """The key a file is known by: absolute, symlinks resolved, so `a.mp3`, `./a.mp3` and `/x/a.mp3` agree."""
    return os.path.realpath(path)


def collect(paths: list[str], recursive: bool = False, pattern: str | None = None, hidden: bool = False) -> Found:
    """Audio files named or found in folders; named files are kept as given.

    A folder contributes files with a known audio extension (and matching ``pattern``, both without
    regard to case); ``recursive`` walks sub-folders without following symlinked folders, so a loop
    cannot hang. Dot-files and dot-folders (macOS `._song.mp3` resource forks, `.git`) are passed
    over unless ``hidden``.
    """
    found = Found()
    for given in paths:
        if not os.path.isdir(given):
            found.add(os.path.normpath(given))
            continue
        for root, dirs, files in os.walk(given, followlinks=False):
            if not hidden:
                found.hidden += sum(1 for d in dirs if d.startswith("."))
                dirs[:] = [d for d in dirs if not d.startswith(".")]
            dirs.sort()
            for name in files:
                _consider(found, root, name, pattern, hidden)
            if not recursive:
                break
    return found


def _consider(found: Found, root: str, name: str, pattern: str | None, hidden: bool) -> None:
    if name.startswith(".") and not hidden:
        found.hidden += 1
    elif not name.lower().endswith(AUDIO_EXTENSIONS):
        found.skipped[os.path.splitext(name)[1].lower() or "(no extension)"] += 1
    elif pattern is None or fnmatch(name.lower(), pattern.lower()):
        found.add(os.path.normpath(os.path.join(root, name)))


# ---------------------------------------------------------------- workers

@dataclass
class Decoded:
    """A worker's result: the clip's segment probabilities (or its log-mel), or why there are none."""

    path: str
    duration: float = 0.0
    probs: np.ndarray | None = None
    logmel: np.ndarray | None = None
    error: str = ""
    messages: list[str] = field(default_factory=list)  # what the C decoders printed about this file


_worker: dict = {}


def _init_worker(config_json: str, frontend_path: str, backbone_path: str | None, parent: int, batch: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    _die_with_parent(parent)
    _worker["config"] = AudioConfig.from_json(config_json)
    _worker["frontend"] = Graph(open_session(frontend_path, "cpu", 1))
    _worker["backbone"] = Graph(open_session(backbone_path, "cpu", 1)) if backbone_path else None
    _worker["batch"] = batch


def _die_with_parent(parent: int) -> None:
    """A worker whose parent is gone (killed, even with SIGKILL) exits at once instead of living on:
    the kernel's parent-death signal on Linux, and a watch on the parent everywhere."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _decode(path: str) -> Decoded:
    """``_decode_file`` with what the decoders print to stderr attached to the file instead."""
    with decoder_messages() as messages:
        item = _decode_file(path)
    item.messages = messages
    return item


def _decode_file(path: str) -> Decoded:
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
        return Decoded(path, duration, probs=segment_probs(_worker["backbone"], config, logmel, _worker["batch"]))
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
        _worker.update(config=engine.config, frontend=engine.frontend, backbone=engine.backbone,
                       batch=engine.clip_batch)
        for path in paths:
            yield _decode(path)
        return
    backbone = str(engine.bundle.file("backbone.onnx")) if engine.provider == "CPU" else None
    args = (engine.config.to_json(), str(engine.bundle.file("frontend.onnx")), backbone, os.getpid(),
            engine.clip_batch)
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker, initargs=args)
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
        if pending:  # stopped early (Ctrl-C, SIGTERM, --strict): do not wait for files in flight
            _terminate(pool)
        pool.shutdown(wait=True, cancel_futures=True)


def _terminate(pool: ProcessPoolExecutor) -> None:
    """End the workers now; ``shutdown`` alone would wait for every file already being decoded."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            proc.terminate()


# ---------------------------------------------------------------- rows

def label_row(engine: Engine, item: Decoded, segments: bool) -> dict:
    row: dict = dict.fromkeys(COLUMNS, None)
    row.update(path=item.path, error=item.error or "")
    if item.error:
        return row
    probs = item.probs if item.probs is not None else engine.clip_probs_from_logmel(item.logmel)
    song = engine.song_probs(engine.bundle.song_vector(probs))[0]
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
    """Rows of an earlier mer-live output (for --resume); anything else is refused, never overwritten."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        if fmt == "jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        elif fmt == "json":
            rows = list(json.loads(text)["files"])
        else:
            reader = csv.DictReader(io.StringIO(text))
            rows = list(reader)
            _check_columns(path, list(reader.fieldnames or []))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise MerLiveError(f"--resume: cannot read {path} as {fmt} ({exc}); remove it or drop --resume") from None
    for row in rows:
        if not isinstance(row, dict):
            raise MerLiveError(f"--resume: {path} is not a mer-live output (a row is not an object); "
                               "give another --out")
        _check_columns(path, list(row))
    return rows


def _check_columns(path: str, columns: list[str]) -> None:
    known = set(COLUMNS + SEGMENT_COLUMNS)
    if "path" not in columns or "error" not in columns or not set(columns) <= known:
        shown = ", ".join(columns[:6]) + (", ..." if len(columns) > 6 else "")
        raise MerLiveError(f"--resume: {path} is not a mer-live output (its columns are {shown or 'none'}); "
                           "give another --out")


def resumed_rows(out: str, fmt: str, files: list[str]) -> dict[str, dict]:
    """The earlier output's good rows, keyed by real path (the first row of a file wins). A relative
    path is read from the current folder, else from the output's folder, else (a run started in
    another folder) it is the one file to label whose path ends with it."""
    by_name: dict[str, list[str]] = {}
    for key in files:
        by_name.setdefault(os.path.basename(key), []).append(key)
    kept: dict[str, dict] = {}
    for row in read_rows(out, fmt):
        if not row.get("error"):
            kept.setdefault(_row_key(str(row["path"]), out, by_name), row)
    return kept


def _row_key(given: str, out: str, by_name: dict[str, list[str]]) -> str:
    key = real_path(given)
    if os.path.isabs(given) or os.path.exists(key):
        return key
    beside = real_path(os.path.join(os.path.dirname(os.path.abspath(out)), given))
    if os.path.exists(beside):
        return beside
    tail = os.sep + os.path.normpath(given)
    matches = [k for k in by_name.get(os.path.basename(given), []) if k.endswith(tail)]
    return matches[0] if len(matches) == 1 else key


def print_table(rows: list[dict], console) -> None:
    """Paths relative to their common folder, shortened in the middle to fit; nothing read as markup."""
    from rich.table import Table
    from rich.text import Text

    root = common_root([r["path"] for r in rows])
    caption = SCALE + (f"; paths relative to {root}" if root else "")
    table = Table(caption=Text(caption), caption_justify="left")
    table.add_column("path", no_wrap=True, overflow="ellipsis")
    for name in ("duration_s", "valence", "arousal", "quadrant", "error"):
        table.add_column(name, overflow="fold")
    width = max(20, console.width - (60 if any(r["error"] for r in rows) else 50))
    for row in rows:
        path = Text(shorten(os.path.relpath(row["path"], root) if root else row["path"], width))
        if row["error"]:
            table.add_row(path, "", "", "", "", Text(row["error"], style="red"))
        else:
            table.add_row(path, f"{row['duration_s']:.1f}", f"{row['valence']:.2f} {row['valence_label']}",
                          f"{row['arousal']:.2f} {row['arousal_label']}",
                          f"{row['quadrant']} {row['quadrant_name']}", "")
    console.print(table)


def common_root(paths: list[str]) -> str:
    """The folder all paths share ('' when none, or for a single file named alone)."""
    if len(paths) < 2:
        return ""
    try:
        root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
    except ValueError:  # different drives
        return ""
    return "" if root in ("", os.sep) else root


def shorten(text: str, width: int) -> str:
    """Cut the middle out of a long path: its start (the folder) and end (the file name) both tell."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


# ---------------------------------------------------------------- the command

def output_format(fmt: str | None, out: str | None) -> str:
    if fmt is None:
        if out is None:
            return "table" if sys.stdout.isatty() else "csv"
        suffix = Path(out).suffix.lower().lstrip(".")
        if suffix not in OUTPUT_SUFFIXES:
            raise MerLiveError(f"--out {out}: cannot tell the format from '{Path(out).suffix or 'no extension'}'; "
                               "name it .csv, .jsonl or .json, or give --format")
        return OUTPUT_SUFFIXES[suffix]
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


class PlainProgress:
    """Progress for logs (nohup, CI, cron): a line every ``every`` seconds, done/total, files/s, ETA."""

    def __init__(self, err, total: int, every: float) -> None:
        self.err, self.total, self.every = err, total, every
        self.begin = self.last = time.perf_counter()

    def advance(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.last < self.every or done >= self.total:
            return
        self.last = now
        rate = done / (now - self.begin)
        eta = f", ETA {_clock((self.total - done) / rate)}" if rate > 0 else ""
        self.err.print(f"mer-live: labeling {done}/{self.total} files, {rate:.1f} files/s{eta}",
                       markup=False, highlight=False)


def _clock(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


@dataclass
class Tally:
    """What the run did, for the summary."""

    processed: int = 0
    failed: list[dict] = field(default_factory=list)
    warned: list[tuple[str, list[str]]] = field(default_factory=list)  # (path, decoder messages)
    audio_seconds: float = 0.0
    interrupted: bool = False


def label_files(bundle: Bundle, paths: list[str], *, recursive: bool = False, pattern: str | None = None,
                out: str | None = None, fmt: str | None = None, segments: bool = False, workers: int | None = None,
                strict: bool = False, resume: bool = False, provider: str = "auto", aggregator: str = "onnx",
                save_every: float = SAVE_SECONDS, hidden: bool = False, progress_every: float = PROGRESS_SECONDS,
                stride: int = 1, stdout=None, stderr=None) -> int:
    """Label every file; write the output; return 0, 1 when any file failed, 130 when interrupted
    (Ctrl-C or SIGTERM: the rows labeled so far are written first)."""
    from rich.console import Console

    stdout = stdout or sys.stdout
    with contextlib.ExitStack() as stack:
        # soft wrap: each message stays one line
        err = Console(file=stderr or stack.enter_context(_own_stderr()), soft_wrap=True)
        return _label(bundle, paths, err, stdout, recursive=recursive, pattern=pattern, out=out, fmt=fmt,
                      segments=segments, workers=workers, strict=strict, resume=resume, provider=provider,
                      aggregator=aggregator, save_every=save_every, hidden=hidden, progress_every=progress_every,
                      stride=stride)


@contextlib.contextmanager
def _own_stderr():
    """A copy of the stderr descriptor for our own messages: while a file decodes, descriptor 2 collects
    what the C decoders print (``decoder_messages``), and the progress bar must not land there."""
    try:
        fd = os.dup(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):  # no descriptor (a test's capture)
        yield sys.stderr
        return
    with open(fd, "w", encoding=sys.stderr.encoding or "utf-8", errors="replace", buffering=1) as stream:
        yield stream


def _label(bundle: Bundle, paths: list[str], err, stdout, *, recursive: bool, pattern: str | None, out: str | None,
           fmt: str | None, segments: bool, workers: int | None, strict: bool, resume: bool, provider: str,
           aggregator: str, save_every: float, hidden: bool, progress_every: float, stride: int = 1) -> int:
    from rich.console import Console

    if resume and out is None:
        raise MerLiveError("--resume needs --out FILE (the earlier output to continue)")
    if out is not None:
        check_output(out)
    fmt = output_format(fmt, out)
    found = collect(paths, recursive, pattern, hidden)
    if not found.files:
        raise MerLiveError(f"no audio files found in {', '.join(paths)} (extensions: {' '.join(AUDIO_EXTENSIONS)})"
                           + _passed_over(found))
    kept = resumed_rows(out, fmt, list(found.files)) if resume and out is not None and os.path.exists(out) else {}
    todo = [(key, path) for key, path in sorted(found.files.items(), key=lambda kv: kv[1]) if key not in kept]
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    engine = Engine(bundle, provider=provider, aggregator=aggregator, stride=stride)
    model = str(bundle.path)
    rows = dict(kept)  # real path -> row: one row per file, whatever the spelling

    def ordered() -> list[dict]:
        return sorted(rows.values(), key=lambda r: str(r["path"]))

    def save() -> None:
        if out is None:
            return
        try:
            atomic_write_text(out, format_rows(ordered(), fmt, segments, model))
        except OSError as exc:
            raise MerLiveError(f"--out {out}: cannot write it ({exc.strerror or exc})") from None

    begin = time.perf_counter()
    if kept:
        err.print(f"mer-live: resuming: {len(kept)} files already labeled in {out}, {len(todo)} to go",
                  markup=False, highlight=False)
    tally = _run(engine, todo, rows, workers, segments, strict, save, save_every, err, progress_every)
    save()
    if out is None:  # an interrupted run prints the rows it has: nothing labeled is lost
        if fmt == "table":
            print_table(ordered(), Console(file=stdout))
        else:
            stdout.write(format_rows(ordered(), fmt, segments, model))
            stdout.flush()
    report(err, tally, len(todo), time.perf_counter() - begin, engine.provider, out, strict, found)
    if tally.interrupted:
        return 130
    return 1 if tally.failed else 0


def _run(engine: Engine, todo: list[tuple[str, str]], rows: dict[str, dict], workers: int, segments: bool,
         strict: bool, save, save_every: float, err, progress_every: float) -> Tally:
    """Label ``todo`` into ``rows``, saving every ``save_every`` s; Ctrl-C/SIGTERM ends it with a tally."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    tally = Tally()
    last_save = time.perf_counter()
    plain = None if err.is_terminal else PlainProgress(err, len(todo), progress_every)
    progress = Progress(TextColumn("labeling"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        TextColumn("{task.fields[name]}", markup=False), console=err, disable=plain is not None,
                        transient=True)
    try:
        with progress, contextlib.closing(decoded([p for _, p in todo], engine, workers)) as results:
            task = progress.add_task("label", total=len(todo), name="")
            for (key, _), item in zip(todo, results):
                row = label_row(engine, item, segments)
                rows[key] = row
                tally.processed += 1
                if item.messages:
                    tally.warned.append((item.path, item.messages))
                if row["error"]:
                    tally.failed.append(row)
                else:
                    tally.audio_seconds += item.duration
                progress.update(task, advance=1, name=os.path.basename(item.path)[-40:])
                if plain is not None:
                    plain.advance(tally.processed)
                if strict and row["error"]:
                    break
                if time.perf_counter() - last_save >= save_every:
                    save()
                    last_save = time.perf_counter()
    except KeyboardInterrupt:
        tally.interrupted = True
    return tally


def _passed_over(found: Found) -> str:
    parts = []
    if found.skipped:
        n = sum(found.skipped.values())
        parts.append(f"skipped {n} file{'s' * (n != 1)} that {'are' if n != 1 else 'is'} not audio: "
                     + ", ".join(sorted(found.skipped)))
    if found.hidden:
        parts.append(f"skipped {found.hidden} hidden file{'s' * (found.hidden != 1)} or folder"
                     f"{'s' * (found.hidden != 1)} (--hidden to include)")
    return "".join(f"; {p}" for p in parts)


def report(err, tally: Tally, total: int, elapsed: float, provider: str, out: str | None, strict: bool,
           found: Found) -> None:
    failed = tally.failed
    speed = f", {tally.audio_seconds / elapsed:.0f}x real time" if elapsed > 0 and tally.audio_seconds else ""
    err.print(f"mer-live: labeled {tally.processed - len(failed)} of {total} files ({tally.audio_seconds / 60:.1f} "
              f"min of audio in {elapsed:.1f} s{speed}, {provider})" + (f" -> {out}" if out else "")
              + _passed_over(found), highlight=False, markup=False)
    for row in failed[:10]:
        err.print(f"  failed: {row['path']}: {row['error']}", highlight=False, markup=False)
    if len(failed) > 10:
        err.print(f"  ... and {len(failed) - 10} more failures (see the error column)", highlight=False)
    for path, messages in tally.warned[:10]:
        err.print(f"  warning: {path}: {describe_messages(messages)}", highlight=False, markup=False)
    if len(tally.warned) > 10:
        err.print(f"  ... and {len(tally.warned) - 10} more files with decoder messages", highlight=False)
    if strict and failed:
        err.print("mer-live: stopped at the first failure (--strict)", highlight=False)
    if tally.interrupted:
        where = (f"the {tally.processed} files labeled before it are saved in {out}; --resume continues" if out
                 else f"the {tally.processed} files labeled before it are printed")
        err.print(f"mer-live: interrupted: {where}", highlight=False, markup=False)
