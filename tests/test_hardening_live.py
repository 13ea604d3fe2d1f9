"""Live faults with real processes: a missing or vanishing input device, a full queue, Ctrl-C in JSON-lines
mode and on the dashboard (the terminal comes back as it was). The device cases use the isolated
PulseAudio daemon of tests/test_capture.py and skip, saying why, where it cannot run."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import termios
import threading
import time

from tests.conftest import REPO
from tests.realtime_helpers import music_wav, tiny_bundle
from tests.test_capture import pulse  # noqa: F401 - the fixture

PYTHON_MER_LIVE = [sys.executable, "-m", "mer_live"]


def test_missing_input_device_is_one_line() -> None:
    result = subprocess.run([*PYTHON_MER_LIVE, "--mic", "--device", "no-such-device-xyz", "--jsonl", "--model",
                             str(tiny_bundle().path)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("mer-live: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_device_vanishing_mid_stream_ends_with_a_message(pulse) -> None:  # noqa: F811
    player = subprocess.Popen(["paplay", "--device=mer_null", str(music_wav(60.0))], env=pulse)
    proc = subprocess.Popen([*PYTHON_MER_LIVE, "--mic", "--device", "pulse", "--jsonl", "--model",
                             str(tiny_bundle().path)], env=pulse, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()  # recording for real
        assert json.loads(first)["song"]["segments"] >= 1, proc.stderr.read() if not first else first
        subprocess.run(["pulseaudio", "--kill"], env=pulse, timeout=30)
        killed = time.monotonic()
        _, err = proc.communicate(timeout=30)
    finally:
        for p in (proc, player):
            p.kill()
            p.wait()
    assert time.monotonic() - killed < 15
    assert proc.returncode == 2, err
    assert err.strip().splitlines()[-1].startswith("mer-live: error: input device 'pulse' stopped delivering audio")
    assert "Traceback" not in err


CALLBACK = """
import io, json, queue, sys
import numpy as np, sounddevice as sd
from rich.console import Console
from mer_live.runtime.bundle import load_bundle
from mer_live.api import Model
from mer_live.live.monitor import Dashboard, summary
from mer_live.live.sources import MicSource

bundle = load_bundle(sys.argv[1])
source = MicSource(bundle.audio.sample_rate, "pulse")  # a real PortAudio stream, not started
source._queue = queue.Queue(maxsize=2)
for i in range(5):
    status = sd.CallbackFlags()
    status.input_overflow = i % 2 == 0
    source._callback(np.zeros((256, 1), np.float32), 256, None, status)  # must never raise
pipeline = Model(bundle, provider="cpu").stream()
console = Console(file=io.StringIO(), width=140)
console.print(Dashboard(console, "test", source).render(pipeline))
print(json.dumps({"overflows": source.overflows, "drops": source.drops, "queued": source._queue.qsize(),
                  "summary": summary(pipeline, source), "dashboard": console.file.getvalue()}))
"""


def test_overflows_and_a_full_queue_are_counted_and_shown(pulse) -> None:  # noqa: F811
    """The PortAudio callback itself (plain Python) on a real input stream, with a queue of two blocks."""
    result = subprocess.run([sys.executable, "-c", CALLBACK, str(tiny_bundle().path)], env=pulse, cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    assert (got["overflows"], got["drops"], got["queued"]) == (3, 3, 2)
    assert "overflows 3 drops 3" in got["summary"]
    assert "overflows 3" in got["dashboard"] and "drops 3" in got["dashboard"]


def test_ctrl_c_in_json_lines_mode_prints_the_summary() -> None:
    proc = subprocess.Popen([*PYTHON_MER_LIVE, "--file", str(music_wav()), "--jsonl", "--model",
                             str(tiny_bundle().path)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        json.loads(proc.stdout.readline())  # streaming at real-time pace: the first estimate is out
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode in (0, 130), err
    assert "s of audio" in err and "song estimate" in err and "Traceback" not in err
    assert all(json.loads(line) for line in out.splitlines())  # nothing torn on stdout


def test_ctrl_c_on_the_dashboard_restores_the_terminal() -> None:
    """The dashboard on a real pseudo-terminal: keys switch it to cbreak mode; Ctrl-C puts it back."""
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    proc = subprocess.Popen([*PYTHON_MER_LIVE, "--file", str(music_wav()), "--model", str(tiny_bundle().path)],
                            cwd=REPO, stdin=slave, stdout=slave, stderr=slave, env={**os.environ, "TERM": "xterm"})
    screen = bytearray()

    def drain() -> None:  # keep reading, or the child blocks on a full terminal buffer
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            screen.extend(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while b"quadrant" not in screen:  # the first estimate is on screen, the keys are in cbreak mode
            assert proc.poll() is None and time.monotonic() < deadline, screen.decode(errors="replace")[-2000:]
            time.sleep(0.05)
        assert not termios.tcgetattr(slave)[3] & termios.ICANON
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) in (0, 130)
        after = termios.tcgetattr(slave)
    finally:
        proc.kill()
        proc.wait()
        os.close(slave)
        reader.join(timeout=5)
        os.close(master)
    assert after == before  # echo and line editing are back
    text = screen.decode(errors="replace")
    assert "song estimate" in text and "Traceback" not in text
