"""Label rows: a ``SongResult`` as a row, the output formats (CSV, JSON lines, JSON, and Parquet for
big runs, through pyarrow), and reading an earlier output back for ``--resume``.

The columns are the same in every format and for every path (local processes or a Ray cluster);
probabilities are rounded to 6 decimals.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path

from mer_live.atomic import atomic_file, atomic_write_text
from mer_live.audio.library import real_path
from mer_live.errors import MerLiveError
from mer_live.runtime.results import SongResult

COLUMNS = ["path", "duration_s", "segments", "valence", "arousal", "valence_label", "arousal_label",
           "quadrant", "quadrant_name", "error"]
SEGMENT_COLUMNS = ["segment_valence", "segment_arousal"]
FORMATS = ("csv", "jsonl", "json", "parquet", "table")
SCALE = ("valence and arousal: song-level probability of high valence / high arousal (0-1); "
         "labels: high when >= 0.5; quadrant: Russell Q1 +V+A, Q2 -V+A, Q3 -V-A, Q4 +V-A")
OUTPUT_SUFFIXES = {"csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl", "json": "json", "parquet": "parquet"}
PARQUET_HINT = "Parquet needs pyarrow, which this install lacks: pip install 'mer-live[ray]' (or pyarrow)"


def result_row(result: SongResult, segments: bool = False) -> dict:
    """One output row; a failed file keeps its path and says why in ``error``."""
    row: dict = dict.fromkeys(COLUMNS, None)
    row.update(path=result.path, error=result.error or "")
    if result.error:
        return row
    labels = result.labels
    row.update(duration_s=round(result.duration, 3), segments=result.n_segments, valence=round(result.valence, 6),
               arousal=round(result.arousal, 6), valence_label=labels["valence"], arousal_label=labels["arousal"],
               quadrant=result.quadrant, quadrant_name=result.quadrant_name)
    if segments:
        row["segment_valence"] = [round(float(p), 6) for p in result.timeline("valence")]
        row["segment_arousal"] = [round(float(p), 6) for p in result.timeline("arousal")]
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


def write_rows(out: str, rows: list[dict], fmt: str, segments: bool, model: str) -> None:
    """``rows`` into ``out`` in ``fmt``, atomically (a kill leaves the old file or the new one)."""
    if fmt != "parquet":
        atomic_write_text(out, format_rows(rows, fmt, segments, model))
        return
    import pyarrow.parquet as pq

    with atomic_file(out, "wb") as f:
        pq.write_table(parquet_table(rows, segments, model), f)


def parquet_table(rows: list[dict], segments: bool, model: str):
    """The rows as an Arrow table with fixed column types (whatever the rows hold), the scale and the
    model in its metadata."""
    import pyarrow as pa

    types = {"duration_s": pa.float64(), "segments": pa.int64(), "valence": pa.float64(), "arousal": pa.float64()}
    columns = COLUMNS + (SEGMENT_COLUMNS if segments else [])
    schema = pa.schema([(c, pa.list_(pa.float64()) if c in SEGMENT_COLUMNS else types.get(c, pa.string()))
                        for c in columns], metadata={"scale": SCALE, "model": model})
    data = {c: [row.get(c) for row in rows] for c in columns}
    for c in ("duration_s", "valence", "arousal"):  # rows read back from a CSV hold strings
        data[c] = [None if v in (None, "") else float(v) for v in data[c]]
    data["segments"] = [None if v in (None, "") else int(v) for v in data["segments"]]
    for c in SEGMENT_COLUMNS if segments else []:
        data[c] = [None if v in (None, "") else [float(x) for x in (v.split() if isinstance(v, str) else v)]
                   for v in data[c]]
    return pa.table(data, schema=schema)


def read_rows(path: str, fmt: str) -> list[dict]:
    """Rows of an earlier mer-live output (for --resume); anything else is refused, never overwritten."""
    if fmt == "parquet":
        return _read_parquet(path)
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


def _read_parquet(path: str) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MerLiveError(PARQUET_HINT) from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow's errors, in one line
        raise MerLiveError(f"--resume: cannot read {path} as parquet ({str(exc).splitlines()[0]}); remove it or "
                           "drop --resume") from None
    _check_columns(path, list(table.column_names))
    return table.to_pylist()


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


def output_format(fmt: str | None, out: str | None) -> str:
    if fmt is None:
        if out is None:
            return "table" if sys.stdout.isatty() else "csv"
        suffix = Path(out).suffix.lower().lstrip(".")
        if suffix not in OUTPUT_SUFFIXES:
            raise MerLiveError(f"--out {out}: cannot tell the format from '{Path(out).suffix or 'no extension'}'; "
                               "name it .csv, .jsonl, .json or .parquet, or give --format")
        fmt = OUTPUT_SUFFIXES[suffix]
    if fmt == "table" and out is not None:
        raise MerLiveError("--format table prints to the terminal; use csv, jsonl or json with --out")
    if fmt == "parquet":
        if out is None:
            raise MerLiveError("--format parquet writes a file: give --out FILE.parquet")
        import importlib.util

        if importlib.util.find_spec("pyarrow") is None:
            raise MerLiveError(PARQUET_HINT)
    return fmt


def check_output(out: str, flag: str = "--out") -> None:
    """Refuse an --out (or --report) whose folder is missing or not writable before any work is done."""
    folder = Path(out).parent
    if os.path.isdir(out):
        example = "report.html" if flag == "--report" else "labels.csv"
        raise MerLiveError(f"{flag} {out}: is a folder; give a file name such as {Path(out) / example}")
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise MerLiveError(f"{flag} {out}: the folder {folder} {what}; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MerLiveError(f"{flag} {out}: cannot write in the folder {folder} (read-only or no permission)")
