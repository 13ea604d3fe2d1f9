"""Dataset loaders: 4Q, PMEmo 2019, DEAM, Emotion in Music, a generic manifest, unlabeled folders.

Every loader turns its dataset's own annotation files into the same list of ``Clip``s with
binary valence/arousal labels, following each dataset's published on-disk format: columns are
selected by (stripped) name, never by position, every cell is stripped (DEAM pads cells,
EiM wraps them in TABs), and annotation files are found by name anywhere under the root,
because mirrors wrap the official trees in different folders. Annotation rows whose audio
is missing are kept in ``Dataset.skipped`` with a reason instead of failing the whole load.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mer_live.audio.read import AUDIO_EXTENSIONS
from mer_live.errors import MerLiveError
from mer_live.train.labels import (
    QUADRANT_LABELS,
    QUADRANTS,
    TASKS,
    audio_index,
    binarize,
    check_root,
    csv_header,
    find_dir,
    find_file,
    normalize_id,
    number,
    quadrant_of,
    read_csv,
    require_columns,
    resolve_thresholds,
    song_sort_key,
    threshold_record,
)
from mer_live.train.settings import DATASET_NAMES

FOURQ_ANNOTATIONS = "panda_dataset_taffc_annotations.csv"
FOURQ_METADATA = "panda_dataset_taffc_metadata.csv"  # optional: every song's AllMusic mood tags
PMEMO_STATIC = "static_annotations.csv"
DEAM_STATIC = (
    "static_annotations_averaged_songs_1_2000.csv",
    "static_annotations_averaged_songs_2000_2058.csv",
)
EIM_STATIC = "static_annotations.csv"
EIM_INFO = "songs_info.csv"
MANIFEST = "manifest.csv"


@dataclass(frozen=True)
class Clip:
    """One audio file and its binary labels (``None`` for unlabeled audio), and the mood tags its dataset
    gives it (4Q: the AllMusic moods its quadrant was derived from; ``--mood-tags`` learns them too)."""

    path: Path
    song_id: str
    labels: dict[str, int] | None
    quadrant: str | None
    raw: dict = field(default_factory=dict, compare=False)
    tags: tuple[str, ...] = ()


@dataclass
class Dataset:
    name: str
    root: Path
    clips: list[Clip]
    binarization: dict
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def quadrant_counts(self) -> dict[str, int]:
        counts = Counter(c.quadrant for c in self.clips if c.quadrant is not None)
        return {q: counts.get(q, 0) for q in QUADRANTS}


def make_clip(path: Path, song_id: str, labels: dict[str, int] | None, raw: dict, tags: tuple[str, ...] = ()
              ) -> Clip:
    return Clip(path=path, song_id=song_id, labels=labels or None, quadrant=quadrant_of(labels), raw=raw, tags=tags)


class Collector:
    """Accumulates clips and skipped rows; a second row for the same audio file is skipped.

    Several clips may share a song id (excerpts of one song in a manifest): splits keep them together.
    """

    def __init__(self) -> None:
        self.clips: dict[Path, Clip] = {}
        self.skipped: list[tuple[str, str]] = []

    def add(self, song_id: str, audio: Path | None, missing: str, labels: dict | None, raw: dict,
            tags: tuple[str, ...] = ()) -> None:
        """Keep the clip, or record why not: ``missing`` says where its audio was looked for."""
        if audio is None:
            self.skipped.append((song_id, f"audio not found: {missing}"))
        elif audio in self.clips:
            self.skipped.append((song_id, f"second annotation row for {audio.name} (the first one is kept)"))
        else:
            self.clips[audio] = make_clip(audio, song_id, labels, raw, tags)

    def dataset(self, name: str, root: Path, binarization: dict) -> Dataset:
        clips = sorted(self.clips.values(), key=lambda c: (song_sort_key(c.song_id), str(c.path)))
        return Dataset(name=name, root=root, clips=clips, binarization=binarization, skipped=self.skipped)


# ---------------------------------------------------------------------------------------- loaders


def load_4q(root: Path, thresholds: dict[str, float] | None) -> Dataset:
    resolve_thresholds("4q", {}, thresholds)
    annotations = find_file(root, FOURQ_ANNOTATIONS, "point --root at MER_audio_taffc_dataset/")
    base = annotations.parent
    rows = read_csv(annotations)
    require_columns(annotations, ("Song", "Quadrant"))
    indexes = {q: audio_index(base / q) if (base / q).is_dir() else {} for q in QUADRANTS}
    if not any(indexes.values()):
        raise MerLiveError(f"{base}: no Q1/ Q2/ Q3/ Q4/ audio folders beside {annotations.name}")
    moods = fourq_moods(base / FOURQ_METADATA)
    out = Collector()
    for line, row in rows:
        quadrant = row["Quadrant"].upper()
        if quadrant not in QUADRANT_LABELS:
            raise MerLiveError(f"{annotations}, line {line}: quadrant must be Q1-Q4, got {row['Quadrant']!r}")
        song = row["Song"]
        out.add(song, indexes[quadrant].get(song), f"{base / quadrant / song}.mp3",
                dict(QUADRANT_LABELS[quadrant]), dict(row), moods.get(song, ()))
    return out.dataset("4q", base, {
        "valence": "high = Q1, Q4 (annotated Russell quadrant)",
        "arousal": "high = Q1, Q2 (annotated Russell quadrant)",
    })


def fourq_moods(metadata: Path) -> dict[str, tuple[str, ...]]:
    """Song -> its AllMusic mood tags, lower case, from 4Q's metadata file (none when the file is absent).
    "MoodsStrSplit" is every mood of the song, split where AllMusic joined two in one tag."""
    if not metadata.is_file():
        return {}
    require_columns(metadata, ("Song", "MoodsStrSplit"))
    return {row["Song"]: tuple(t.strip().lower() for t in row["MoodsStrSplit"].split(";") if t.strip())
            for _, row in read_csv(metadata)}


def rated_row(table: Path, line: int, row: dict[str, str], id_column: str, columns: dict[str, str]
              ) -> tuple[str, dict[str, float], dict[str, float]]:
    """A static-annotation row -> (song id, per-task values, raw values by column name)."""
    values = {task: number(table, line, row, col) for task, col in columns.items()}
    return normalize_id(row[id_column]), values, {col: values[task] for task, col in columns.items()}


def load_pmemo(root: Path, thresholds: dict[str, float] | None) -> Dataset:
    chosen = resolve_thresholds("pmemo", {"valence": 0.5, "arousal": 0.5}, thresholds)
    columns = {"valence": "Valence(mean)", "arousal": "Arousal(mean)"}
    annotations = find_file(root, PMEMO_STATIC, "point --root at PMEmo2019/ (it holds annotations/)",
                            accept=lambda p: "musicId" in csv_header(p))
    rows = read_csv(annotations)
    require_columns(annotations, ("musicId", *columns.values()))
    folder = find_dir(root, "chorus", annotations.parent, "unpack the PMEmo chorus MP3s there")
    index = audio_index(folder)
    out = Collector()
    for line, row in rows:
        song, values, raw = rated_row(annotations, line, row, "musicId", columns)
        out.add(song, index.get(song), f"{folder / song}.mp3", binarize(values, chosen), raw)
    return out.dataset("pmemo", root, threshold_record(chosen, "0-1", columns))


def load_deam(root: Path, thresholds: dict[str, float] | None) -> Dataset:
    chosen = resolve_thresholds("deam", {"valence": 5.0, "arousal": 5.0}, thresholds)
    columns = {"valence": "valence_mean", "arousal": "arousal_mean"}
    fix = "unpack DEAM_Annotations.zip under --root"
    files = [find_file(root, name, fix) for name in DEAM_STATIC]
    folder = find_dir(root, "MEMD_audio", files[0].parent, "unpack DEAM_audio.zip under --root")
    index = audio_index(folder)
    out = Collector()
    for table in files:
        rows = read_csv(table)
        require_columns(table, ("song_id", *columns.values()))
        for line, row in rows:
            song, values, raw = rated_row(table, line, row, "song_id", columns)
            raw |= {"file": table.name}
            out.add(song, index.get(song), f"{folder / song}.mp3", binarize(values, chosen), raw)
    return out.dataset("deam", root, threshold_record(chosen, "1-9", columns))


def load_eim(root: Path, thresholds: dict[str, float] | None) -> Dataset:
    chosen = resolve_thresholds("eim", {"valence": 5.0, "arousal": 5.0}, thresholds)
    columns = {"valence": "mean_valence", "arousal": "mean_arousal"}
    annotations = find_file(root, EIM_STATIC, "unpack annotations.tar.gz under --root",
                            accept=lambda p: "mean_arousal" in csv_header(p))
    rows = read_csv(annotations)
    require_columns(annotations, ("song_id", *columns.values()))
    folder = find_dir(root, "clips_45seconds", annotations.parent, "unpack clips_45sec.tar.gz under --root")
    index = audio_index(folder)
    info = songs_info(annotations.parent)
    out = Collector()
    for line, row in rows:
        song, values, raw = rated_row(annotations, line, row, "song_id", columns)
        raw |= info.get(song, {})
        stem = Path(info.get(song, {}).get("file_name", song)).stem
        out.add(song, index.get(stem), f"{folder / stem}.mp3", binarize(values, chosen), raw)
    return out.dataset("eim", root, threshold_record(chosen, "1-9", columns))


def songs_info(folder: Path) -> dict[str, dict[str, str]]:
    """EiM's songs_info.csv (optional) by song id: file name, artist, title, genre, official set."""
    path = folder / EIM_INFO
    if not path.is_file():
        return {}
    keep = {"file_name": "file_name", "Artist": "artist", "Song title": "title", "Genre": "genre",
            "Mediaeval 2013 set": "set"}
    return {
        normalize_id(row["song_id"]): {new: row[old] for old, new in keep.items() if row.get(old)}
        for _, row in read_csv(path) if row.get("song_id")
    }


def load_manifest(root: Path, thresholds: dict[str, float] | None, name: str = "manifest") -> Dataset:
    """A CSV with ``path`` plus ``valence``/``arousal`` (numbers or 0/1) or ``quadrant`` (Q1-Q4).

    Paths are relative to the CSV's folder or absolute; ``song_id`` defaults to the file stem.
    Rows with empty label cells are unlabeled (labels None), which suits a semi-supervised pool.
    """
    path = root / MANIFEST if root.is_dir() else root
    if not path.is_file():
        raise MerLiveError(f"{path}: manifest CSV not found; pass --root pointing at the CSV (or its folder)")
    rows = read_csv(path)
    header = csv_header(path)
    numeric = [task for task in TASKS if task in header]
    has_quadrant = "quadrant" in header
    if "path" not in header or not (numeric or has_quadrant):
        raise MerLiveError(f"{path}: needs a 'path' column and 'valence'/'arousal' or 'quadrant' columns; "
                           f"found {header}")
    chosen = resolve_thresholds(name, {task: 0.5 for task in numeric}, thresholds)
    out = Collector()
    for line, row in rows:
        audio = Path(row["path"]).expanduser()
        audio = audio if audio.is_absolute() else path.parent / audio
        song = row.get("song_id") or audio.stem
        labels = manifest_labels(path, line, row, numeric, chosen, has_quadrant)
        out.add(song, audio if audio.is_file() else None, str(audio), labels, dict(row))
    if numeric:
        record = {task: f">= {chosen[task]:g} (manifest column {task!r}; 0/1 labels pass unchanged)"
                  for task in numeric}
    else:
        record = {"valence": "high = Q1, Q4 (manifest column 'quadrant')",
                  "arousal": "high = Q1, Q2 (manifest column 'quadrant')"}
    return out.dataset(name, path, record)


def manifest_labels(path: Path, line: int, row: dict[str, str], numeric: list[str], thresholds: dict,
                    has_quadrant: bool) -> dict[str, int] | None:
    quadrant = row.get("quadrant", "").upper()
    if quadrant and quadrant not in QUADRANT_LABELS:
        raise MerLiveError(f"{path}, line {line}: quadrant must be Q1-Q4, got {row['quadrant']!r}")
    if not numeric:
        return dict(QUADRANT_LABELS[quadrant]) if quadrant else None
    values = {task: number(path, line, row, task) for task in numeric if row.get(task)}
    labels = binarize(values, thresholds) or None
    if quadrant and labels and quadrant_of(labels) not in (None, quadrant):
        raise MerLiveError(f"{path}, line {line}: quadrant {quadrant} contradicts valence/arousal {labels}")
    return labels


def load_unlabeled(root: Path, thresholds: dict[str, float] | None) -> Dataset:
    """Every audio file under a folder, without labels; song id = path relative to the folder."""
    resolve_thresholds("unlabeled", {}, thresholds)
    if not root.is_dir():
        raise MerLiveError(f"{root}: not a folder; pass a folder of audio files")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise MerLiveError(f"{root}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) under this folder")
    clips = [make_clip(p, p.relative_to(root).with_suffix("").as_posix(), None, {}) for p in files]
    clips.sort(key=lambda c: song_sort_key(c.song_id))
    return Dataset(name="unlabeled", root=root, clips=clips, binarization={})


LOADERS = {
    "4q": load_4q,
    "pmemo": load_pmemo,
    "deam": load_deam,
    "eim": load_eim,
    "manifest": load_manifest,
    "synth": lambda root, thresholds: load_manifest(root, thresholds, name="synth"),
    "unlabeled": load_unlabeled,
}


def load_dataset(name: str, root: str | os.PathLike, thresholds: dict[str, float] | None = None) -> Dataset:
    """Load a dataset by name; ``thresholds`` override the default high/low split per task."""
    if name not in LOADERS:
        raise MerLiveError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    return LOADERS[name](check_root(root, name), thresholds)
