"""Stopping cleanly with a server thread beside the loop (issue 19, item 7): SIGTERM twice and SIGINT three
times, on the dashboard (a real pseudo-terminal) and with --web, end in the summary, exit 0, no traceback,
the page told "stopped", its port closed, and nothing of the run left in its process group."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from tests.conftest import REPO
from tests.realtime_helpers import music_wav, tiny_bundle
from tests.test_hardening_signals import alive_in_group, wait_group_empty

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc")


class Terminal:
    """mer-live on a pseudo-terminal in its own session; ``screen`` collects what it draws."""

    def __init__(self, *args: str) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([sys.executable, "-m", "mer_live", *args], cwd=REPO, stdin=slave, stdout=slave,
                                     stderr=slave, env={**os.environ, "TERM": "xterm", "COLUMNS": "100"},
                                     start_new_session=True)
        os.close(slave)
        self.screen = bytearray()
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self) -> None:  # keep reading, or the child blocks on a full terminal buffer
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.screen.extend(data)

    def text(self) -> str:
        return self.screen.decode(errors="replace")

    def wait_for(self, needle: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            assert self.proc.poll() is None, f"ended ({self.proc.returncode}) before {needle!r}:\n{self.text()[-3000:]}"
            assert time.monotonic() < deadline, f"no {needle!r} after {timeout} s:\n{self.text()[-3000:]}"
            time.sleep(0.05)

    def close(self) -> None:
        if self.proc.poll() is None or alive_in_group(self.proc.pid):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.reader.join(timeout=5)
        os.close(self.master)


def listen(url: str, events: list[dict]) -> threading.Thread:
    """A page's event stream, read in a thread until the server ends it."""
    def read() -> None:
        with urllib.request.urlopen(url + "events", timeout=60) as stream:
            for line in stream:
                if line.startswith(b"data: "):
                    events.append(json.loads(line[6:]))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


SIGNALS = {"TERM twice": [signal.SIGTERM] * 2, "INT three times": [signal.SIGINT] * 3}


@pytest.mark.parametrize("web", [False, True], ids=["dashboard", "dashboard and --web"])
@pytest.mark.parametrize("burst", list(SIGNALS), ids=list(SIGNALS))
def test_repeated_signals_end_in_the_summary(burst: str, web: bool) -> None:
    args = ["--file", str(music_wav(seconds=40.0)), "--model", str(tiny_bundle().path)] + (["--web", "0"] if web
                                                                                          else [])
    term = Terminal(*args)
    events: list[dict] = []
    try:
        term.wait_for("quadrant")  # the first estimate is on the dashboard
        if web:
            url = re.search(r"live page at (http://127\.0\.0\.1:\d+/)", term.text()).group(1)
            reader = listen(url, events)
            deadline = time.monotonic() + 30
            while not any(e["event"] == "segment" for e in events):
                assert time.monotonic() < deadline, events
                time.sleep(0.05)
        for sig in SIGNALS[burst]:  # as `timeout` and a closing terminal send them: close together
            os.kill(term.proc.pid, sig)
            time.sleep(0.02)
        assert term.proc.wait(timeout=30) == 0, re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", term.text())[-2500:]
        wait_group_empty(term.proc.pid, timeout=10)
        time.sleep(0.2)
        text = term.text()
        assert "Traceback" not in text and "Error" not in text, text[-3000:]
        assert "s of audio" in text and "song estimate:" in text  # the summary
        assert "whole-file estimate" not in text  # stopped mid-file: no claim to the whole file's number
        if web:
            reader.join(timeout=10)
            assert not reader.is_alive()
            assert events[-1]["event"] == "stopped" and events[-2]["event"] == "song_end", events[-3:]
            port = int(url.rsplit(":", 1)[1].strip("/"))
            with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
                pass  # the server is gone with the process
    finally:
        term.close()
