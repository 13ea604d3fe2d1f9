"""``mer-live label``: song-level valence, arousal and quadrant for many files, as a command.

The work is ``Model.predict_many`` (worker processes, results in sorted input order, so the output
is the same on every run); this module adds what a command needs: scanning folders, the output file
(rewritten atomically every few seconds, so a kill leaves the old file or a valid partial one that
``--resume`` continues), progress, Ctrl-C and SIGTERM, and the summary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from mer_live.audio.library import Found, collect, passed_over
from mer_live.audio.read import AUDIO_EXTENSIONS, describe_messages
from mer_live.errors import MerLiveError
from mer_live.label.rows import SCALE, check_output, format_rows, output_format, result_row, resumed_rows, write_rows
from mer_live.runtime.engine import Model
from mer_live.runtime.results import SongResult
from mer_live.runtime.workers import default_workers

SAVE_SECONDS = 2.0  # a killed run loses at most this much labeling (--save-every)
PROGRESS_SECONDS = 10.0  # a plain progress line this often when stderr is not a terminal (--progress-every)


NARROW = 100  # columns: below, the table drops the duration and the high/low words (the numbers say it)


def print_table(rows: list[dict], console) -> None:
    """Paths relative to their common folder, shortened in the middle to fit; nothing read as markup.

    The quadrant name never wraps: a narrow terminal loses the duration column and the high/low words
    first, and the error column is there only when a file failed. Off a terminal the table is as wide
    as its content (``table_console``)."""
    from rich.table import Table
    from rich.text import Text

    root = common_root([r["path"] for r in rows])
    caption = SCALE + (f"; paths relative to {root}" if root else "")
    narrow = console.width < NARROW
    errors = any(r["error"] for r in rows)
    table = Table(caption=Text(caption), caption_justify="left")
    table.add_column("path", no_wrap=True, overflow="ellipsis")
    columns = ([] if narrow else ["duration_s"]) + ["valence", "arousal", "quadrant"]
    for name in columns:
        table.add_column(name, no_wrap=True, justify="right" if name == "duration_s" else "left")
    if errors:
        table.add_column("error", overflow="fold", ratio=1, min_width=12)
    fixed = {"duration_s": 10, "valence": 9, "arousal": 9, "quadrant": 16}
    if narrow:
        fixed.update(valence=7, arousal=7)
    used = sum(fixed[c] + 3 for c in columns) + 4 + (15 if errors else 0)  # + borders and padding
    width = max(12, console.width - used)
    for row in rows:
        path = Text(shorten(os.path.relpath(row["path"], root) if root else row["path"], width))
        if row["error"]:
            table.add_row(path, *[""] * len(columns), Text(row["error"], style="red"))
            continue
        cells = {"duration_s": f"{row['duration_s']:.1f}", "quadrant": f"{row['quadrant']} {row['quadrant_name']}"}
        for task in ("valence", "arousal"):
            cells[task] = f"{row[task]:.2f}" + ("" if narrow else f" {row[f'{task}_label']}")
        table.add_row(path, *[cells[c] for c in columns], *([""] if errors else []))
    console.print(table)


def table_console(stdout):
    """A terminal's width on a terminal; off one (a pipe, a file) wide enough for any row, so the table
    is as wide as its content rather than 80 columns."""
    from rich.console import Console

    isatty = getattr(stdout, "isatty", None)
    return Console(file=stdout) if isatty is not None and isatty() else Console(file=stdout, width=100_000)


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


Runner = Callable[[list[str]], Iterator[SongResult]]  # paths -> their results, in the same order


@dataclass(frozen=True)
class LabelOptions:
    """What `mer-live label` is asked: which files of the folders (``recursive``, ``pattern``, ``hidden``),
    where the rows go (``out``, ``fmt``, ``segments``) and how the run goes (``workers``: decoding processes,
    default ``default_workers()``; ``strict``, ``resume``, ``save_every``, ``progress_every``)."""

    recursive: bool = False
    pattern: str | None = None
    hidden: bool = False
    out: str | None = None
    fmt: str | None = None
    segments: bool = False
    workers: int | None = None
    strict: bool = False
    resume: bool = False
    save_every: float = SAVE_SECONDS
    progress_every: float = PROGRESS_SECONDS
    report: str | None = None  # also write the HTML library report there (``mer_live.label.report``)


DEFAULT_OPTIONS = LabelOptions()


def label_files(model: Model, paths: list[str], options: LabelOptions = DEFAULT_OPTIONS, *,
                runner: Runner | None = None, where: str | None = None, stdout=None, stderr=None) -> int:
    """Label every file; write the output; return 0, 1 when any file failed, 130 when interrupted
    (Ctrl-C or SIGTERM: the rows labeled so far are written first).

    ``runner`` labels the files (default: ``model.predict_many`` with ``options.workers`` processes; the
    Ray path gives its own), ``where`` names where they ran for the summary (default: the model's provider)."""
    from rich.console import Console

    stdout = stdout or sys.stdout
    with contextlib.ExitStack() as stack:
        # soft wrap: each message stays one line
        err = Console(file=stderr or stack.enter_context(_own_stderr()), soft_wrap=True)
        if runner is None:
            processes = default_workers() if options.workers is None else options.workers

            def runner(todo: list[str]) -> Iterator[SongResult]:
                return model.predict_many(todo, processes)

        return _label(model, paths, options, err, stdout, runner, where or model.provider)


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


def _label(model: Model, paths: list[str], options: LabelOptions, err, stdout, runner: Runner, where: str) -> int:

    out, segments, resume = options.out, options.segments, options.resume
    if resume and out is None:
        raise MerLiveError("--resume needs --out FILE (the earlier output to continue)")
    if out is not None:
        check_output(out)
    if options.report is not None:
        check_output(options.report, "--report")
    fmt = output_format(options.fmt, out)
    found = collect(paths, options.recursive, options.pattern, options.hidden)
    if not found.files:
        raise MerLiveError(f"no audio files found in {', '.join(paths)} (extensions: {' '.join(AUDIO_EXTENSIONS)})"
                           + passed_over(found))
    kept = resumed_rows(out, fmt, list(found.files)) if resume and out is not None and os.path.exists(out) else {}
    todo = [(key, path) for key, path in sorted(found.files.items(), key=lambda kv: kv[1]) if key not in kept]
    name = str(model.bundle.path)
    rows = dict(kept)  # real path -> row: one row per file, whatever the spelling

    def ordered() -> list[dict]:
        return sorted(rows.values(), key=lambda r: str(r["path"]))

    def save() -> None:
        if out is None:
            return
        try:
            write_rows(out, ordered(), fmt, segments, name)
        except OSError as exc:
            raise MerLiveError(f"--out {out}: cannot write it ({exc.strerror or exc})") from None

    begin = time.perf_counter()
    if kept:
        err.print(f"mer-live: resuming: {len(kept)} files already labeled in {out}, {len(todo)} to go",
                  markup=False, highlight=False)
    # the report draws every song's timeline, so its rows keep their segments
    tally = _run(runner, todo, rows, dataclasses.replace(options, segments=True) if options.report else options,
                 save, err)
    save()
    if options.report is not None:  # also after an interruption: the songs labeled so far
        from mer_live.label.report import write_report

        write_report(options.report, ordered(), model.name)  # "default", not a folder
        err.print(f"mer-live: report of {len(rows)} files -> {options.report}", markup=False, highlight=False)
    if out is None:  # an interrupted run prints the rows it has: nothing labeled is lost
        if fmt == "table":
            print_table(ordered(), table_console(stdout))
        else:
            stdout.write(format_rows(ordered(), fmt, segments, name))
            stdout.flush()
    report(err, tally, len(todo), time.perf_counter() - begin, where, out, options.strict, found)
    if tally.interrupted:
        return 130
    return 1 if tally.failed else 0


def _run(runner: Runner, todo: list[tuple[str, str]], rows: dict[str, dict], options: LabelOptions, save, err
         ) -> Tally:
    """Label ``todo`` into ``rows``, saving every ``options.save_every`` s; Ctrl-C/SIGTERM ends it with a tally."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    tally = Tally()
    last_save = time.perf_counter()
    plain = None if err.is_terminal else PlainProgress(err, len(todo), options.progress_every)
    progress = Progress(TextColumn("labeling"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        TextColumn("{task.fields[name]}", markup=False), console=err, disable=plain is not None,
                        transient=True)
    try:
        with progress, contextlib.closing(runner([p for _, p in todo])) as results:
            task = progress.add_task("label", total=len(todo), name="")
            for (key, _), item in zip(todo, results):
                row = result_row(item, options.segments)
                rows[key] = row
                tally.processed += 1
                if item.messages:
                    tally.warned.append((item.path, list(item.messages)))
                if row["error"]:
                    tally.failed.append(row)
                else:
                    tally.audio_seconds += item.duration
                progress.update(task, advance=1, name=os.path.basename(item.path)[-40:])
                if plain is not None:
                    plain.advance(tally.processed)
                if options.strict and row["error"]:
                    break
                if time.perf_counter() - last_save >= options.save_every:
                    save()
                    last_save = time.perf_counter()
    except KeyboardInterrupt:
        tally.interrupted = True
    return tally


def report(err, tally: Tally, total: int, elapsed: float, provider: str, out: str | None, strict: bool,
           found: Found) -> None:
    failed = tally.failed
    speed = f", {tally.audio_seconds / elapsed:.0f}x real time" if elapsed > 0 and tally.audio_seconds else ""
    err.print(f"mer-live: labeled {tally.processed - len(failed)} of {total} files ({tally.audio_seconds / 60:.1f} "
              f"min of audio in {elapsed:.1f} s{speed}, {provider})" + (f" -> {out}" if out else "")
              + passed_over(found), highlight=False, markup=False)
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
