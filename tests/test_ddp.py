"""Data-parallel training with real torchrun processes (CPU, gloo) on the synthetic corpus.

Two processes with a per-process batch of B/2 follow one process with batch B: the same segments
make every global batch (DistributedSampler order), and DDP's gradient average over equal shares of
a mean loss is the mean over B. Warm-up steps (plain cross-entropy) are therefore the same up to
float rounding; SSSL steps differ slightly, because the prior penalty and the labeled/unlabeled row
means are computed per process over its half of the batch. The settings rule out every other
difference: the pretrained musicnn top trains on cached body features (no batch norm in what is
trained, no augmentation), with dropout 0 and no mixup.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO

ARGS = ["--dataset", "synth", "--synth-clips", "12", "--synth-seconds", "6", "--arch", "musicnn-msd", "--dropout", "0",
        "--no-mixup", "--epochs", "2", "--warmup-epochs", "1", "--segment-seconds", "3", "--threads", "1"]
TIMEOUT = 150


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run to the end or kill the whole process group (torchrun and its workers) on timeout."""
    env = {"PYTHONPATH": str(REPO), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd),
           "OMP_NUM_THREADS": "1", "TMPDIR": str(cwd)}  # torchrun's own temp folders go with the test's
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(argv[:6])} ... ran past {TIMEOUT} s:\n{err[-3000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def torchrun(nproc: int, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
                "-m", "mer_live", "train", *args], cwd)


def divisions(stderr: str) -> dict[tuple[int, int], str]:
    """(rank, epoch) -> fingerprint of the GMM division that process stepped with."""
    found = re.findall(r"\[rank (\d+)/\d+\] epoch (\d+) GMM division of \d+ segments: (\w+)", stderr)
    return {(int(rank), int(epoch)): digest for rank, epoch, digest in found}


def checkpoint(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)


def test_two_processes_follow_one_and_share_the_gmm_division(tmp_path: Path):
    common = [*ARGS, "--root", str(tmp_path / "synth"), "--cache-dir", str(tmp_path / "cache")]
    one = run([sys.executable, "-m", "mer_live", "train", "--ddp", *common, "--batch-size", "8",
               "--out", str(tmp_path / "one")], tmp_path)  # a group of one, no torchrun
    assert one.returncode == 0, one.stderr[-3000:]
    two = torchrun(2, *common, "--batch-size", "4", "--out", str(tmp_path / "two"), cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]

    split = divisions(two.stderr)
    assert split[(0, 2)] == split[(1, 2)]  # every process steps with the same GMM division
    assert "x 2 processes" in two.stderr and two.stderr.count("run written to") == 1  # the first process writes
    for name in ("config.json", "aggregator.pkl", "metrics.json", "plots/training_curves.png"):
        assert (tmp_path / "two" / name).is_file(), name

    a, b = checkpoint(tmp_path / "one"), checkpoint(tmp_path / "two")
    warm_a, warm_b = a["history"][0], b["history"][0]
    assert warm_a["phase"] == warm_b["phase"] == "warmup" and warm_a["segments"] == warm_b["segments"]
    assert warm_b["loss"] == pytest.approx(warm_a["loss"], rel=1e-5)  # the same steps, split in two
    assert b["history"][1]["loss"] == pytest.approx(a["history"][1]["loss"], abs=0.03)
    for key, value in a["last"].items():
        assert torch.allclose(value.float(), b["last"][key].float(), atol=1e-2), key

    resumed = torchrun(2, *common, "--batch-size", "4", "--out", str(tmp_path / "two"), "--epochs", "3", "--resume",
                       cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    history = json.loads((tmp_path / "two" / "metrics.json").read_text())["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]
    split = divisions(resumed.stderr)
    assert split[(0, 3)] == split[(1, 3)]
