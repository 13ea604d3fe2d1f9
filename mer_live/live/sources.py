"""Audio sources for live monitoring: the microphone, a file, a generated stream.

Every source yields ``Block``s of mono float32 at the bundle's sample rate. The microphone's
PortAudio callback only copies its block into a bounded queue and counts overflows and drops;
resampling and inference run in the consuming thread, so the callback never blocks.
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from mer_live.audio.read import decoder_messages, is_stream, iter_audio_blocks
from mer_live.audio.samples import StreamResampler
from mer_live.errors import MerLiveError

QUEUE_BLOCKS = 4096  # bounded: ~10 s or more of PortAudio blocks
STALL_SECONDS = 5.0  # a live input that delivers nothing for this long has gone away
FILE_BLOCK_SECONDS = 0.05


@dataclass
class Block:
    """Mono float32 samples at the bundle rate and when they became available (perf_counter)."""

    samples: np.ndarray
    arrival: float


def _sounddevice():
    try:
        import sounddevice
    except OSError as exc:  # raised when the PortAudio library itself is missing
        raise MerLiveError(f"audio input unavailable: PortAudio not found ({exc}); install libportaudio2 "
                           "(Debian/Ubuntu) or portaudio (Homebrew)") from None
    return sounddevice


def input_devices() -> list[dict]:
    """Devices with input channels, as sounddevice reports them (with their index)."""
    sd = _sounddevice()
    return [dict(d) for d in sd.query_devices() if d["max_input_channels"] > 0]


def has_input_device() -> bool:
    try:
        return bool(input_devices())
    except MerLiveError:
        return False


def describe_devices() -> str:
    sd = _sounddevice()
    devices = input_devices()
    if not devices:
        return "no audio input devices found (is a microphone connected? PortAudio sees none)"
    try:
        default = sd.default.device[0]
    except Exception:  # noqa: BLE001 - a missing default is not an error here
        default = None
    lines = ["audio input devices (use --device INDEX or a unique part of the name):"]
    for d in devices:
        mark = "*" if d["index"] == default else " "
        lines.append(f" {mark} {d['index']:>3}  {d['name']}  ({d['max_input_channels']} ch, "
                     f"{d['default_samplerate']:.0f} Hz)")
    return "\n".join(lines)


def _device_arg(device: str | None) -> int | str | None:
    if device is None:
        return None
    return int(device) if device.strip().isdigit() else device


class MicSource:
    """Live capture through sounddevice; iterate to get blocks until ``stop`` is set."""

    def __init__(self, out_rate: int, device: str | None = None, stop: threading.Event | None = None) -> None:
        self._sd = sd = _sounddevice()
        self.stop = stop or threading.Event()
        self.overflows = 0
        self.drops = 0
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_BLOCKS)
        try:
            info = sd.query_devices(_device_arg(device), "input")
        except (ValueError, sd.PortAudioError) as exc:
            raise MerLiveError(f"no usable input device {device or '(default)'}: {exc}; "
                               "see `mer-live --list-devices`") from None
        self.name = info["name"]
        self.rate = int(info["default_samplerate"])
        self._resample = StreamResampler(self.rate, out_rate)
        try:
            self._stream = sd.InputStream(device=info["index"], channels=1, samplerate=self.rate,
                                          dtype="float32", blocksize=0, latency="low", callback=self._callback)
        except sd.PortAudioError as exc:
            raise MerLiveError(f"cannot open input device {self.name!r}: {exc}") from None

    def _callback(self, indata: np.ndarray, frames: int, when, status) -> None:
        """Runs at real-time priority: copy, enqueue, count. Nothing that can block or raise."""
        if status.input_overflow:
            self.overflows += 1
        try:
            self._queue.put_nowait((indata.copy(), time.perf_counter()))
        except queue.Full:
            self.drops += 1

    def __iter__(self) -> Iterator[Block]:
        try:
            self._stream.start()
        except self._sd.PortAudioError as exc:
            raise MerLiveError(f"cannot start input device {self.name!r}: {exc}") from None
        try:
            last = time.perf_counter()
            while not self.stop.is_set():
                try:
                    data, arrival = self._queue.get(timeout=0.1)
                except queue.Empty:
                    if not self._stream.active or time.perf_counter() - last > STALL_SECONDS:
                        raise MerLiveError(f"input device {self.name!r} stopped delivering audio (unplugged, or "
                                           "its audio server ended?)") from None
                    continue
                last = time.perf_counter()
                out = self._resample(data)
                if len(out):
                    yield Block(out, arrival)
        finally:
            try:  # a vanished device may fail to stop: nothing is left to release then
                self._stream.close(ignore_errors=True)
            except self._sd.PortAudioError:
                pass


def paced(blocks: Iterable[np.ndarray], rate: int, realtime: bool, stop: threading.Event) -> Iterator[Block]:
    """Release blocks no faster than ``rate`` samples per wall-clock second (or at once)."""
    start = time.perf_counter()
    sent = 0
    for samples in blocks:
        if stop.is_set():
            return
        sent += len(samples)
        if realtime:
            delay = start + sent / rate - time.perf_counter()
            if delay > 0:
                if stop.wait(delay):
                    return
        yield Block(samples, time.perf_counter())


class FileSource:
    """A file decoded from disk in small blocks, at real-time pace or (``fast``) at once."""

    def __init__(self, path: str | os.PathLike, out_rate: int, fast: bool = False,
                 stop: threading.Event | None = None, block_seconds: float = FILE_BLOCK_SECONDS) -> None:
        self.path, self.out_rate, self.block_seconds = path, out_rate, block_seconds
        self.fast = fast or is_stream(path)  # a pipe or FIFO paces itself: read it as it arrives
        self.stop = stop or threading.Event()
        self.overflows = self.drops = 0
        self.messages: list[str] = []  # decoder messages about this file (at most 100 kept)
        self.name = "standard input" if str(path) == "-" else str(path)

    def __iter__(self) -> Iterator[Block]:
        return paced(self._decoded(), self.out_rate, not self.fast, self.stop)

    def _decoded(self) -> Iterator[np.ndarray]:
        """The file's blocks; what the C decoders print meanwhile goes to ``messages`` (the summary
        names the file), not onto the dashboard."""
        blocks = iter_audio_blocks(self.path, self.out_rate, self.block_seconds)
        with tempfile.TemporaryFile() as sink:
            while True:
                with decoder_messages(sink) as lines:
                    block = next(blocks, None)
                self.messages.extend(lines[: max(0, 100 - len(self.messages))])
                if block is None:
                    return
                yield block


class ArraySource:
    """Samples already at the bundle rate (the generated demo), played in small blocks."""

    def __init__(self, samples: np.ndarray, rate: int, name: str, fast: bool = False,
                 stop: threading.Event | None = None, block_seconds: float = FILE_BLOCK_SECONDS) -> None:
        self.samples, self.rate, self.name, self.fast = samples, rate, name, fast
        self.stop = stop or threading.Event()
        self.overflows = self.drops = 0
        self.block = max(1, round(block_seconds * rate))

    def __iter__(self) -> Iterator[Block]:
        blocks = (self.samples[i : i + self.block] for i in range(0, len(self.samples), self.block))
        return paced(blocks, self.rate, not self.fast, self.stop)
