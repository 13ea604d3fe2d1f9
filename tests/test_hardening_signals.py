"""Interruptions lose nothing and leave nothing behind (issue 12, items 6 and 7): killing only the main
`mer-live label` process takes its workers with it, SIGTERM and Ctrl-C write every row labeled so far
before exiting 130, and after any exit no process of the run is left in its process group."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import REPO
from tests.realtime_helpers import tiny_bundle

FILES = 60
SECONDS = 12.0


@pytest.fixture(scope="module")
def many_files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("signals")
    t = np.arange(int(SECONDS * 8000)) / 8000
    for i in range(FILES):
        sf.write(root / f"clip_{i:03d}.wav", (0.3 * np.sin(2 * np.pi * (200 + 15 * i) * t)).astype(np.float32), 8000)
    return root


def alive_in_group(pgid: int) -> list[str]:
    """Processes (not zombies) whose process group is ``pgid``, as 'pid comm'."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm_end = stat.rindex(")")
        fields = stat[comm_end + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(f"{entry.name} {stat[stat.index('(') + 1 : comm_end]}")
    return found


def wait_group_empty(pgid: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while alive_in_group(pgid):
        assert time.monotonic() < deadline, f"still running after {timeout} s: {alive_in_group(pgid)}"
        time.sleep(0.1)


def start(*args) -> subprocess.Popen:
    """`mer-live label` in its own session (so its process group is only this run), printing progress often."""
    return subprocess.Popen([sys.executable, "-m", "mer_live", "label", *map(str, args), "--model", tiny_bundle().path,
                             "--progress-every", "0.2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, cwd=REPO, start_new_session=True)


def wait_mid_run(proc: subprocess.Popen) -> str:
    """Read stderr until the first progress line (files are being labeled), and return it."""
    while True:
        line = proc.stderr.readline()
        assert line, f"ended before it was mid-run (exit {proc.wait()})"
        if "mer-live: labeling " in line:
            return line


pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


def test_killing_only_the_main_process_takes_the_workers_with_it(many_files, tmp_path):
    proc = start(many_files, "--out", tmp_path / "k.csv", "--workers", 2)
    try:
        wait_mid_run(proc)
        assert len(alive_in_group(proc.pid)) >= 3  # main, two workers (and the resource tracker)
        os.kill(proc.pid, signal.SIGKILL)  # the main process only, as `kill -9 $!` does
        proc.wait(timeout=30)
        wait_group_empty(proc.pid)
    finally:
        if alive_in_group(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_write_every_row_labeled_before_exiting(many_files, tmp_path, sig):
    out = tmp_path / "labels.csv"
    proc = start(many_files, "--out", out, "--workers", 2, "--save-every", 3600)  # no periodic save after the start
    try:
        wait_mid_run(proc)
        os.kill(proc.pid, sig)  # SIGINT to the main process alone: the workers are left to it
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        assert "mer-live: interrupted: the " in err and "--resume continues" in err
        done = int(err.split("mer-live: interrupted: the ")[1].split()[0])
        rows = list(csv.DictReader(out.open()))
        assert 0 < len(rows) == done < FILES
        assert all(r["error"] == "" for r in rows)
        wait_group_empty(proc.pid)
    finally:
        if alive_in_group(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)


def test_nothing_is_left_running_after_a_normal_exit(many_files, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "mer_live", "label", many_files / "clip_000.wav",
                             many_files / "clip_001.wav", "--model", tiny_bundle().path, "--workers", "2", "--out",
                             tmp_path / "a.jsonl"], stderr=subprocess.PIPE, text=True, cwd=REPO,
                            start_new_session=True)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    wait_group_empty(proc.pid, timeout=5.0)
