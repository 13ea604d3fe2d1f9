"""The song picture: ``mer-live plot FILE`` and ``SongResult.plot()``.

Segment valence and arousal over time with the song estimate, a band of the segments' quadrants,
and the track's loudness underneath. From a file (labeled as ``mer-live label`` does) or from a
live run's JSON lines (``mer-live --mic --jsonl > live.jsonl``, then ``mer-live plot live.jsonl
--song N``): the same picture of a finished live song, its running estimate dotted, without the
loudness (JSON lines carry no audio). matplotlib (the ``plot`` extra) is imported only here, inside
the functions, so the runtime never loads it; the command is ``mer_live.plot_cli``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mer_live.errors import MerLiveError
from mer_live.stats import QUADRANTS, quadrant

COLORS = {"Q1": "#d99400", "Q2": "#d62728", "Q3": "#1f77b4", "Q4": "#2ca02c"}
VALENCE, AROUSAL = "#e8840c", "#8a4fd8"
LOUDNESS_FRAME_SECONDS = 0.1
LOUDNESS_RATE = 16000
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")


@dataclass
class Picture:
    """What one picture shows; ``starts`` are the segments' first seconds, ``ends`` their last."""

    title: str
    starts: np.ndarray
    ends: np.ndarray
    valence: np.ndarray
    arousal: np.ndarray
    song: dict[str, float]
    running: dict[str, np.ndarray] = field(default_factory=dict)  # a live song's estimate after each segment
    loudness: tuple[np.ndarray, np.ndarray] | None = None  # (seconds, dBFS)


def loudness(samples: np.ndarray, sr: int, frame_seconds: float = LOUDNESS_FRAME_SECONDS
             ) -> tuple[np.ndarray, np.ndarray]:
    """RMS level in dBFS per ``frame_seconds``, at each frame's middle."""
    hop = max(1, round(frame_seconds * sr))
    n = len(samples) // hop
    if n == 0:
        return np.zeros(0), np.zeros(0)
    frames = np.asarray(samples[: n * hop], np.float64).reshape(n, hop)
    rms = np.sqrt(np.mean(frames * frames, axis=1))
    return (np.arange(n) + 0.5) * hop / sr, 20 * np.log10(np.maximum(rms, 1e-6))


def file_loudness(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    from mer_live.audio.read import load_audio

    return loudness(load_audio(path, LOUDNESS_RATE), LOUDNESS_RATE)


def result_picture(result, segment_seconds: float | None = None, audio: np.ndarray | None = None,
                   sr: int | None = None) -> Picture:
    """A ``SongResult`` as a picture; the loudness from ``audio`` at ``sr``, else from the result's file."""
    if result.error:
        raise MerLiveError(f"{result.path}: no picture: {result.error}")
    starts = np.asarray(result.starts, np.float64)
    if segment_seconds is None:  # one hop past the last start: the tail a segment covers at most
        hop = float(np.median(np.diff(starts))) if len(starts) > 1 else result.duration
        segment_seconds = max(hop, result.duration - (starts[-1] if len(starts) else 0.0))
    if audio is not None:
        if sr is None:
            raise MerLiveError("plot(audio=...) needs sr, the samples' rate")
        from mer_live.audio.samples import to_mono

        level = loudness(to_mono(np.asarray(audio, np.float32)), sr)
    elif result.path and os.path.isfile(result.path):
        level = file_loudness(result.path)
    else:
        level = None
    name = os.path.basename(result.path) if result.path else "samples"
    return Picture(name, starts, np.minimum(starts + segment_seconds, max(result.duration, 0.0) or np.inf),
                   result.timeline("valence"), result.timeline("arousal"), dict(result.probs), loudness=level)


def live_pictures(path: str | os.PathLike) -> dict[int, Picture]:
    """Every finished song of a ``--jsonl`` output (song number -> picture). A segment event's ``t`` is
    the segment's end; the segment length is the first segment's end (the stream's first segment starts at 0)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise MerLiveError(f"{path}: cannot read it ({exc})") from None
    events = []
    for number, line in enumerate(lines, 1):
        try:
            events.append(json.loads(line)) if line.strip() else None
        except json.JSONDecodeError as exc:
            raise MerLiveError(f"{path}: line {number} is not JSON ({exc.msg}): give mer-live's --jsonl output"
                               ) from None
    segments = [e for e in events if isinstance(e, dict) and e.get("event") == "segment"]
    ends = {e["song_number"]: e for e in events if isinstance(e, dict) and e.get("event") == "song_end"}
    if not segments:
        raise MerLiveError(f"{path}: no segment events: give the output of mer-live --mic/--file/--demo --jsonl")
    length = float(segments[0]["t"])
    pictures = {}
    for number, end in ends.items():
        mine = [e for e in segments if e["song_number"] == number]
        if not mine:
            continue
        t = np.array([e["t"] for e in mine], np.float64)
        song = {"valence": float(end["valence"]), "arousal": float(end["arousal"])}
        running = {task: np.array([e["song"][task] for e in mine]) for task in ("valence", "arousal")}
        pictures[number] = Picture(f"{os.path.basename(path)}, song #{number}", t - length, t,
                                   np.array([e["segment"]["valence"] for e in mine]),
                                   np.array([e["segment"]["arousal"] for e in mine]), song, running)
    if not pictures:
        raise MerLiveError(f"{path}: no finished song (no song_end event): the run was cut off before its end")
    return pictures


def figure(picture: Picture):
    """The matplotlib figure: timelines, the quadrant band, the loudness (when there is audio)."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # no display needed; an interactive session's own backend is left alone
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = [4, 0.45] + ([1.5] if picture.loudness is not None else [])
    fig, axes = plt.subplots(len(rows), 1, sharex=True, figsize=(10, 2.2 + sum(rows)),
                             gridspec_kw={"height_ratios": rows, "hspace": 0.08})
    ax, band = axes[0], axes[1]
    mid = (picture.starts + picture.ends) / 2
    v, a = picture.song["valence"], picture.song["arousal"]
    q = quadrant(v >= 0.5, a >= 0.5)
    ax.axhline(0.5, color="#999999", lw=0.8)
    ax.plot(mid, picture.valence, color=VALENCE, lw=1.6, marker="o", ms=2.5, label="segment valence")
    ax.plot(mid, picture.arousal, color=AROUSAL, lw=1.6, marker="o", ms=2.5, label="segment arousal")
    for task, color in (("valence", VALENCE), ("arousal", AROUSAL)):
        if task in picture.running:
            ax.plot(picture.ends, picture.running[task], color=color, lw=1, ls=":",
                    label=f"running {task} estimate")
        ax.axhline(picture.song[task], color=color, lw=1.3, ls="--",
                   label=f"song {task} {picture.song[task]:.2f}")
    ax.set(ylim=(0, 1), ylabel="P(high), 0-1")
    name = picture.title.replace("$", r"\$")  # a file name is text, never matplotlib's mathtext
    ax.set_title(f"{name}: {q} {QUADRANTS[q]} (valence {v:.2f}, arousal {a:.2f})", fontsize=11)
    ax.legend(fontsize=7.5, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.005), frameon=False)
    ax.grid(alpha=0.25)
    for start, end, sv, sa in zip(picture.starts, picture.ends, picture.valence, picture.arousal):
        hop_end = min(end, start + _hop(picture))
        band.axvspan(start, hop_end, color=COLORS[quadrant(sv >= 0.5, sa >= 0.5)], lw=0)
    band.set(yticks=[], ylabel="quadrant")
    band.yaxis.label.set(rotation=0, ha="right", va="center", fontsize=8)
    band.legend(handles=[Patch(color=COLORS[k], label=f"{k} {name}") for k, name in QUADRANTS.items()],
                fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.35), frameon=False)
    if picture.loudness is not None:
        lax = axes[2]
        seconds, db = picture.loudness
        lax.fill_between(seconds, -60, np.maximum(db, -60), color="#8895a3", lw=0)
        lax.set(ylim=(-60, 0), ylabel="loudness\ndBFS")
        lax.grid(alpha=0.25)
    axes[-1].set_xlabel("time (s)")
    axes[-1].set_xlim(0, max(float(picture.ends.max(initial=0)),
                             float(picture.loudness[0].max(initial=0)) if picture.loudness is not None else 0))
    fig.subplots_adjust(left=0.09, right=0.98, top=0.93, bottom=0.1)
    return fig


def _hop(picture: Picture) -> float:
    """The band shows each segment from its start to the next one's: one colour per hop."""
    return float(np.median(np.diff(picture.starts))) if len(picture.starts) > 1 else np.inf


def save(fig, out: str | os.PathLike) -> Path:
    import matplotlib.pyplot as plt

    out = Path(out)
    try:
        fig.savefig(out, dpi=110)
    except ValueError as exc:  # an extension matplotlib cannot write
        raise MerLiveError(f"-o {out}: {exc}; name it .png, .svg or .pdf") from None
    finally:
        plt.close(fig)
    return out
