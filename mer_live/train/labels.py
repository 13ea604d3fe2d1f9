"""Labels and annotation files: the Russell quadrants as binary labels, thresholds, CSV reading.

Every dataset loader (``mer_live.train.datasets``) reads its annotation files through these
helpers: columns are selected by (stripped) name, never by position, and every cell is stripped
(DEAM pads cells, EiM wraps them in TABs); numeric ratings become binary high/low labels at a
threshold, quadrant annotations through ``mer_live.stats.quadrant``. A dataset's mood tags (4Q's AllMusic
moods) become a vocabulary and per-song target distributions for ``--mood-tags``.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from mer_live.audio.read import AUDIO_EXTENSIONS
from mer_live.config import TASKS
from mer_live.errors import MerLiveError
from mer_live.stats import QUADRANTS as QUADRANT_NAMES
from mer_live.stats import quadrant

QUADRANTS = tuple(QUADRANT_NAMES)  # Q1-Q4
# each quadrant as binary labels, from stats.quadrant: Q1 = +V +A, Q2 = -V +A, Q3 = -V -A, Q4 = +V -A
_BY_QUADRANT = {quadrant(bool(v), bool(a)): {"valence": v, "arousal": a} for v in (1, 0) for a in (1, 0)}
QUADRANT_LABELS = {q: _BY_QUADRANT[q] for q in QUADRANTS}


def quadrant_of(labels: dict[str, int] | None) -> str | None:
    """Russell quadrant of binary labels, or None unless both valence and arousal are known."""
    if not labels or any(task not in labels for task in TASKS):
        return None
    if {labels["valence"], labels["arousal"]} - {0, 1}:
        raise ValueError(f"labels must be 0/1, got {labels}")
    return quadrant(labels["valence"] == 1, labels["arousal"] == 1)


def song_sort_key(song_id: str) -> tuple:
    """Numeric ids in numeric order (2 < 10), then everything else alphabetically."""
    return (0, int(song_id), song_id) if song_id.isdigit() else (1, 0, song_id)


def normalize_id(text: str) -> str:
    """'  2', '2.0' and '2' are the same song; other ids are only stripped."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.0*)?", text):
        return str(int(float(text)))
    return text


def read_csv(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) pairs with every header name and cell stripped; blank rows dropped.

    Stripping handles DEAM's padded cells and spaces after commas, EiM's quoted TABs and 4Q's
    CRLF endings in one place.
    """
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise MerLiveError(f"{path}: annotation file is empty")
    header = [name.strip() for name in rows[0]]
    out = []
    for line, row in enumerate(rows[1:], start=2):
        cells = [cell.strip() for cell in row]
        if any(cells):
            out.append((line, dict(zip(header, cells, strict=False))))
    return out


def csv_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        return [name.strip() for name in next(csv.reader(f), [])]


def require_columns(path: Path, columns: Iterable[str]) -> None:
    header = csv_header(path)
    missing = [c for c in columns if c not in header]
    if missing:
        raise MerLiveError(f"{path}: missing column(s) {missing}; found {header}")


def number(path: Path, line: int, row: dict[str, str], column: str) -> float:
    try:
        value = float(row[column])
    except (KeyError, ValueError):
        raise MerLiveError(f"{path}, line {line}: {column!r} is not a number: {row.get(column)!r}") from None
    if not math.isfinite(value):
        raise MerLiveError(f"{path}, line {line}: {column!r} is not finite: {row[column]!r}")
    return value


def check_root(root: str | os.PathLike, what: str) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise MerLiveError(f"{path}: {what} root not found; pass --root pointing at the unpacked dataset")
    return path


def find_file(root: Path, name: str, fix: str, accept: Callable[[Path], bool] = lambda p: True) -> Path:
    """The shallowest file called ``name`` under ``root`` that ``accept``s; mirrors nest differently."""
    candidates = [root / name] if (root / name).is_file() else []
    candidates += sorted(root.rglob(name), key=lambda p: (len(p.parts), str(p)))
    for path in candidates:
        if path.is_file() and accept(path):
            return path
    raise MerLiveError(f"{root}: no {name} found under this folder; {fix}")


def find_dir(root: Path, name: str, near: Path, fix: str) -> Path:
    """Folder ``name``: beside or above the annotation file first, else the shallowest under root."""
    for base in (near, *near.parents):
        if (base / name).is_dir():
            return base / name
        if base == root:
            break
    found = sorted((p for p in root.rglob(name) if p.is_dir()), key=lambda p: (len(p.parts), str(p)))
    if not found:
        raise MerLiveError(f"{root}: no {name}/ audio folder found under this folder; {fix}")
    return found[0]


def audio_index(folder: Path) -> dict[str, Path]:
    """Stem -> audio file in ``folder``; the distributed .mp3 wins over converted copies."""
    order = {ext: i for i, ext in enumerate((".mp3", *AUDIO_EXTENSIONS))}
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in order]
    index: dict[str, Path] = {}
    for path in sorted(files, key=lambda p: (order[p.suffix.lower()], p.name)):
        index.setdefault(path.stem, path)
    return index


# ----------------------------------------------------------------------------------------- labels


def resolve_thresholds(name: str, defaults: dict[str, float], thresholds: dict[str, float] | None) -> dict:
    unknown = set(thresholds or {}) - set(TASKS)
    if unknown:
        raise MerLiveError(f"unknown threshold task(s) {sorted(unknown)}; use valence and/or arousal")
    if thresholds and not defaults:
        raise MerLiveError(f"the {name} dataset has categorical labels; thresholds do not apply")
    return {**defaults, **(thresholds or {})}


def binarize(values: dict[str, float], thresholds: dict[str, float]) -> dict[str, int]:
    """1 when the value is at or above the task's threshold: the threshold itself counts as high."""
    return {task: int(values[task] >= thresholds[task]) for task in TASKS if task in values}


def threshold_record(thresholds: dict[str, float], scale: str, columns: dict[str, str]) -> dict:
    return {task: f">= {thresholds[task]:g} on {scale} ({columns[task]})" for task in TASKS}


# ------------------------------------------------------------------------------------------ moods

MIN_MOOD_SONGS = 5  # a mood tag joins the vocabulary when at least this many training songs carry it


def mood_vocabulary(tag_lists: Iterable[Iterable[str]], min_songs: int = MIN_MOOD_SONGS) -> tuple[str, ...]:
    """The tags at least ``min_songs`` songs carry, sorted: rarer ones teach a head nothing it can generalise."""
    counts = Counter(tag for tags in tag_lists for tag in set(tags))
    return tuple(sorted(tag for tag, n in counts.items() if n >= min_songs))


def mood_targets(tag_lists: Iterable[Iterable[str]], vocabulary: tuple[str, ...]) -> np.ndarray:
    """(songs, tags): each song's tags of ``vocabulary`` as one distribution (each of its k tags 1/k); a row of
    zeros for a song with none of them."""
    column = {tag: k for k, tag in enumerate(vocabulary)}
    rows = []
    for tags in tag_lists:
        row = np.zeros(len(vocabulary), dtype=np.float32)
        row[sorted({column[t] for t in tags if t in column})] = 1.0
        rows.append(row / max(1.0, row.sum()))
    return np.stack(rows) if rows else np.zeros((0, len(vocabulary)), np.float32)
