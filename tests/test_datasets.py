"""Dataset loaders on faithful miniature copies of each dataset's tree (see docs/datasets.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mer_live.audio.read import load_audio
from mer_live.errors import MerLiveError
from mer_live.train.datasets import load_dataset
from mer_live.train.labels import mood_targets, mood_vocabulary, quadrant_of


def write_clip(path: Path, sr: int = 22050, channels: int = 1, seconds: float = 0.5, fmt: str | None = None) -> Path:
    """A short real audio file; the format follows the suffix unless ``fmt`` is given (MP3)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    mono = (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    data = mono if channels == 1 else np.stack([mono] * channels, axis=1)
    sf.write(str(path), data, sr, format=fmt or path.suffix[1:].upper())
    return path


def write_text(path: Path, lines: list[str], newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((newline.join(lines) + newline).encode())
    return path


def labels(dataset) -> dict[str, tuple[int, int]]:
    return {c.song_id: (c.labels["valence"], c.labels["arousal"]) for c in dataset.clips}


# ------------------------------------------------------------------------------------------------ 4Q


@pytest.fixture
def fourq_tree(tmp_path: Path) -> Path:
    base = tmp_path / "download" / "MER_audio_taffc_dataset"
    rows = [("MT0000004637", "Q3"), ("MT0000011975", "Q2"), ("MT0000040632", "Q1"),
            ("MT0000100001", "Q4"), ("MT0000200002", "Q1"), ("MT0000300003", "Q4")]
    write_text(base / "panda_dataset_taffc_annotations.csv", ["Song,Quadrant"] + [f"{s},{q}" for s, q in rows],
               newline="\r\n")
    write_text(base / "panda_dataset_taffc_metadata.csv", [
        '"Song","Artist","Title","Quadrant","PQuad","MoodsTotal","Moods","MoodsFoundStr","MoodsStr",'
        '"MoodsStrSplit","Genres","GenresStr","Sample","SampleURL"',
        '"MT0000004637","Charlie Poole","Bulldog Down in Sunny Tennessee","Q3",0.666666666666667,3,3,'
        '"circular; greasy; messy","Circular; Greasy; Messy","Circular; Greasy; Messy",2,'
        '"Country; International",1,"http://example.invalid/playback.mp3"',
    ], newline="\r\n")
    formats = [(32000, 2), (22050, 2), (44100, 2), (16000, 1), (32000, 2)]
    for (song, quadrant), (sr, channels) in zip(rows[:5], formats, strict=True):
        write_clip(base / quadrant / f"{song}.mp3", sr, channels, fmt="MP3")
    return tmp_path / "download"  # one level above the dataset: found by name


def test_4q_quadrants_to_labels(fourq_tree: Path):
    ds = load_dataset("4q", fourq_tree)
    assert ds.root.name == "MER_audio_taffc_dataset"
    assert [c.song_id for c in ds.clips] == sorted(c.song_id for c in ds.clips)
    assert labels(ds) == {"MT0000004637": (0, 0), "MT0000011975": (0, 1), "MT0000040632": (1, 1),
                          "MT0000100001": (1, 0), "MT0000200002": (1, 1)}
    assert {c.song_id: c.quadrant for c in ds.clips}["MT0000004637"] == "Q3"  # no stray "\r"
    assert [s for s, _ in ds.skipped] == ["MT0000300003"]
    assert "Q4" in ds.skipped[0][1] and "not found" in ds.skipped[0][1]
    assert "Q1, Q4" in ds.binarization["valence"] and "Q1, Q2" in ds.binarization["arousal"]
    clip = ds.clips[0]
    assert clip.path.parent.name == clip.quadrant and load_audio(clip.path, 22050).size > 0
    tags = {c.song_id: c.tags for c in ds.clips}  # the metadata's "MoodsStrSplit", for --mood-tags
    assert tags["MT0000004637"] == ("circular", "greasy", "messy") and tags["MT0000011975"] == ()


def test_4q_rejects_thresholds(fourq_tree: Path):
    with pytest.raises(MerLiveError, match="thresholds do not apply"):
        load_dataset("4q", fourq_tree, thresholds={"valence": 0.3})


def test_real_4q_dev_set(fourq: Path):
    ds = load_dataset("4q", fourq)
    assert len(ds.clips) == 400 and not ds.skipped
    assert ds.quadrant_counts() == {"Q1": 100, "Q2": 100, "Q3": 100, "Q4": 100}
    assert all(c.path.is_file() and c.path.parent.name == c.quadrant for c in ds.clips)
    assert all(quadrant_of(c.labels) == c.quadrant for c in ds.clips)
    vocabulary = mood_vocabulary(c.tags for c in ds.clips)  # every song has AllMusic moods; rare ones are left out
    assert all(c.tags for c in ds.clips) and "sad" in vocabulary and 100 < len(vocabulary) < 200
    targets = mood_targets([c.tags for c in ds.clips], vocabulary)
    assert targets.shape == (400, len(vocabulary)) and np.allclose(targets.sum(axis=1)[targets.sum(axis=1) > 0], 1)


def test_mood_vocabulary_keeps_tags_enough_songs_carry_and_targets_spread_a_song_over_its_tags():
    songs = [("sad", "dark"), ("sad",), ("sad", "sad", "rare"), ("happy",)]
    assert mood_vocabulary(songs, min_songs=3) == ("sad",)  # a tag twice on one song counts once
    assert mood_vocabulary(songs, min_songs=1) == ("dark", "happy", "rare", "sad")
    targets = mood_targets(songs, ("dark", "sad"))
    assert targets.tolist() == [[0.5, 0.5], [0.0, 1.0], [0.0, 1.0], [0.0, 0.0]]


# --------------------------------------------------------------------------------------------- PMEmo


def test_pmemo_static_labels(tmp_path: Path):
    base = tmp_path / "PMEmo2019"
    write_text(base / "annotations" / "static_annotations.csv", [
        "musicId,Arousal(mean),Valence(mean)",
        "1,0.4,0.575", "4,0.5,0.3", "10,0.863,0.49999", "1000,0.2,0.5", "77,0.9,0.9",
    ])
    write_text(base / "annotations" / "static_annotations_std.csv", ["musicId,Arousal(std),Valence(std)", "1,0.1,0.2"])
    write_text(base / "metadata.csv", [
        "musicId,fileName,title,artist,album,duration,chorus_start_time,chorus_end_time",
        "1,1.mp3,Song,Artist,Album,49.1,02:50,03:37",
    ])
    for song, channels in (("1", 2), ("4", 2), ("10", 1), ("1000", 2), ("5", 2)):  # 5 is not annotated
        write_clip(base / "chorus" / f"{song}.mp3", 44100, channels, fmt="MP3")
    ds = load_dataset("pmemo", tmp_path)
    assert [c.song_id for c in ds.clips] == ["1", "4", "10", "1000"]  # numeric order, gaps kept
    # >= 0.5 is high: song 4 has arousal exactly 0.5, song 1000 valence exactly 0.5.
    assert labels(ds) == {"1": (1, 0), "4": (0, 1), "10": (0, 1), "1000": (1, 0)}
    assert ds.clips[0].raw == {"Valence(mean)": 0.575, "Arousal(mean)": 0.4}
    assert [s for s, _ in ds.skipped] == ["77"]
    assert ds.binarization["valence"] == ">= 0.5 on 0-1 (Valence(mean))"


def test_pmemo_threshold_override(tmp_path: Path):
    base = tmp_path / "PMEmo2019"
    write_text(base / "annotations" / "static_annotations.csv",
               ["musicId,Arousal(mean),Valence(mean)", "1,0.4,0.575", "2,0.7,0.65"])
    for song in ("1", "2"):
        write_clip(base / "chorus" / f"{song}.mp3", 44100, 2, fmt="MP3")
    ds = load_dataset("pmemo", base, thresholds={"valence": 0.6})
    assert labels(ds) == {"1": (0, 0), "2": (1, 1)}
    assert ds.binarization["valence"].startswith(">= 0.6") and ds.binarization["arousal"].startswith(">= 0.5")


# ---------------------------------------------------------------------------------------------- DEAM

DEAM_1_2000 = [
    "song_id, valence_mean, valence_std, arousal_mean, arousal_std",
    "      2,         3.1 ,        0.94,         3   ,        0.63",
    "      3,         5   ,        1.1 ,         6.2 ,        0.75",
    "     25,         7.9 ,        0.7 ,         4.7 ,        0.46",
    "   1024,         4.4 ,        1.2 ,         5.0 ,        0.9",
]
DEAM_2000_2058 = [
    "song_id, valence_mean, valence_std, valence_ max_mean, valence_max_std, valence_min_mean, valence_min_std, "
    "arousal_mean, arousal_std, arousal_max_mean, arousal_max_std, arousal_min_mean, arousal_min_std",
    "   2001,         3.2 ,        0.98,              7.0 ,            1.41,             2.2 ,            0.98,"
    "         3.4 ,        0.8 ,             8.6 ,            0.49,             3.4 ,            1.02",
    "   2058,         6.5 ,        0.98,              8.0 ,            1.41,             5.2 ,            0.98,"
    "         6.6 ,        0.8 ,             8.6 ,            0.49,             3.4 ,            1.02",
]


def deam_tree(root: Path) -> Path:
    """The Kaggle mirror's wrapping, with the official folder names (spaces, parentheses) inside."""
    song_level = root / "DEAM_Annotations" / "annotations" / "annotations averaged per song" / "song_level"
    write_text(song_level / "static_annotations_averaged_songs_1_2000.csv", DEAM_1_2000)
    write_text(song_level / "static_annotations_averaged_songs_2000_2058.csv", DEAM_2000_2058)
    audio = root / "DEAM_audio" / "MEMD_audio"
    for song, sr, channels in (("2", 44100, 2), ("3", 48000, 2), ("25", 22050, 2), ("1024", 16000, 1),
                               ("2001", 44100, 2)):  # 2058 has no audio
        write_clip(audio / f"{song}.mp3", sr, channels, fmt="MP3")
    return root


def test_deam_padding_typo_and_column_order(tmp_path: Path):
    ds = load_dataset("deam", deam_tree(tmp_path))
    assert [c.song_id for c in ds.clips] == ["2", "3", "25", "1024", "2001"]
    # 5 counts as high; 2001's arousal_mean (3.4) is the 8th column, not the 4th (7.0, the typo column).
    assert labels(ds) == {"2": (0, 0), "3": (1, 1), "25": (1, 0), "1024": (0, 1), "2001": (0, 0)}
    assert ds.clips[-1].raw["arousal_mean"] == 3.4
    assert [s for s, _ in ds.skipped] == ["2058"] and "MEMD_audio" in ds.skipped[0][1]
    assert ds.binarization["arousal"] == ">= 5 on 1-9 (arousal_mean)"


def test_deam_missing_annotation_file_is_explained(tmp_path: Path):
    root = deam_tree(tmp_path)
    next(root.rglob("static_annotations_averaged_songs_2000_2058.csv")).unlink()
    with pytest.raises(MerLiveError, match="static_annotations_averaged_songs_2000_2058.csv.*DEAM_Annotations"):
        load_dataset("deam", root)


# ----------------------------------------------------------------------------------------------- EiM

EIM_STATIC = [
    "song_id,mean_arousal,std_arousal,mean_valence,std_valence",
    "2,3.1,0.99443,3,0.66667", "3,7.2222,0.8,5,0.5", "5,5,1.1,6.1,0.7", "9,2,0.5,2,0.5",
]
EIM_INFO = [
    '"song_id","file_name","Artist","Song title","start of the segment (min.sec)",'
    '"end of the segment (min.sec)","Genre","Mediaeval 2013 set"',
    '2,"\t2.mp3","The New Mystikal Troubadours\t","\tTonight  A Lonely Century\t","\t0.48\t","\t1.33\t",'
    '"\tBlues\t","development"',
    '3,"\t3.mp3","\tSomeone\t","\tA Song\t","\t1.00\t","\t1.45\t","\tRock\t","evaluation"',
]


@pytest.mark.parametrize("annotations_dir", ["annotations", "."])
def test_eim_labels_and_songs_info(tmp_path: Path, annotations_dir: str):
    write_text(tmp_path / annotations_dir / "static_annotations.csv", EIM_STATIC)
    write_text(tmp_path / annotations_dir / "songs_info.csv", EIM_INFO)
    write_text(tmp_path / annotations_dir / "arousal_cont_average.csv",
               ["song_id,sample_15000ms,sample_15500ms", "2,0.1,0.2"])
    for song in ("2", "3", "5"):
        write_clip(tmp_path / "clips_45seconds" / f"{song}.mp3", 44100, 1, fmt="MP3")
    ds = load_dataset("eim", tmp_path)
    # Arousal comes first in the file: valence must be read by name.
    assert labels(ds) == {"2": (0, 0), "3": (1, 1), "5": (1, 1)}
    assert [s for s, _ in ds.skipped] == ["9"]
    info = ds.clips[0].raw
    assert info["artist"] == "The New Mystikal Troubadours" and info["title"] == "Tonight  A Lonely Century"
    assert info["set"] == "development" and info["genre"] == "Blues" and info["file_name"] == "2.mp3"
    assert ds.clips[1].raw["set"] == "evaluation" and "set" not in ds.clips[2].raw


# ------------------------------------------------------------------------------------ manifest, folder


def test_manifest_numeric_quadrant_and_unlabeled_rows(tmp_path: Path):
    write_clip(tmp_path / "audio" / "a.wav", 22050, 1)
    write_clip(tmp_path / "audio" / "b.flac", 44100, 2)
    absolute = write_clip(tmp_path / "elsewhere" / "c.ogg", 16000, 1)
    manifest = write_text(tmp_path / "lists" / "train.csv", [
        "path,song_id,valence,arousal",
        "../audio/a.wav,song-a,0.7,0.2",
        "../audio/b.flac,,0,1",
        f"{absolute},song-c,,",
        "../audio/missing.wav,song-d,1,1",
        "../audio/a.wav,song-a,0.7,0.2",
    ])
    ds = load_dataset("manifest", manifest, thresholds={"arousal": 0.1})
    clips = {c.song_id: c for c in ds.clips}
    assert set(clips) == {"song-a", "b", "song-c"}
    assert clips["song-a"].labels == {"valence": 1, "arousal": 1} and clips["song-a"].quadrant == "Q1"
    assert clips["b"].labels == {"valence": 0, "arousal": 1} and clips["b"].path.suffix == ".flac"
    assert clips["song-c"].labels is None and clips["song-c"].quadrant is None
    assert [s for s, _ in ds.skipped] == ["song-d", "song-a"] and "second annotation row" in ds.skipped[1][1]
    assert ds.binarization["arousal"].startswith(">= 0.1")


def test_manifest_several_clips_per_song(tmp_path: Path):
    for name in ("intro", "chorus", "other"):
        write_clip(tmp_path / f"{name}.wav")
    write_text(tmp_path / "manifest.csv", ["path,song_id,quadrant", "intro.wav,s1,Q1", "other.wav,s0,Q3",
                                           "chorus.wav,s1,Q1"])
    ds = load_dataset("manifest", tmp_path)
    assert [(c.song_id, c.path.name) for c in ds.clips] == [("s0", "other.wav"), ("s1", "chorus.wav"),
                                                           ("s1", "intro.wav")]


def test_manifest_quadrant_column(tmp_path: Path):
    for name in ("x", "y"):
        write_clip(tmp_path / f"{name}.wav")
    write_text(tmp_path / "manifest.csv", ["path,quadrant", "x.wav,Q2", "y.wav, q4 "])
    ds = load_dataset("manifest", tmp_path)  # a folder means its manifest.csv
    assert [(c.song_id, c.quadrant, c.labels["valence"], c.labels["arousal"]) for c in ds.clips] == [
        ("x", "Q2", 0, 1), ("y", "Q4", 1, 0)]


def test_manifest_errors_name_the_line(tmp_path: Path):
    write_clip(tmp_path / "x.wav")
    write_text(tmp_path / "bad.csv", ["path,valence,arousal,quadrant", "x.wav,1,1,Q3"])
    with pytest.raises(MerLiveError, match=r"bad.csv, line 2: quadrant Q3 contradicts"):
        load_dataset("manifest", tmp_path / "bad.csv")
    write_text(tmp_path / "nan.csv", ["path,valence,arousal", "x.wav,high,1"])
    with pytest.raises(MerLiveError, match=r"nan.csv, line 2: 'valence' is not a number"):
        load_dataset("manifest", tmp_path / "nan.csv")
    write_text(tmp_path / "nolabels.csv", ["path,mood", "x.wav,sad"])
    with pytest.raises(MerLiveError, match="needs a 'path' column"):
        load_dataset("manifest", tmp_path / "nolabels.csv")


def test_unlabeled_folder(tmp_path: Path):
    write_clip(tmp_path / "b" / "two.flac", 44100, 2)
    write_clip(tmp_path / "a.wav")
    write_clip(tmp_path / "b" / "one.ogg", 16000)
    write_text(tmp_path / "notes.txt", ["not audio"])
    ds = load_dataset("unlabeled", tmp_path)
    assert [c.song_id for c in ds.clips] == ["a", "b/one", "b/two"]
    assert all(c.labels is None and c.quadrant is None for c in ds.clips)


def test_missing_root_and_files(tmp_path: Path):
    with pytest.raises(MerLiveError, match="root not found"):
        load_dataset("pmemo", tmp_path / "nowhere")
    with pytest.raises(MerLiveError, match="no static_annotations.csv found"):
        load_dataset("pmemo", tmp_path)
    write_text(tmp_path / "static_annotations.csv", EIM_STATIC)  # EiM's file is not PMEmo's
    with pytest.raises(MerLiveError, match="no static_annotations.csv found"):
        load_dataset("pmemo", tmp_path)
    with pytest.raises(MerLiveError, match="clips_45seconds"):
        load_dataset("eim", tmp_path)
    with pytest.raises(MerLiveError, match="unknown dataset"):
        load_dataset("gtzan", tmp_path)
