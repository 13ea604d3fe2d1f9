"""Seeded, stratified splits by song: clips of one song never sit on both sides of a split.

Segments of one song are near-duplicates, so splitting clips (or segments) at random leaks the
validation songs into training and inflates every score. Songs are stratified by quadrant (or
by whichever binary labels they have), so each fold sees the label mix of the whole set.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from mer_live.config import TASKS
from mer_live.errors import MerLiveError
from mer_live.train.datasets import Clip


def stratum(clip: Clip) -> str:
    """Quadrant when both labels are known, else the known labels, else 'unlabeled'."""
    if clip.quadrant is not None:
        return clip.quadrant
    if clip.labels:
        return ",".join(f"{task}={clip.labels[task]}" for task in TASKS if task in clip.labels)
    return "unlabeled"


def group_songs(indices: Sequence[int], clips: Sequence[Clip]) -> dict[str, list[int]]:
    """Song id -> its clip indices, in first-seen order."""
    songs: dict[str, list[int]] = defaultdict(list)
    for i in indices:
        songs[clips[i].song_id].append(int(i))
    return dict(songs)


def songs_by_stratum(songs: dict[str, list[int]], clips: Sequence[Clip], rng: np.random.Generator) -> dict:
    """Stratum -> song ids in a seeded random order; a song's stratum is its clips' majority."""
    strata: dict[str, list[str]] = defaultdict(list)
    for song in sorted(songs):
        votes = Counter(stratum(clips[i]) for i in songs[song])
        strata[min(votes, key=lambda s: (-votes[s], s))].append(song)
    return {name: [strata[name][j] for j in rng.permutation(len(strata[name]))] for name in sorted(strata)}


def song_folds(clips: Sequence[Clip], n_folds: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """K (train, validation) index pairs; every song is in exactly one validation fold.

    Songs of each stratum are dealt, largest first, to the fold holding the fewest clips of that
    stratum (then the fewest clips overall), which balances strata and sizes even when songs
    have different numbers of clips.
    """
    songs = group_songs(range(len(clips)), clips)
    if not 2 <= n_folds <= len(songs):
        raise MerLiveError(f"need 2 <= folds <= number of songs ({len(songs)}), got {n_folds}")
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    totals = np.zeros(n_folds, dtype=np.int64)
    for members in songs_by_stratum(songs, clips, rng).values():
        counts = np.zeros(n_folds, dtype=np.int64)
        order = rng.permutation(n_folds)  # breaks ties differently per stratum
        for song in sorted(members, key=lambda s: -len(songs[s])):
            fold = min(order, key=lambda f: (counts[f], totals[f]))
            fold_of[song] = int(fold)
            counts[fold] += len(songs[song])
            totals[fold] += len(songs[song])
    folds = []
    for k in range(n_folds):
        val = sorted(i for song, idx in songs.items() if fold_of[song] == k for i in idx)
        train = sorted(i for song, idx in songs.items() if fold_of[song] != k for i in idx)
        folds.append((train, val))
    return folds


def train_val_split(
    indices: Sequence[int], clips: Sequence[Clip], val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Split ``indices`` into (train, validation) by song, about ``val_fraction`` of songs to validation.

    Per-stratum quotas use largest remainders, so the total is right even for small strata;
    both sides keep at least one song. ``val_fraction`` 0 holds none out: (every index, []).
    """
    if not 0 <= val_fraction < 1:
        raise MerLiveError(f"val_fraction must be at least 0 and below 1, got {val_fraction}")
    if val_fraction == 0:
        return sorted(indices), []
    songs = group_songs(indices, clips)
    if len(songs) < 2:
        raise MerLiveError(f"need at least 2 songs to hold some out for validation, got {len(songs)}")
    rng = np.random.default_rng(seed)
    strata = songs_by_stratum(songs, clips, rng)
    target = min(max(1, round(val_fraction * len(songs))), len(songs) - 1)
    exact = {name: val_fraction * len(members) for name, members in strata.items()}
    quota = {name: int(x) for name, x in exact.items()}
    by_remainder = sorted(strata, key=lambda name: (-(exact[name] - quota[name]), name))
    for name in by_remainder[: max(0, target - sum(quota.values()))]:
        quota[name] += 1
    val_songs = {song for name, members in strata.items() for song in members[: quota[name]]}
    train = sorted(i for song, idx in songs.items() if song not in val_songs for i in idx)
    val = sorted(i for song, idx in songs.items() if song in val_songs for i in idx)
    return train, val


def stratified_share(indices: Sequence[int], clips: Sequence[Clip], share: float, seed: int) -> list[int]:
    """About ``share`` of the songs of ``indices`` (all of them at 1), stratified as every split here: the
    training songs of one point of a learning curve."""
    return list(indices) if share >= 1 else train_val_split(indices, clips, 1 - share, seed)[0]
