"""`mer-live label` streams each file: labeling a 1-hour file stays under 400 MB for the whole process tree."""

import csv
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import REPO
from tests.realtime_helpers import music_wav, tiny_bundle

pytestmark = pytest.mark.slow

LIMIT_MB = 400
HOUR = 3600
RATE = 8000  # cheap to write; reading it resamples to the bundle rate in blocks


@pytest.fixture(scope="module")
def hour_wav(tmp_path_factory) -> Path:
    """One hour of mono int16 tones and noise, written a minute at a time."""
    path = tmp_path_factory.mktemp("long") / "hour.wav"
    rng = np.random.default_rng(0)
    t = np.arange(60 * RATE) / RATE
    with sf.SoundFile(str(path), "w", RATE, 1, "PCM_16") as f:
        for minute in range(HOUR // 60):
            tone = 0.3 * np.sin(2 * np.pi * (220 + 10 * minute) * t)
            f.write((tone + 0.05 * rng.standard_normal(len(t))).astype(np.float32))
    return path


def tree_rss(root: int) -> int:
    """Resident bytes of a process and all its descendants (shared pages counted in each)."""
    parents, rss = {}, {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(name)], rss[int(name)] = int(fields[1]), int(fields[21])
    tree, grew = {root}, True
    while grew:
        before = len(tree)
        tree |= {pid for pid, parent in parents.items() if parent in tree}
        grew = len(tree) > before
    return sum(rss.get(pid, 0) for pid in tree) * os.sysconf("SC_PAGE_SIZE")


def peak_tree_mb(args: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    """Run mer-live, sampling the process tree's resident memory every 50 ms."""
    proc = subprocess.Popen([sys.executable, "-m", "mer_live", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], tree_rss(proc.pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        done.set()
        sampler.join()
    return peak[0] / 2**20, subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="samples memory through /proc (Linux)")
@pytest.mark.parametrize("workers", [1, 2])
def test_labeling_an_hour_stays_under_400_mb(hour_wav, tmp_path, workers):
    bundle = tiny_bundle()
    out = tmp_path / "labels.csv"
    files = [hour_wav] if workers == 1 else [hour_wav, music_wav()]  # two files: the worker processes run
    peak_mb, result = peak_tree_mb(["label", *map(str, files), "--model", str(bundle.path), "--out", str(out),
                                    "--workers", str(workers)])
    assert result.returncode == 0, result.stderr
    assert peak_mb <= LIMIT_MB, f"peak {peak_mb:.0f} MB"
    row = next(r for r in csv.DictReader(out.open()) if r["path"] == str(hour_wav))
    c = bundle.audio
    n = HOUR * c.sample_rate
    assert float(row["duration_s"]) == pytest.approx(HOUR, abs=1e-3)
    assert int(row["segments"]) == 1 + (n - c.segment_samples) // c.hop_samples
    assert row["quadrant"] in ("Q1", "Q2", "Q3", "Q4")
