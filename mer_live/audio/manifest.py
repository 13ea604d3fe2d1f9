"""Manifests: a list of files to label, for libraries too big (or too remote) to scan as a folder.

A manifest is a ``.txt`` (or ``.lst``) file with one path per line (blank lines and ``#`` comments
skipped), or a ``.csv`` / ``.parquet`` table with a ``path`` column. Relative paths are read from the
manifest's folder. Parquet needs pyarrow (the ``ray`` extra brings it).
"""

from __future__ import annotations

import csv
import os

from mer_live.errors import MerLiveError

TEXT_SUFFIXES = (".txt", ".lst")
TABLE_SUFFIXES = (".csv", ".parquet")
SUFFIXES = TEXT_SUFFIXES + TABLE_SUFFIXES


def is_manifest(path: str) -> bool:
    return path.lower().endswith(SUFFIXES) and os.path.isfile(path)


def expand(paths: list[str]) -> list[str]:
    """``paths`` with every manifest among them replaced by the paths it lists."""
    out: list[str] = []
    for given in paths:
        out.extend(read_manifest(given) if is_manifest(given) else [given])
    return out


def read_manifest(path: str) -> list[str]:
    lower = path.lower()
    try:
        if lower.endswith(TEXT_SUFFIXES):
            with open(path, encoding="utf-8") as f:
                entries = [line.strip() for line in f]
            entries = [e for e in entries if e and not e.startswith("#")]
        elif lower.endswith(".csv"):
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                _need_path_column(path, list(reader.fieldnames or []))
                entries = [row["path"] for row in reader if row.get("path")]
        else:
            entries = _parquet_paths(path)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MerLiveError(f"manifest {path}: cannot read it ({exc})") from None
    if not entries:
        raise MerLiveError(f"manifest {path}: lists no files")
    folder = os.path.dirname(os.path.abspath(path))
    return [e if os.path.isabs(e) or "://" in e else os.path.normpath(os.path.join(folder, e)) for e in entries]


def _parquet_paths(path: str) -> list[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MerLiveError(f"manifest {path}: reading Parquet needs pyarrow: pip install 'mer-live[ray]'") from None
    try:
        schema = pq.read_schema(path)
        _need_path_column(path, list(schema.names))
        column = pq.read_table(path, columns=["path"]).column("path").to_pylist()
    except MerLiveError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow's errors, in one line
        raise MerLiveError(f"manifest {path}: cannot read it as Parquet ({str(exc).splitlines()[0]})") from None
    return [str(p) for p in column if p]


def _need_path_column(path: str, columns: list[str]) -> None:
    if "path" not in columns:
        raise MerLiveError(f"manifest {path}: needs a 'path' column (its columns: {', '.join(columns) or 'none'})")
