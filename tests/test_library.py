"""A real music library in one folder: every format it holds decodes (files written here with PyAV or
soundfile), the scan says what it passed over, dot-files are left alone, one file is one row however
it is spelled, and paths with brackets print as they are (issue 12, items 1, 2, 4, 8, 11, 12, 13)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from rich.console import Console

from mer_live.api import Model
from mer_live.audio.library import collect
from mer_live.audio.read import AUDIO_EXTENSIONS, audio_duration, iter_audio_blocks, load_audio
from mer_live.errors import MerLiveError
from mer_live.label.batch import LabelOptions, label_files, print_table, shorten
from tests.realtime_helpers import tiny_bundle

SR = 44100
SECONDS = 3.0
FREQ = 440.0
# name -> (container format, codec, rate): what PyAV writes for the test
AV_FILES = {
    "aac.m4a": ("ipod", "aac", SR),
    "alac.m4a": ("ipod", "alac", SR),
    "adts.aac": ("adts", "aac", SR),
    "video.mp4": ("mp4", "aac", SR),
    "video.m4v": ("mp4", "aac", SR),
    "opus.webm": ("webm", "libopus", 48000),
    "aac.mkv": ("matroska", "aac", SR),
    "windows.wma": ("asf", "wmav2", SR),
    "dolby.ac3": ("ac3", "ac3", SR),
    "layer2.mp2": ("mp2", "mp2", SR),
    "lossless.flac": ("flac", "flac", SR),
}
SF_FILES = {"apple.aifc": "AIFF", "core.caf": "CAF", "sun.au": "AU", "sony.w64": "W64"}


def tone(seconds: float = SECONDS, sr: int = SR) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * FREQ * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


class _Pipe(io.RawIOBase):
    """A write-only, unseekable sink: what `ffmpeg ... -f flac - | cat > p.flac` writes into."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, b) -> int:
        self.data += bytes(b)
        return len(b)


def encode(target, fmt: str, codec: str, rate: int, samples: np.ndarray | None = None) -> None:
    """Write a stereo file with PyAV (the encoder converts the float frames to its own sample format)."""
    x = tone(SECONDS, rate) if samples is None else samples
    data = np.ascontiguousarray(np.stack([x, 0.5 * x]))
    out = av.open(target, "w", format=fmt)
    stream = out.add_stream(codec, rate=rate, layout="stereo")
    stream.bit_rate = 128000
    for i in range(0, data.shape[1], 4096):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, i : i + 4096]), format="fltp",
                                           layout="stereo")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)
    out.close()


def peak_hz(samples: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * sr / len(samples))


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """Every format, a pipe-written FLAC, a FLAC cut in half, non-audio files and hidden ones."""
    root = tmp_path_factory.mktemp("library")
    for name, (fmt, codec, rate) in AV_FILES.items():
        encode(str(root / name), fmt, codec, rate)
    for name, fmt in SF_FILES.items():
        sf.write(root / name, np.stack([tone(), tone()], axis=1), SR, format=fmt, subtype="PCM_16")
    pipe = _Pipe()
    encode(pipe, "flac", "flac", SR)
    (root / "piped.flac").write_bytes(bytes(pipe.data))
    whole = (root / "lossless.flac").read_bytes()
    (root / "cut.flac").write_bytes(whole[: len(whole) // 2])
    sf.write(root / "UPPER.WAV", tone(), SR)
    (root / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    (root / "notes.txt").write_text("not audio")
    (root / "._aac.m4a").write_bytes(b"\x00\x05\x16\x07" + bytes(200))  # a macOS resource fork
    (root / ".cache").mkdir()
    sf.write(root / ".cache" / "hidden.wav", tone(), SR)
    return root


@pytest.mark.parametrize("name", [*AV_FILES, *SF_FILES])
def test_every_library_format_decodes_to_the_tone(library: Path, name: str) -> None:
    audio = load_audio(library / name, 22050)
    assert abs(len(audio) / 22050 - SECONDS) < 0.1, len(audio) / 22050
    assert abs(peak_hz(audio, 22050) - FREQ) < 5
    streamed = np.concatenate(list(iter_audio_blocks(library / name, 22050, block_seconds=0.05)))
    assert abs(len(streamed) - len(audio)) <= 2
    assert name.lower().endswith(AUDIO_EXTENSIONS)  # so a folder scan finds it


def test_flac_without_a_length_decodes_fully_and_a_cut_one_in_part(library: Path) -> None:
    assert audio_duration(library / "piped.flac") == 0.0  # the header does not say
    piped = load_audio(library / "piped.flac", 22050)
    np.testing.assert_array_equal(piped, load_audio(library / "lossless.flac", 22050))
    cut = load_audio(library / "cut.flac", 22050)
    assert 0.5 < len(cut) / 22050 < SECONDS - 0.5


def label(paths, **kwargs) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    kwargs.setdefault("fmt", "jsonl")
    status = label_files(Model(tiny_bundle(), provider="cpu"), [str(p) for p in paths],
                         LabelOptions(workers=0, **kwargs), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def test_a_library_labels_in_one_run_with_a_truthful_summary(library: Path) -> None:
    status, out, err = label([library])
    rows = [json.loads(line) for line in out.splitlines()]
    names = sorted(Path(r["path"]).name for r in rows)
    expected = sorted([*AV_FILES, *SF_FILES, "piped.flac", "cut.flac", "UPPER.WAV"])
    assert names == expected
    assert status == 0, [r for r in rows if r["error"]]
    assert all(r["quadrant"] in ("Q1", "Q2", "Q3", "Q4") for r in rows)
    piped = next(r for r in rows if r["path"].endswith("piped.flac"))
    assert piped["duration_s"] == pytest.approx(SECONDS, abs=0.01)
    assert f"labeled {len(expected)} of {len(expected)} files" in err
    assert "skipped 2 files that are not audio: .jpg, .txt" in err
    assert "skipped 2 hidden files or folders (--hidden to include)" in err


def test_hidden_files_are_labeled_only_with_hidden(library: Path) -> None:
    found = collect([str(library)], recursive=True, hidden=True)
    names = {Path(p).name for p in found.paths}
    assert {"._aac.m4a", "hidden.wav"} <= names
    assert not {"._aac.m4a", "hidden.wav"} & {Path(p).name for p in collect([str(library)], recursive=True).paths}


def test_glob_and_extension_filter_ignore_case(library: Path) -> None:
    assert [Path(p).name for p in collect([str(library)], pattern="*.wav").paths] == ["UPPER.WAV"]
    assert [Path(p).name for p in collect([str(library)], pattern="AAC.*").paths] == ["aac.m4a", "aac.mkv"]


def test_out_with_an_unknown_extension_is_refused_unless_format_is_given(library: Path, tmp_path: Path) -> None:
    with pytest.raises(MerLiveError, match=r"cannot tell the format .*\.txt"):
        label([library / "UPPER.WAV"], fmt=None, out=str(tmp_path / "x.txt"))
    assert not (tmp_path / "x.txt").exists()
    status, _, _ = label([library / "UPPER.WAV"], fmt="csv", out=str(tmp_path / "x.txt"))
    assert status == 0 and (tmp_path / "x.txt").read_text().startswith("path,")


def test_resume_through_other_spellings_writes_each_file_once(library: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "labels.csv"
    monkeypatch.chdir(library)
    assert label(["UPPER.WAV", "./sun.au"], fmt="csv", out=str(out))[0] == 0
    monkeypatch.chdir(tmp_path)  # another working folder, absolute paths, a folder and a file in it both given
    status, _, err = label([library, library / "UPPER.WAV", library / ".." / library.name / "sun.au"], fmt="csv",
                           out=str(out), resume=True)
    assert status == 0
    assert "resuming: 2 files already labeled" in err
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == len({os.path.realpath(library / r["path"]) for r in rows}) == 18
    assert {"UPPER.WAV", "./sun.au"} <= {r["path"] for r in rows} or {"UPPER.WAV", "sun.au"} <= {
        r["path"] for r in rows}


def test_resume_refuses_a_csv_that_is_not_a_mer_live_output(library: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine.csv"
    out.write_text("name,price\nbread,2\n")
    with pytest.raises(MerLiveError, match="is not a mer-live output"):
        label([library / "UPPER.WAV"], fmt=None, out=str(out), resume=True)
    assert out.read_text() == "name,price\nbread,2\n"


@pytest.mark.parametrize("name", ["01 intro [live].wav", "[bold]loud[red].wav", "back\\slash [x].wav"])
def test_brackets_in_paths_print_as_they_are(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "a["
    folder.mkdir()
    sf.write(folder / name, tone(), SR)
    sf.write(folder / "other.wav", tone(), SR)
    status, out, err = label([folder], fmt="table")
    assert status == 0, err
    assert name in out and "Traceback" not in err


def test_table_paths_are_relative_to_their_root_and_cut_in_the_middle() -> None:
    root = "/music/" + "very long folder name/" * 4
    rows = [{"path": root + f"artist/album/{i:02d} a rather long song title.mp3", "duration_s": 30.0,
             "valence": 0.7, "arousal": 0.4, "valence_label": "high", "arousal_label": "low", "quadrant": "Q4",
             "quadrant_name": "calm/relaxed", "error": ""} for i in range(2)]
    console = Console(file=io.StringIO(), width=80)
    print_table(rows, console)
    text = console.file.getvalue()
    assert "very long folder" not in text.split("paths relative")[0].split("\n", 3)[-1]
    assert all(len(line) <= 80 for line in text.splitlines())
    assert sum(" a rather long song title.mp3" in line or "title.mp3" in line for line in text.splitlines()) == 2
    assert shorten("abcdefghij", 5) == "ab…ij"


def stray_decoder_lines(stderr: str) -> list[str]:
    words = ("libmpg123", "MPEG", "resync", "Skipped")
    return [line for line in stderr.splitlines() if any(w in line for w in words) and "warning: " not in line]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_decoder_messages_name_their_file(tmp_path: Path, workers: str) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    sf.write(tmp_path / "fine.mp3", tone(10.0, 22050), 22050, format="MP3")
    data = bytearray((tmp_path / "fine.mp3").read_bytes())
    rng = np.random.default_rng(1)
    for pos in range(2000, len(data) - 2000, 3000):  # damaged frames: libmpg123 complains on stderr
        data[pos : pos + 200] = rng.bytes(200)
    (tmp_path / "damaged.mp3").write_bytes(bytes(data))
    result = subprocess.run([sys.executable, "-m", "mer_live", "label", tmp_path, "--model", tiny_bundle().path,
                             "--format", "csv", "--workers", workers], capture_output=True, text=True, cwd=REPO,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert stray_decoder_lines(result.stderr) == [], result.stderr  # only in the file's warning line
    assert f"  warning: {tmp_path / 'damaged.mp3'}: " in result.stderr
    assert "fine.mp3:" not in result.stderr
    live = subprocess.run([sys.executable, "-m", "mer_live", "--file", tmp_path / "damaged.mp3", "--fast", "--jsonl",
                           "--model", tiny_bundle().path], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert live.returncode == 0 and stray_decoder_lines(live.stderr) == [], live.stderr
    assert f"warning: {tmp_path / 'damaged.mp3'}: " in live.stderr


def test_progress_off_a_terminal_is_plain_lines(library: Path) -> None:
    files = [library / n for n in ("UPPER.WAV", "sun.au", "core.caf")]
    status, _, err = label(files, progress_every=1e-9)
    assert status == 0
    lines = [line for line in err.splitlines() if line.startswith("mer-live: labeling ")]
    assert [line.split()[2] for line in lines] == ["1/3", "2/3"]
    assert all(" files/s, ETA 0:0" in line for line in lines)
    assert "\x1b" not in err  # no terminal control codes in a log
