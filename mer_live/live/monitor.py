"""Live monitoring: a rich dashboard on a terminal, JSON lines otherwise.

The consuming loop runs in the main thread (the microphone callback only enqueues), feeds the
stream and hands updates to a sink: ``JsonLines`` prints one object per segment and flushes,
``Dashboard`` redraws a rich ``Live`` screen at most ten times a second. Key `r` starts a new
song; `q` or Ctrl-C quits with a summary.
"""

from __future__ import annotations

import json
import os
import select
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable

from rich.console import Console
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from mer_live.audio.read import describe_messages
from mer_live.runtime.results import Song, Update, high_low
from mer_live.runtime.stream import Stream

REDRAW_SECONDS = 0.1
TIMELINE = 48
SPARK = "▁▂▃▄▅▆▇█"
SONGS_SHOWN = 5  # finished songs on the dashboard (the exit summary lists all)
QUADRANT_STYLE = {"Q1": "bold yellow", "Q2": "bold red", "Q3": "bold blue", "Q4": "bold green"}


class JsonLines:
    """One JSON object per update on stdout, flushed, so pipes see results as they happen."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout

    def updates(self, updates: list[Update], stream: Stream) -> None:
        for update in updates:
            self.stream.write(json.dumps(update.to_json()) + "\n")
        if updates:
            self.stream.flush()

    def song_ended(self, song: Song) -> None:
        self.stream.write(json.dumps(song.to_json()) + "\n")
        self.stream.flush()

    def tick(self, stream: Stream) -> None:
        pass


def _bar(p: float, width: int = 24) -> Text:
    filled = round(max(0.0, min(1.0, p)) * width)
    style = "red" if p >= 0.5 else "cyan"
    return Text("█" * filled, style=style) + Text("░" * (width - filled), style="grey35")


def _spark(values: Iterable[float]) -> Text:
    text = Text()
    for p in values:
        text.append(SPARK[min(len(SPARK) - 1, int(p * len(SPARK)))], style="red" if p >= 0.5 else "cyan")
    return text


class Dashboard:
    """The rich screen; ``render`` reads only the stream's state."""

    def __init__(self, console: Console, source_name: str, source) -> None:
        self.console = console
        self.source_name = source_name
        self.source = source
        self.timeline: deque[Update] = deque(maxlen=TIMELINE)
        self.live = Live(self.render_waiting(), console=console, refresh_per_second=10, transient=False)
        self._last_draw = 0.0

    def render_waiting(self) -> Panel:
        return Panel(Text("starting..."), title="mer-live")

    def updates(self, updates: list[Update], stream: Stream) -> None:
        self.timeline.extend(updates)
        self.tick(stream, force=bool(updates))

    def song_ended(self, song: Song) -> None:
        pass  # render() lists stream.songs

    def tick(self, stream: Stream, force: bool = False) -> None:
        now = time.perf_counter()
        if force or now - self._last_draw >= REDRAW_SECONDS:
            self.live.update(self.render(stream))
            self._last_draw = now

    def render(self, stream: Stream) -> Panel:
        meter, latest = stream.meter, stream.latest
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", min_width=16)
        grid.add_column()
        level = max(0.0, min(1.0, (meter.level_db + 60) / 60))
        level_text = Text("█" * round(level * 24), style="green") + Text("░" * (24 - round(level * 24)),
                                                                           style="grey35")
        level_text.append(f" {meter.level_db:6.1f} dBFS")
        if meter.silent:
            level_text.append("  silence: waiting for music", style="yellow")
        grid.add_row("input level", level_text)
        if latest is None:
            grid.add_row("", Text(f"listening... the first estimate comes after "
                                  f"{stream.config.effective_segment_seconds:.1f} s of audio", style="italic"))
        else:
            grid.add_row("", "")
            grid.add_row(Text("segment", style="bold underline"),
                         Text(f"{latest.start:.1f}-{latest.t:.1f} s, P(high) on 0-1", style="dim"))
            for task in ("valence", "arousal"):
                p = latest.segment[task]
                grid.add_row(f"  {task}", _bar(p) + Text(f" {p:.2f} {high_low(p)}"))
            grid.add_row("", "")
            grid.add_row(Text("song", style="bold underline"),
                         Text(f"over the last {latest.song.n_segments} segments (horizon "
                              f"{stream.horizon:.0f} s, {stream.stats.capacity} segments)", style="dim"))
            for task in ("valence", "arousal"):
                p = latest.song.probs[task]
                grid.add_row(f"  {task}", _bar(p) + Text(f" {p:.2f} {high_low(p)}", style="bold"))
            q = latest.song.quadrant
            grid.add_row("  quadrant", Text(f"{q} {latest.song.quadrant_name}", style=QUADRANT_STYLE[q]))
        for song in stream.songs[-SONGS_SHOWN:]:
            grid.add_row(f"  song #{song.number}",
                         Text(f"{song.start:.0f}-{song.end:.0f} s  valence {song.valence:.2f}  arousal "
                              f"{song.arousal:.2f}  ", style="dim")
                         + Text(f"{song.quadrant} {song.quadrant_name}", style=QUADRANT_STYLE[song.quadrant]))
        grid.add_row("", "")
        grid.add_row("timeline valence", _spark(u.segment["valence"] for u in self.timeline))
        grid.add_row("timeline arousal", _spark(u.segment["arousal"] for u in self.timeline))
        grid.add_row("", "")
        p50, p95 = meter.percentile(50), meter.percentile(95)
        c50, c95 = meter.percentile(50, meter.computes), meter.percentile(95, meter.computes)
        timing = "-" if p50 is None else (f"latency p50 {p50:.1f} ms  p95 {p95:.1f} ms  "
                                          f"(compute p50 {c50:.1f} ms  p95 {c95:.1f} ms)")
        grid.add_row("updates", timing)
        grid.add_row("status", f"provider {stream.provider}  audio {stream.time:.1f} s  "
                               f"song #{stream.song_number}  overflows {self.source.overflows}  "
                               f"drops {self.source.drops}")
        return Panel(grid, title=Text(f"mer-live: {self.source_name}"),  # Text: a name is never markup
                     subtitle="r: new song  q / Ctrl-C: quit", border_style="blue")


class Keys:
    """Reads single keys from a terminal stdin in cbreak mode; restores the terminal on exit."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.reset_requested = threading.Event()
        self._saved = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Keys:
        if not sys.stdin.isatty():
            return self
        import termios
        import tty

        fd = sys.stdin.fileno()
        self._saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        self._thread = threading.Thread(target=self._read, args=(fd,), daemon=True)
        self._thread.start()
        return self

    def _read(self, fd: int) -> None:
        while not self.stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            key = os.read(fd, 1).decode(errors="ignore").lower()
            if key == "r":
                self.reset_requested.set()
            elif key == "q":
                self.stop.set()

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)
        if self._saved is not None:
            import termios

            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._saved)


def run(stream: Stream, source, sink, stop: threading.Event, duration: float | None,
        keys: Keys | None = None) -> bool:
    """Feed the source's blocks through the stream until it ends, ``stop`` or ``duration``.

    Returns True when the source ran to its end (so the tail was flushed).
    """
    wall_limit = None if duration is None else time.perf_counter() + 2 * duration + 10
    ended = True
    for block in source:
        if keys is not None and keys.reset_requested.is_set():
            keys.reset_requested.clear()
            _song_ended(sink, stream.new_song())
        updates = stream.feed(block.samples, arrival=block.arrival)
        _song_ended(sink, updates.song_end)  # silence ended one (or None)
        if updates:
            sink.updates(updates, stream)
        else:
            sink.tick(stream)
        if stop.is_set() or (duration is not None and (
                stream.time >= duration or time.perf_counter() >= wall_limit)):
            ended = False
            break
    if ended and not stop.is_set():
        sink.updates(stream.finish(), stream)
    return ended and not stop.is_set()  # a source also ends early when stop is set (a signal, `q`)


def end_stream(stream: Stream, sink) -> None:
    """The stream is over: its last song ends too, with its whole-song estimate."""
    _song_ended(sink, stream.end_song())


def _song_ended(sink, song: Song | None) -> None:
    if song is not None:
        sink.song_ended(song)


def summary(stream: Stream, source, whole_file: bool = False) -> str:
    """Counters, every finished song (whole-song estimates), and the last horizon's estimate."""
    meter, latest = stream.meter, stream.latest
    parts = [f"{stream.time:.1f} s of audio", f"{stream.segments_emitted} segments",
             f"provider {stream.provider}"]
    if meter.latencies:
        parts.append(f"latency p50 {meter.percentile(50):.1f} ms p95 {meter.percentile(95):.1f} ms")
    parts.append(f"overflows {source.overflows} drops {source.drops}")
    text = "mer-live: " + ", ".join(parts)
    if latest is not None:
        text += (f"\nsong estimate: {latest.song.describe()} over {latest.song.n_segments} segments "
                 f"(the last {stream.horizon:.0f} s)")
    messages = getattr(source, "messages", None)
    if messages:
        text += f"\nwarning: {source.name}: {describe_messages(messages)}"
    if whole_file and stream.songs:
        text += f"\nwhole-file estimate (as mer-live label gives it): {stream.songs[-1].describe()}"
    elif stream.songs:
        text += "\n" + "\n".join(song.describe() for song in stream.songs)
    return text


def _beside(sink, page):
    if page is None:
        return sink
    from mer_live.live.web import Tee

    return Tee(sink, page)


def monitor(stream: Stream, source, source_name: str, stop: threading.Event, jsonl: bool,
            duration: float | None, whole_file: bool = False, page=None) -> int:
    """Run live monitoring to the end of the source, ``duration``, `q` or Ctrl-C.

    ``whole_file``: the source is one file, so its end reports the whole-file estimate as well.
    ``page``: a second sink beside the dashboard or the JSON lines (the live page of ``--web``)."""
    interactive = not jsonl and sys.stdout.isatty()
    try:
        if not interactive:
            sink, ended = _beside(JsonLines(), page), False
            try:
                try:
                    ended = run(stream, source, sink, stop, duration)
                except KeyboardInterrupt:
                    pass
                end_stream(stream, sink)
            except BrokenPipeError:  # the reader went away (`| head`): stop quietly
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                stream.end_song()
            print(summary(stream, source, whole_file and ended), file=sys.stderr)
            return 0
        console = Console()
        dashboard = Dashboard(console, source_name, source)
        ended = False
        sink = _beside(dashboard, page)
        with Keys(stop) as keys, dashboard.live:
            try:
                ended = run(stream, source, sink, stop, duration, keys)
            except KeyboardInterrupt:
                pass
            end_stream(stream, sink)
            dashboard.live.update(dashboard.render(stream))
        console.print(summary(stream, source, whole_file and ended), markup=False, highlight=False)
        return 0
    finally:
        stop.set()

