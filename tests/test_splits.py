"""Song-level stratified folds and train/validation splits."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from mer_live.errors import MerLiveError
from mer_live.train.datasets import Clip, make_clip
from mer_live.train.labels import QUADRANT_LABELS, QUADRANTS
from mer_live.train.splits import song_folds, train_val_split


def corpus(n_songs: int = 40, clips_per_song: tuple[int, ...] = (1, 2, 3)) -> list[Clip]:
    """Songs cycling through the quadrants, each with 1-3 clips (e.g. several excerpts of one song)."""
    clips = []
    for s in range(n_songs):
        quadrant = QUADRANTS[s % 4]
        for k in range(clips_per_song[s % len(clips_per_song)]):
            clips.append(make_clip(Path(f"s{s}_{k}.wav"), f"song{s}", dict(QUADRANT_LABELS[quadrant]), {}))
    return clips


def songs(clips: list[Clip], indices: list[int]) -> set[str]:
    return {clips[i].song_id for i in indices}


def test_folds_partition_by_song_and_stratify():
    clips = corpus()
    folds = song_folds(clips, n_folds=5, seed=3)
    assert len(folds) == 5
    all_val = sorted(i for _, val in folds for i in val)
    assert all_val == list(range(len(clips)))  # every clip validated exactly once
    for train, val in folds:
        assert sorted(train + val) == list(range(len(clips)))
        assert not songs(clips, train) & songs(clips, val)
        val_songs = {clips[i].song_id: clips[i].quadrant for i in val}
        assert Counter(val_songs.values()) == {q: 2 for q in QUADRANTS}  # 40 songs / 5 folds, per quadrant


def test_folds_deterministic_and_seeded():
    clips = corpus()
    assert song_folds(clips, 4, seed=1) == song_folds(clips, 4, seed=1)
    assert song_folds(clips, 4, seed=1) != song_folds(clips, 4, seed=2)


def test_folds_stratify_partial_and_missing_labels():
    clips = [make_clip(Path(f"{i}.wav"), f"v{i}", {"valence": i % 2}, {}) for i in range(12)]
    clips += [make_clip(Path(f"u{i}.wav"), f"u{i}", None, {}) for i in range(6)]
    for _, val in song_folds(clips, 3, seed=0):
        kinds = Counter("none" if clips[i].labels is None else clips[i].labels["valence"] for i in val)
        assert kinds == {0: 2, 1: 2, "none": 2}


def test_folds_reject_too_many_folds():
    with pytest.raises(MerLiveError, match="folds"):
        song_folds(corpus(n_songs=3), n_folds=4, seed=0)


def test_train_val_split_by_song_stratified():
    clips = corpus(n_songs=40)
    indices = [i for i, c in enumerate(clips) if c.song_id != "song0"]  # a subset, as inside a fold
    train, val = train_val_split(indices, clips, val_fraction=0.2, seed=5)
    assert sorted(train + val) == sorted(indices)
    assert not songs(clips, train) & songs(clips, val)
    val_songs = {clips[i].song_id: clips[i].quadrant for i in val}
    assert len(val_songs) == round(0.2 * 39)
    assert set(Counter(val_songs.values()).values()) <= {2}  # 8 songs: 2 per quadrant
    assert (train, val) == train_val_split(indices, clips, 0.2, seed=5)
    assert (train, val) != train_val_split(indices, clips, 0.2, seed=6)


def test_train_val_split_keeps_both_sides():
    clips = corpus(n_songs=2)
    train, val = train_val_split(list(range(len(clips))), clips, val_fraction=0.01, seed=0)
    assert len(songs(clips, train)) == 1 and len(songs(clips, val)) == 1
    with pytest.raises(MerLiveError):
        train_val_split([0], clips, 0.5, seed=0)


def test_train_val_split_can_hold_nothing_out():
    clips = corpus(n_songs=8)
    indices = list(range(len(clips)))[::-1]
    assert train_val_split(indices, clips, val_fraction=0, seed=0) == (sorted(indices), [])
    with pytest.raises(MerLiveError, match="at least 0 and below 1"):
        train_val_split(indices, clips, 1.0, seed=0)
