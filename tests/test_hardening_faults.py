"""Nothing lost: real `mer-live` processes killed with SIGKILL part-way leave outputs that parse and
that `--resume` finishes; output paths that cannot be written are refused in one line up front."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mer_live.label.rows import COLUMNS
from mer_live.train.synth import make_synth_corpus
from tests.conftest import REPO
from tests.realtime_helpers import tiny_bundle

FILES = 100
SECONDS = 12.0  # 20 minutes of audio in all: seconds of labeling, so a kill at the first save lands mid-run


def mer_live(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mer_live", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=300, **kwargs)


def start(*args) -> subprocess.Popen:
    """A `mer-live` process in its own process group, so a kill reaches its workers too."""
    return subprocess.Popen([sys.executable, "-m", "mer_live", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, start_new_session=True)


def kill_when(proc: subprocess.Popen, ready, timeout: float = 120.0) -> None:
    """SIGKILL the process group as soon as ``ready()``; fail if the process ended first."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"ended before it could be killed mid-run: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "timed out waiting to kill"
        time.sleep(0.02)
    assert proc.poll() is None, "ended before it could be killed mid-run"
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


@pytest.fixture(scope="module")
def many_files(tmp_path_factory) -> Path:
    """FILES short WAVs of different tones at 8 kHz (cheap to write, resampled when read)."""
    root = tmp_path_factory.mktemp("many")
    t = np.arange(int(SECONDS * 8000)) / 8000
    for i in range(FILES):
        sf.write(root / f"clip_{i:03d}.wav", (0.3 * np.sin(2 * np.pi * (200 + 15 * i) * t)).astype(np.float32), 8000)
    return root


def parse(text: str, fmt: str) -> list[dict]:
    if fmt == "jsonl":
        return [json.loads(line) for line in text.splitlines()]  # any torn line would raise here
    rows = list(csv.DictReader(io.StringIO(text)))
    assert all(list(row) == COLUMNS and None not in row.values() for row in rows)  # no short or long rows
    return rows


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_label_killed_mid_run_leaves_a_valid_partial_file_that_resume_finishes(many_files, tmp_path, fmt):
    bundle = tiny_bundle().path
    out = tmp_path / f"labels.{fmt}"
    # the first periodic save lands a fraction of a second in, while labeling takes seconds
    proc = start("label", many_files, "--model", bundle, "--out", out, "--workers", 1, "--save-every", 0.3)
    kill_when(proc, out.exists)

    partial = parse(out.read_text(), fmt)
    assert 0 < len(partial) < FILES
    assert all(row["error"] == "" and 0 <= float(row["valence"]) <= 1 for row in partial)

    resumed = mer_live("label", many_files, "--model", bundle, "--out", out, "--resume", "--workers", 1)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {len(partial)} files already labeled" in resumed.stderr
    assert f"labeled {FILES - len(partial)} of {FILES - len(partial)} files" in resumed.stderr
    rows = parse(out.read_text(), fmt)
    assert [Path(r["path"]).name for r in rows] == sorted(p.name for p in many_files.iterdir())  # each file once
    assert rows[: len(partial)] == partial  # the rows written before the kill are kept as they were
    assert all(row["error"] == "" and row["quadrant"] in ("Q1", "Q2", "Q3", "Q4") for row in rows)


def check_refused(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("mer-live: error: --out ")
    assert all(w in result.stderr for w in words), result.stderr
    assert "Traceback" not in result.stderr


def test_output_in_a_missing_folder_or_under_a_file_is_refused(many_files, tmp_path):
    bundle = tiny_bundle().path
    clip = many_files / "clip_000.wav"
    check_refused(mer_live("label", clip, "--model", bundle, "--out", tmp_path / "missing" / "x.csv"),
                  "does not exist")
    (tmp_path / "plain_file").write_text("x")
    check_refused(mer_live("label", clip, "--model", bundle, "--out", tmp_path / "plain_file" / "x.csv"),
                  "is not a folder")
    check_refused(mer_live("label", clip, "--model", bundle, "--out", tmp_path), "is a folder")


def test_output_in_a_read_only_folder_is_refused(many_files, tmp_path):
    folder = tmp_path / "read_only"
    folder.mkdir()
    if os.geteuid() == 0:  # root ignores permission bits, but not the immutable attribute
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", folder]).returncode != 0:
            pytest.skip("running as root and `chattr +i` is unavailable: no way to make a folder read-only")
    else:
        folder.chmod(0o555)
    try:
        result = mer_live("label", many_files / "clip_000.wav", "--model", tiny_bundle().path, "--out",
                          folder / "x.csv")
        check_refused(result, "cannot write in the folder")
        assert not list(folder.iterdir())
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", folder])
        folder.chmod(0o755)


TRAIN = ["--dataset", "synth", "--synth-seconds", "6", "--epochs", "3", "--warmup-epochs", "1", "--batch-size", "16",
         "--threads", "1", "--workers", "1", "--segment-seconds", "2"]


def test_training_killed_after_a_checkpoint_resumes_and_skips_a_bad_clip(tmp_path):
    corpus = tmp_path / "synth"
    make_synth_corpus(corpus, 16, seconds=6.0, seed=0, change_fraction=0.25)
    (corpus / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + os.urandom(64))
    with open(corpus / "manifest.csv", "a") as f:
        f.write("broken.wav,broken,1,1,Q1,,,,\n")
    run = tmp_path / "run"
    args = ["train", *TRAIN, "--root", corpus, "--out", run, "--cache-dir", tmp_path / "cache"]
    env = {**os.environ, "HOME": str(tmp_path)}

    proc = subprocess.Popen([sys.executable, "-m", "mer_live", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, env=env, start_new_session=True)
    kill_when(proc, (run / "checkpoint.pt").exists, timeout=240)
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)  # complete, not torn
    assert state["epoch"] < 2 and [row["epoch"] for row in state["history"]] == list(range(1, state["epoch"] + 2))

    resumed = mer_live(*args, "--resume", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"at epoch {state['epoch'] + 1}" in resumed.stderr and "Traceback" not in resumed.stderr
    assert "16 clips (1 skipped" in resumed.stderr and "broken.wav" in resumed.stderr  # skipped and counted
    history = json.loads((run / "metrics.json").read_text())["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert json.loads((run / "config.json").read_text())["dataset"]["clips"] == 16
    assert (run / "aggregator.pkl").is_file()
