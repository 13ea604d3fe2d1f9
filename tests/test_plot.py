"""The song picture (issue 19, item 2): `mer-live plot FILE` and `SongResult.plot()` on real audio through
real ONNX sessions, and the same picture of a finished live song from `--jsonl` output."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import soundfile as sf

from mer_live.api import Model
from mer_live.plot import live_pictures, loudness
from tests.conftest import REPO
from tests.realtime_helpers import music_wav, tiny_bundle

pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is not installed")


def mer_live(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mer_live", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_songresult_plot_draws_the_timeline_the_song_the_quadrants_and_the_loudness(tmp_path):
    model = Model(tiny_bundle(), provider="cpu")
    result = model.predict(music_wav())
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the package's own picture uses no retiring name
        fig = result.plot()
    timeline, band, level = fig.axes
    segment_lines = [line for line in timeline.get_lines() if line.get_label().startswith("segment ")]
    assert [line.get_label() for line in segment_lines] == ["segment valence", "segment arousal"]
    assert np.allclose(segment_lines[0].get_ydata(), result.timeline("valence"))
    assert np.allclose(segment_lines[1].get_ydata(), result.timeline("arousal"))
    song = {line.get_label() for line in timeline.get_lines()}
    assert f"song valence {result.valence:.2f}" in song and f"song arousal {result.arousal:.2f}" in song
    assert len(band.patches) == len(result.starts)  # one quadrant colour per segment
    assert result.quadrant in timeline.get_title() and level.get_ylabel() == "loudness\ndBFS"
    out = result.plot(tmp_path / "song.svg")
    assert out == tmp_path / "song.svg" and "<svg" in out.read_text()


def test_a_file_name_is_text_not_mathtext(tmp_path):
    odd = tmp_path / "a song $_{$ b.wav"  # between two $ is mathtext to matplotlib, and this is broken
    odd.write_bytes(music_wav().read_bytes())
    result = Model(tiny_bundle(), provider="cpu").predict(odd)
    out = result.plot(tmp_path / "odd.png")  # an unbalanced $ would make matplotlib raise while drawing
    assert out.is_file()
    assert "a song $_{$ b.wav" in result.plot().axes[0].get_title().replace("\\$", "$")


def test_an_array_has_loudness_only_when_given_its_samples():
    samples, sr = sf.read(music_wav(), dtype="float32")
    result = Model(tiny_bundle(), provider="cpu").predict(samples, sr=sr)
    assert len(result.plot().axes) == 2  # no file to read the loudness from
    assert len(result.plot(audio=samples, sr=sr).axes) == 3


def test_loudness_is_rms_dbfs_per_frame():
    sr = 8000
    seconds, db = loudness(np.concatenate([np.full(sr, 0.5), np.full(sr, 0.05)]).astype(np.float32), sr)
    assert len(seconds) == 20 and seconds[0] == pytest.approx(0.05)
    assert db[:10] == pytest.approx(np.full(10, 20 * np.log10(0.5)), abs=1e-4)
    assert db[10:] == pytest.approx(np.full(10, 20 * np.log10(0.05)), abs=1e-4)


def test_plot_command_writes_png_and_refuses_what_it_cannot_write(tmp_path):
    png = tmp_path / "song.png"
    result = mer_live("plot", music_wav(), "-o", png, "--model", tiny_bundle().path)
    assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {png}" in result.stderr
    result = mer_live("plot", music_wav(), "-o", tmp_path / "song.xyz", "--model", tiny_bundle().path)
    assert result.returncode == 2 and "name it .png, .svg or .pdf" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_finished_live_song_from_jsonl(tmp_path):
    live = mer_live("--file", music_wav(), "--fast", "--jsonl", "--model", tiny_bundle().path)
    assert live.returncode == 0, live.stderr
    path = tmp_path / "live.jsonl"
    path.write_text(live.stdout)
    events = [json.loads(line) for line in live.stdout.splitlines()]
    segments = [e for e in events if e["event"] == "segment"]
    picture = live_pictures(path)[1]
    assert np.allclose(picture.valence, [e["segment"]["valence"] for e in segments])
    assert np.allclose(picture.ends, [e["t"] for e in segments]) and picture.starts[0] == 0.0
    assert picture.song["valence"] == events[-1]["valence"]  # the whole-song estimate of song_end
    out = tmp_path / "live.png"
    result = mer_live("plot", path, "-o", out)
    assert result.returncode == 0 and out.is_file(), result.stderr
    result = mer_live("plot", path, "--song", 2)
    assert result.returncode == 2 and "--song 2: " in result.stderr and "finished songs 1" in result.stderr
    (tmp_path / "bad.jsonl").write_text("{}\nnot json\n")
    result = mer_live("plot", tmp_path / "bad.jsonl")
    assert result.returncode == 2 and "line 2 is not JSON" in result.stderr
