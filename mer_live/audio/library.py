"""Finding the audio files of a music library: named files, folders, recursion, patterns, hidden files.

A file is known by its real path, so one file reached by two spellings is labeled once; what a
scan passes over (files that are not audio, dot-files) is counted so the summary can say so.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from fnmatch import fnmatch

from mer_live.audio.read import AUDIO_EXTENSIONS


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


def passed_over(found: Found) -> str:
    parts = []
    if found.skipped:
        n = sum(found.skipped.values())
        parts.append(f"skipped {n} file{'s' * (n != 1)} that {'are' if n != 1 else 'is'} not audio: "
                     + ", ".join(sorted(found.skipped)))
    if found.hidden:
        parts.append(f"skipped {found.hidden} hidden file{'s' * (found.hidden != 1)} or folder"
                     f"{'s' * (found.hidden != 1)} (--hidden to include)")
    return "".join(f"; {p}" for p in parts)
