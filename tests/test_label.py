import csv
import io
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.realtime_helpers import music_wav, tiny_bundle


def mer_live(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "mer_live", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two good files (one in a sub-folder), a corrupt one, a text file, and a symlink loop."""
    root = tmp_path_factory.mktemp("music")
    shutil.copy(music_wav(), root / "b_song.wav")
    shutil.copy(music_wav(6.0, 22050), root / "a_short.wav")
    (root / "sub").mkdir()
    shutil.copy(music_wav(6.0, 22050), root / "sub" / "c.wav")
    (root / "corrupt.mp3").write_bytes(b"ID3\x03\x00\x00\x00" + os.urandom(2000))
    (root / "notes.txt").write_text("not audio")
    os.symlink(root, root / "sub" / "loop")
    return root


def test_label_folder_with_failures(folder, tmp_path):
    bundle = tiny_bundle()
    out = tmp_path / "labels.csv"
    result = mer_live("label", folder, folder / "missing.wav", "--model", bundle.path, "--out", out,
                      "--workers", 2)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    rows = list(csv.DictReader(out.open()))
    paths = [os.path.basename(r["path"]) for r in rows]
    assert paths == ["a_short.wav", "b_song.wav", "corrupt.mp3", "missing.wav"]
    by_name = {os.path.basename(r["path"]): r for r in rows}
    assert by_name["missing.wav"]["error"] == "file not found"
    assert by_name["corrupt.mp3"]["error"]
    assert "\n" not in by_name["corrupt.mp3"]["error"]
    good = by_name["b_song.wav"]
    assert good["error"] == ""
    assert 0 <= float(good["valence"]) <= 1 and 0 <= float(good["arousal"]) <= 1
    assert good["quadrant"] in ("Q1", "Q2", "Q3", "Q4")
    assert float(good["duration_s"]) == pytest.approx(14.0, abs=0.01)
    assert int(good["segments"]) == 11
    assert "labeled 2 of 4 files" in result.stderr


def test_formats_recursion_and_determinism(folder, tmp_path):
    bundle = tiny_bundle()
    outputs = {}
    for fmt in ("csv", "jsonl", "json"):
        result = mer_live("label", folder, "-r", "--model", bundle.path, "--format", fmt, "--workers", 1)
        assert result.returncode == 1  # the corrupt file
        outputs[fmt] = result.stdout
    jsonl = [json.loads(line) for line in outputs["jsonl"].splitlines()]
    doc = json.loads(outputs["json"])
    assert "probability" in doc["scale"]
    assert doc["files"] == jsonl
    csv_rows = list(csv.DictReader(io.StringIO(outputs["csv"])))
    assert [r["path"] for r in csv_rows] == [r["path"] for r in jsonl]
    names = [os.path.relpath(r["path"], folder) for r in jsonl]
    assert names == ["a_short.wav", "b_song.wav", "corrupt.mp3", os.path.join("sub", "c.wav")]  # loop not followed
    # The same files give the same rows with parallel workers.
    again = mer_live("label", folder, "-r", "--model", bundle.path, "--format", "jsonl", "--workers", 2)
    assert again.stdout == outputs["jsonl"]
    only = mer_live("label", folder, "--glob", "a_*", "--model", bundle.path, "--format", "jsonl")
    assert only.returncode == 0
    assert [os.path.basename(json.loads(x)["path"]) for x in only.stdout.splitlines()] == ["a_short.wav"]


def test_resume_skips_done_files_and_strict_stops(folder, tmp_path):
    bundle = tiny_bundle()
    out = tmp_path / "labels.jsonl"
    first = mer_live("label", folder / "a_short.wav", "--model", bundle.path, "--out", out)
    assert first.returncode == 0, first.stderr
    before = json.loads(out.read_text().splitlines()[0])
    result = mer_live("label", folder, "--model", bundle.path, "--out", out, "--resume", "--segments")
    assert result.returncode == 1
    assert "1 files already labeled" in result.stderr
    assert "labeled 1 of 2 files" in result.stderr  # b_song done, corrupt failed; a_short skipped
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [os.path.basename(r["path"]) for r in rows] == ["a_short.wav", "b_song.wav", "corrupt.mp3"]
    assert rows[0] == {**before, "segment_valence": None, "segment_arousal": None}
    assert len(rows[1]["segment_valence"]) == rows[1]["segments"]

    strict = mer_live("label", folder / "sub" / "c.wav", folder / "corrupt.mp3", "--model", bundle.path, "--strict",
                      "--format", "csv")
    assert strict.returncode == 1
    assert "--strict" in strict.stderr
    assert [r["path"] for r in csv.DictReader(io.StringIO(strict.stdout))] == [str(folder / "corrupt.mp3")]


def test_user_errors_are_one_line(tmp_path):
    result = mer_live("label", tmp_path, "--model", tiny_bundle().path)
    assert result.returncode == 2
    assert result.stderr.startswith("mer-live: error: no audio files found")
    assert "Traceback" not in result.stderr
    bad = mer_live("label", music_wav(), "--model", tmp_path / "nope")
    assert bad.returncode == 2 and "no such bundle" in bad.stderr


def test_stride_labels_from_every_kth_segment(folder, tmp_path):
    """--stride 3: non-overlapping segments, a third of the compute; the row says how many were used."""
    bundle = tiny_bundle()
    counts = {}
    for stride in (1, 3):
        result = mer_live("label", folder / "b_song.wav", "--model", bundle.path, "--format", "json", "--segments",
                          "--stride", stride, "--workers", 0)
        assert result.returncode == 0, result.stderr
        row = json.loads(result.stdout)["files"][0]
        counts[stride] = row
    every, third = counts[1], counts[3]
    assert every["segments"] == 11 and third["segments"] == 4  # segments 0, 3, 6, 9
    assert third["segment_valence"] == every["segment_valence"][::3]
    refused = mer_live("label", folder / "b_song.wav", "--model", bundle.path, "--stride", 5)
    assert refused.returncode == 2 and "--stride 5" in refused.stderr and "Traceback" not in refused.stderr
