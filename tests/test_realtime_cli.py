import io
import json
import os
import subprocess
import sys
import threading

import numpy as np
from rich.console import Console

from mer_live.api import Model
from mer_live.label.batch import LabelOptions, label_files
from mer_live.live.demo import synthesize
from mer_live.live.monitor import Dashboard, run, summary
from mer_live.live.sources import ArraySource
from mer_live.stats import QUADRANTS
from tests.conftest import REPO
from tests.realtime_helpers import music_wav, tiny_bundle


def mer_live(*args):
    return subprocess.run([sys.executable, "-m", "mer_live", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


def test_jsonl_updates_on_a_file():
    result = mer_live("--file", music_wav(), "--fast", "--jsonl", "--model", tiny_bundle().path)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    updates = [e for e in events if e["event"] == "segment"]
    assert events[-1]["event"] == "song_end" and events[:-1] == updates
    assert {u["song_number"] for u in updates} == {1}
    assert len(updates) == 11
    assert [u["song"]["segments"] for u in updates] == list(range(1, 12))
    assert all(b["t"] > a["t"] for a, b in zip(updates, updates[1:]))
    last = updates[-1]
    assert set(last["segment"]) == {"valence", "arousal"}
    assert last["song"]["quadrant_name"] == QUADRANTS[last["song"]["quadrant"]]
    assert last["song"]["valence_label"] in ("high", "low") and last["latency_ms"] >= 0
    assert "ONNX Runtime on CPU" in result.stderr and "song estimate" in result.stderr


def test_file_longer_than_the_horizon_ends_with_the_whole_file_estimate_label_gives():
    bundle = tiny_bundle()
    result = mer_live("--file", music_wav(), "--fast", "--jsonl", "--horizon", "4", "--model", bundle.path)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-2]["song"]["segments"] < 11  # the horizon estimate: the last 4 s only
    end = events[-1]
    assert end["event"] == "song_end" and end["segments"] == 11 and end["start"] == 0.0
    out = io.StringIO()
    model = Model(bundle, provider="cpu")
    options = LabelOptions(fmt="jsonl", workers=0)
    assert label_files(model, [str(music_wav())], options, stdout=out, stderr=io.StringIO()) == 0
    row = json.loads(out.getvalue())
    assert abs(end["valence"] - row["valence"]) < 1e-4 and abs(end["arousal"] - row["arousal"]) < 1e-4
    assert end["quadrant"] == row["quadrant"]
    assert "whole-file estimate (as mer-live label gives it): song #1 0.0-" in result.stderr
    assert "(the last 4 s)" in result.stderr


def test_piped_output_is_jsonl_and_duration_stops_early():
    result = mer_live("--file", music_wav(), "--fast", "--duration", "6", "--model", tiny_bundle().path)
    assert result.returncode == 0, result.stderr
    updates = [json.loads(line) for line in result.stdout.splitlines()]
    assert updates[-1]["event"] == "song_end" and updates[-1]["end"] <= 6.1
    updates = updates[:-1]
    assert 1 <= len(updates) <= 4 and updates[-1]["t"] <= 6.1


def test_demo_without_a_microphone_plays_the_generated_stream():
    result = mer_live("--demo", "--fast", "--duration", "8", "--model", tiny_bundle().path)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) >= 5


def test_user_errors_and_device_list():
    result = mer_live("--model", tiny_bundle().path)
    assert result.returncode == 2 and result.stderr.startswith("mer-live: error: choose a source")
    missing = mer_live("--file", "/no/such.wav", "--fast", "--model", tiny_bundle().path)
    assert missing.returncode == 2 and "file not found" in missing.stderr and "Traceback" not in missing.stderr
    devices = mer_live("--list-devices")
    assert devices.returncode in (0, 2) and "Traceback" not in devices.stderr


def test_silence_starts_a_new_song_and_reset_key_path():
    bundle = tiny_bundle()
    sr = bundle.audio.sample_rate
    pipeline = Model(bundle, provider="cpu").stream(silence_reset=True)
    pipeline.silence_seconds = 2.0
    pipeline.reset()
    audio = synthesize(sr, seconds=20.0, pause=4.0)
    updates, ended = [], []
    for i in range(0, len(audio), 2048):
        fed = pipeline.feed(audio[i : i + 2048])
        updates += fed
        ended += [fed.song_end] if fed.song_end is not None else []
    counts = [u.song.n_segments for u in updates]
    assert pipeline.song_number == 2 and ended == pipeline.songs  # feed returned the song silence ended
    assert counts.index(1, 1) > 0  # the count restarted after the pause
    assert [u.song_number for u in updates] == [1] * counts.index(1, 1) + [2] * (len(updates) - counts.index(1, 1))
    first = pipeline.songs[0]  # the finished song is kept, not dropped
    assert first.number == 1 and first.n_segments == counts.index(1, 1) and first.end <= updates[-1].start
    assert pipeline.new_song() is pipeline.songs[-1]
    assert len(pipeline.stats) == 0 and pipeline.latest is None
    assert [s.number for s in pipeline.songs] == [1, 2]
    text = summary(pipeline, ArraySource(audio, sr, "x"))
    assert "song #1 0.0-" in text and "song #2 " in text


def test_dashboard_renders_every_state():
    bundle = tiny_bundle()
    sr = bundle.audio.sample_rate
    pipeline = Model(bundle, provider="cpu").stream()
    source = ArraySource(synthesize(sr, seconds=6.0, pause=0.5), sr, "test", fast=True)
    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    dashboard = Dashboard(console, "test", source)
    console.print(dashboard.render(pipeline))  # before any estimate
    run(pipeline, source, dashboard, threading.Event(), duration=None)
    console.print(dashboard.render(pipeline))
    text = console.file.getvalue()
    assert "listening" in text and "quadrant" in text and "latency p50" in text
    assert np.isfinite(pipeline.meter.percentile(95))


def test_dashboard_shows_bracketed_names_and_finished_songs_as_they_are():
    bundle = tiny_bundle()
    sr = bundle.audio.sample_rate
    pipeline = Model(bundle, provider="cpu").stream()
    source = ArraySource(synthesize(sr, seconds=6.0, pause=0.5), sr, "x", fast=True)
    console = Console(file=io.StringIO(), force_terminal=False, width=120)
    name = "a[/01 intro [live] [bold]x\\y.wav"
    dashboard = Dashboard(console, name, source)
    run(pipeline, source, dashboard, threading.Event(), duration=None)
    pipeline.new_song()
    console.print(dashboard.render(pipeline))
    text = console.file.getvalue()
    assert name in text and "song #1" in text


def test_file_dash_reads_standard_input_and_a_fifo_is_a_stream(tmp_path):
    wav = music_wav().read_bytes()
    piped = subprocess.run([sys.executable, "-m", "mer_live", "--file", "-", "--jsonl", "--model",
                            str(tiny_bundle().path)], input=wav, capture_output=True, cwd=REPO, timeout=300)
    assert piped.returncode == 0, piped.stderr.decode()
    events = [json.loads(line) for line in piped.stdout.splitlines()]
    assert events[-1]["event"] == "song_end" and events[-1]["segments"] == 11
    fifo = tmp_path / "live.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_bytes, args=(wav,))
    writer.start()
    result = mer_live("--file", fifo, "--jsonl", "--model", tiny_bundle().path)
    writer.join(timeout=60)
    assert result.returncode == 0, result.stderr
    fifo_events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [{**e, "latency_ms": 0} for e in fifo_events] == [{**e, "latency_ms": 0} for e in events]


def test_one_flag_name_one_meaning_old_spellings_still_parse_and_ignored_flags_are_refused():
    from mer_live.cli import build_parser

    parser = build_parser()
    new = parser.parse_args(["train", "--dataset", "synth", "--out", "r", "--arch", "vgg16", "--compute", "cpu"])
    old = parser.parse_args(["train", "--dataset", "synth", "--out", "r", "--model", "vgg16", "--device", "cpu"])
    assert (new.model, new.device) == (old.model, old.device) == ("vgg16", "cpu")
    assert parser.parse_args(["train", "--dataset", "synth", "--out", "r"]).model == "compact"
    assert parser.parse_args(["label", "x", "--provider", "cpu"]).provider == "cpu"
    assert parser.parse_args(["label", "x", "--compute", "cpu"]).provider == "cpu"
    train_help = mer_live("train", "--help").stdout
    assert "--arch" in train_help and "--compute" in train_help and "--device" not in train_help
    assert "--epochs EPOCHS       epochs (default: 12)" in train_help
    assert "0 or 1 decodes in the main process" in mer_live("label", "--help").stdout.replace("\n", " ").replace(
        "  ", " ").replace("  ", " ")
    bench_help = " ".join(mer_live("bench", "--help").stdout.split())
    assert "latency, live, label, ray_label, train, accuracy, soak" in bench_help
    for args, flag in ((["--file", "x.wav", "label", "y.wav"], "--file"), (["--file", "x.wav", "--device", "1"],
                                                                            "--device"),
                       (["--mic", "--fast"], "--fast")):
        result = mer_live(*args)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("mer-live: error: ") and flag in result.stderr


def test_demo_caption_promises_nothing_the_packaged_model_may_not_do():
    """Whatever load_bundle() ships, the demo's two pieces end as two songs with their own estimates, and
    the caption names what the audio is (synthetic) without promising an emotion for either piece."""
    from mer_live.live.demo import CAPTION
    from mer_live.live.sources import has_input_device

    if has_input_device():
        import pytest

        pytest.skip("--demo uses the microphone here")
    result = mer_live("--demo", "--fast", "--jsonl")
    assert result.returncode == 0, result.stderr
    ends = [e for e in map(json.loads, result.stdout.splitlines()) if e["event"] == "song_end"]
    assert [e["song_number"] for e in ends] == [1, 2]
    assert CAPTION in result.stderr
    for word in ("happy", "sad", "calm", "angry", "Q1", "Q2", "Q3", "Q4", "bright", "dark"):
        assert word not in CAPTION
    for end in ends:
        assert f"song #{end['song_number']} " in result.stderr
        assert f"{end['quadrant']} {end['quadrant_name']}" in result.stderr.split(f"song #{end['song_number']} ")[1]
