"""Bad and odd audio through the real `mer-live` commands: every bad file gets a one-line reason naming
it, every odd but valid one a correct result, the batch goes on, and no traceback reaches the user."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import REPO, tone
from tests.realtime_helpers import tiny_bundle

SR = 22050
REFERENCE = "ünïcødé name with spaces ♫.wav"  # the plain 22.05 kHz mono tone every odd format is compared to
BAD = {  # file -> what its error must say
    "zero_bytes.wav": "file is empty",
    "random_bytes.mp3": "cannot decode",
    "text_file.wav": "cannot decode",
    "no_samples.wav": "no audio samples",
    "loop.wav": "looping symlink",
}


def mer_live(*args, timeout=300, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mer_live", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout, **kwargs)


def write_long_wav(path: Path, minutes: int, sr: int = 8000) -> Path:
    """A long tone written a minute at a time (PCM 16, 8 kHz: 2 hours is 115 MB and about a second)."""
    t = np.arange(60 * sr) / sr
    minute = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 660 * t)).astype(np.float32)
    with sf.SoundFile(str(path), "w", sr, 1, subtype="PCM_16") as f:
        for _ in range(minutes):
            f.write(minute)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Every bad and odd case in one folder (and a sub-folder holding a symlink loop back to it)."""
    root = tmp_path_factory.mktemp("odd audio")
    x = tone(4.0, SR)
    sf.write(root / REFERENCE, x, SR)
    (root / "zero_bytes.wav").write_bytes(b"")
    sf.write(root / "full.mp3", tone(5.0, SR), SR, format="MP3")
    mp3 = (root / "full.mp3").read_bytes()
    (root / "truncated.mp3").write_bytes(mp3[: len(mp3) // 2])
    (root / "random_bytes.mp3").write_bytes(np.random.default_rng(0).bytes(5000))
    (root / "text_file.wav").write_text("these are words, not samples\n" * 20)
    sf.write(root / "no_samples.wav", np.zeros(0, np.float32), SR)
    sf.write(root / "one_sample.wav", np.full(1, 0.1, np.float32), SR)
    for rate in (8000, 96000, 192000):
        sf.write(root / f"rate_{rate}.wav", tone(4.0, rate), rate)
    sf.write(root / "six_channels.wav", np.repeat(x[:, None], 6, axis=1), SR)
    sf.write(root / "pcm24_44k.wav", tone(4.0, 44100), 44100, subtype="PCM_24")
    sf.write(root / "float32_44k.wav", tone(4.0, 44100), 44100, subtype="FLOAT")
    bad = x.copy()
    bad[::97], bad[1::97], bad[2::97] = np.nan, np.inf, -np.inf
    sf.write(root / "nan_inf.wav", bad, SR, subtype="FLOAT")
    sf.write(root / "nan_inf_zeroed.wav", np.nan_to_num(bad, nan=0.0, posinf=0.0, neginf=0.0), SR, subtype="FLOAT")
    sf.write(root / "clipping.wav", np.clip(8 * x, -1.0, 1.0), SR)
    sf.write(root / "silence.wav", np.zeros(4 * SR, np.float32), SR)
    sf.write(root / "dc_offset.wav", 0.3 * x + 0.5, SR)
    sf.write(root / "short.wav", tone(0.5, SR), SR)
    os.symlink("loop.wav", root / "loop.wav")  # a file symlink to itself
    (root / "sub").mkdir()
    os.symlink(root, root / "sub" / "back")  # a folder loop: the recursive scan must not follow it
    return root


@pytest.fixture(scope="module")
def labeled(folder: Path):
    """One real `mer-live label -r` over the folder (2 worker processes, JSON lines)."""
    result = mer_live("label", folder, "-r", "--model", tiny_bundle().path, "--format", "jsonl", "--workers", 2)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    return result, {os.path.relpath(r["path"], folder): r for r in rows}, [r["path"] for r in rows]


def test_batch_goes_on_with_one_row_per_file_in_sorted_order(folder: Path, labeled) -> None:
    result, rows, order = labeled
    assert result.returncode == 1, result.stderr  # some files failed
    assert "Traceback" not in result.stderr
    expected = sorted(str(p) for p in folder.iterdir() if p.suffix in (".wav", ".mp3"))
    assert order == expected  # every file once, sorted, the folder loop not followed
    assert f"labeled {len(expected) - len(BAD)} of {len(expected)} files" in result.stderr


def test_each_bad_file_gets_a_one_line_reason_naming_it(folder: Path, labeled) -> None:
    result, rows, _ = labeled
    for name, reason in BAD.items():
        error = rows[name]["error"]
        assert reason in error and "\n" not in error, (name, error)
        assert rows[name]["valence"] is None
        # The summary names the file and the reason on one line of its own.
        assert any(line.strip() == f"failed: {folder / name}: {error}" for line in result.stderr.splitlines()), name
    assert "does not exist" not in rows["random_bytes.mp3"]["error"]  # libsndfile's untrue guess is replaced
    assert not [n for n, r in rows.items() if r["error"] and n not in BAD]


def test_odd_but_valid_files_give_the_reference_result(labeled) -> None:
    _, rows, _ = labeled
    ref = rows[REFERENCE]
    assert ref["error"] == "" and ref["segments"] == tiny_bundle().audio.n_segments(4 * SR)
    same_music = ["rate_8000.wav", "rate_96000.wav", "rate_192000.wav", "six_channels.wav", "pcm24_44k.wav",
                  "float32_44k.wav"]
    for name in same_music:
        row = rows[name]
        assert row["error"] == "" and row["duration_s"] == pytest.approx(4.0, abs=1e-3), name
        assert row["segments"] == ref["segments"], name
        assert row["valence"] == pytest.approx(ref["valence"], abs=0.01), name  # resampling differs a little
        assert row["arousal"] == pytest.approx(ref["arousal"], abs=0.01), name
    assert rows["six_channels.wav"]["valence"] == pytest.approx(ref["valence"], abs=1e-5)  # the exact downmix
    # NaN and infinities become silence: the same numbers as the file with zeros written in their place.
    for key in ("valence", "arousal", "segments", "quadrant"):
        assert rows["nan_inf.wav"][key] == rows["nan_inf_zeroed.wav"][key]


def test_extreme_signals_and_tiny_clips_give_finite_results(labeled) -> None:
    _, rows, _ = labeled
    for name in ("clipping.wav", "silence.wav", "dc_offset.wav", "short.wav", "one_sample.wav", "truncated.mp3"):
        row = rows[name]
        assert row["error"] == "", (name, row["error"])
        assert 0.0 <= row["valence"] <= 1.0 and 0.0 <= row["arousal"] <= 1.0, name
        assert row["quadrant"] in ("Q1", "Q2", "Q3", "Q4")
    assert rows["short.wav"]["segments"] == 1 and rows["short.wav"]["duration_s"] == 0.5  # padded to one segment
    assert rows["one_sample.wav"]["segments"] == 1
    # A truncated MP3 yields the part that decodes, shorter than the whole file.
    assert 0 < rows["truncated.mp3"]["duration_s"] < rows["full.mp3"]["duration_s"]


def test_non_ascii_path_round_trips_through_csv(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "ünï labels.csv"
    result = mer_live("label", folder / REFERENCE, "--model", tiny_bundle().path, "--out", out)
    assert result.returncode == 0, result.stderr
    assert str(folder / REFERENCE) in out.read_text(encoding="utf-8").splitlines()[1]


@pytest.mark.parametrize("name", ["random_bytes.mp3", "no_samples.wav", "text_file.wav"])
def test_live_file_errors_are_one_line(folder: Path, name: str) -> None:
    result = mer_live("--file", folder / name, "--fast", "--jsonl", "--model", tiny_bundle().path)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"mer-live: error: {folder / name}: {BAD[name]}")
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_live_file_with_nan_and_inf_is_sanitized(folder: Path) -> None:
    result = mer_live("--file", folder / "nan_inf.wav", "--fast", "--jsonl", "--model", tiny_bundle().path)
    assert result.returncode == 0, result.stderr
    updates = [u for u in map(json.loads, result.stdout.splitlines()) if u["event"] == "segment"]
    assert updates and all(0 <= u["song"][t] <= 1 for u in updates for t in ("valence", "arousal"))


def test_debug_shows_the_traceback(folder: Path, tmp_path: Path) -> None:
    live = mer_live("--debug", "--file", folder / "random_bytes.mp3", "--fast", "--model", tiny_bundle().path)
    assert live.returncode != 0 and "Traceback" in live.stderr and "AudioError" in live.stderr
    for args in (["--debug", "label"], ["label", "--debug"]):  # before or after the command name
        result = mer_live(*args, folder / REFERENCE, "--model", tiny_bundle().path, "--out", tmp_path / "no" / "x.csv")
        assert "Traceback" in result.stderr and "MerLiveError" in result.stderr, args


AS_NOBODY = """
import contextlib, io, os, sys
from mer_live.cli import main
with contextlib.redirect_stdout(io.StringIO()):  # a first run loads every lazily imported module
    main(["label", sys.argv[1], "--model", sys.argv[2], "--workers", "1"])
os.setgid(65534)  # then drop root: the interpreter's own files stay out of reach of `nobody`
os.setuid(65534)
sys.exit(main(sys.argv[3:]))
"""


@pytest.fixture
def public_dir():
    """A folder `nobody` can reach (pytest's tmp_path sits under a root-only folder)."""
    path = Path(tempfile.mkdtemp(prefix="mer-live-public-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)


def test_unreadable_file_is_reported(public_dir: Path) -> None:
    """As root, permission bits do not stop reads, so there the command drops to `nobody` first."""
    sf.write(public_dir / "good.wav", tone(4.0, SR), SR)
    sf.write(public_dir / "locked.wav", tone(4.0, SR), SR)
    os.chmod(public_dir / "locked.wav", 0)
    bundle = str(shutil.copytree(tiny_bundle().path, public_dir / "bundle"))
    args = ["label", str(public_dir), "--model", bundle, "--format", "jsonl", "--workers", "1"]
    if os.geteuid() == 0:
        command = [sys.executable, "-c", AS_NOBODY, str(public_dir / "good.wav"), bundle, *args]
    else:
        command = [sys.executable, "-m", "mer_live", *args]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 1, result.stderr
    rows = {Path(r["path"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert rows["locked.wav"]["error"].startswith("permission denied") and rows["good.wav"]["error"] == ""
    assert "Traceback" not in result.stderr


STREAM = """
import resource, sys
from mer_live.live.sources import FileSource
n = sum(len(b.samples) for b in FileSource(sys.argv[1], 22050, fast=True))
print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_two_hour_file_streams_in_bounded_memory(tmp_path: Path) -> None:
    """The live file source over 2 hours holds no more memory than over 1 minute (a whole-file decode
    of the 2 hours at 22.05 kHz would take 635 MB)."""
    def stream(path: Path) -> tuple[int, int]:
        out = subprocess.run([sys.executable, "-c", STREAM, str(path)], capture_output=True, text=True, cwd=REPO,
                             timeout=120, check=True).stdout.split()
        return int(out[0]), int(out[1]) * 1024

    samples_1, rss_1 = stream(write_long_wav(tmp_path / "one_minute.wav", 1))
    long = write_long_wav(tmp_path / "two_hours.wav", 120)
    samples_120, rss_120 = stream(long)
    long.unlink()
    assert samples_1 == 60 * SR and abs(samples_120 - 7200 * SR) <= 2
    assert rss_120 - rss_1 < 20 * 2**20, (rss_1, rss_120)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc (Linux)")
def test_live_path_memory_stays_flat_over_a_long_stream(tmp_path: Path) -> None:
    """`mer-live --file --fast --jsonl` over 12 minutes: RSS sampled while it runs stops growing early."""
    path = write_long_wav(tmp_path / "twelve_minutes.wav", 12)
    proc = subprocess.Popen([sys.executable, "-m", "mer_live", "--file", str(path), "--fast", "--jsonl", "--model",
                             str(tiny_bundle().path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    samples: list[tuple[float, int]] = []  # (seconds of audio done, RSS)
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] != "segment":  # the song_end line at the end
            continue
        t = event["t"]
        if not samples or t - samples[-1][0] >= 30:
            samples.append((t, rss_bytes(proc.pid)))
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    assert samples[-1][0] > 700 and len(samples) > 10
    early = max(rss for t, rss in samples if 120 <= t < 240)
    late = max(rss for _, rss in samples)
    assert late - early < 10 * 2**20, [(t, rss // 2**20) for t, rss in samples]

