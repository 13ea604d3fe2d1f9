"""One song-estimate type: a file's ``SongResult``, a stream's ``Song`` and every ``Update.song`` read the same
way; ``feed`` returns the song that silence ended; ``stream.song`` is computed once per change; the old
names still answer, with a ``DeprecationWarning``, for one release."""

from __future__ import annotations

import numpy as np
import pytest

import mer_live
from mer_live.api import Model
from mer_live.live.demo import synthesize
from mer_live.runtime import workers
from mer_live.runtime.results import Song, SongEstimate, SongResult
from tests.realtime_helpers import music_wav, tiny_bundle

READS = ("valence", "arousal", "labels", "quadrant", "quadrant_name", "n_segments", "probs")


@pytest.fixture(scope="module")
def model() -> Model:
    return Model(tiny_bundle(), provider="cpu")


def test_result_song_and_update_share_one_estimate_type(model):
    result = model.predict(str(music_wav()))
    stream = model.stream(silence_reset=False)
    updates = list(stream.feed(synthesize(model.audio.sample_rate, seconds=8.0)))
    for estimate in (result, stream.song, updates[-1].song):
        assert isinstance(estimate, SongEstimate)
        for name in READS:
            getattr(estimate, name)
        assert estimate.labels["valence"] == ("high" if estimate.valence >= 0.5 else "low")
    assert result.n_segments == len(result.segments) and result.timeline("valence").shape == (result.n_segments,)
    assert isinstance(stream.song, Song) and isinstance(result, SongResult)


def test_feed_returns_the_song_silence_ended_and_the_stream_counts_songs(model):
    sr = model.audio.sample_rate
    stream = model.stream(silence_reset=True)
    stream.silence_seconds = 2.0
    stream.reset()
    ends = []
    audio = synthesize(sr, seconds=20.0, pause=4.0)
    for i in range(0, len(audio), 4096):
        fed = stream.feed(audio[i : i + 4096])
        if fed.song_end is not None:
            ends.append(fed.song_end)
    assert len(ends) == 1 and ends == stream.songs and ends[0].number == 1 and stream.song_number == 2
    assert stream.new_song() is stream.songs[-1] and stream.song_number == 3
    assert stream.new_song() is None  # nothing sung since


def test_stream_song_is_computed_once_per_change(model, monkeypatch):
    stream = model.stream(silence_reset=False)
    calls = []
    song_probs = stream.model.song_probs
    monkeypatch.setattr(stream.model, "song_probs", lambda x: calls.append(len(x)) or song_probs(x))
    list(stream.feed(synthesize(model.audio.sample_rate, seconds=6.0)))
    calls.clear()
    first = stream.song
    assert stream.song is first and stream.song is first and len(calls) == 1
    list(stream.feed(np.zeros(model.audio.hop_samples, np.float32) + 0.1))
    assert stream.song is not first and len(calls) == 3  # one update, then one new song estimate


def test_predict_many_runs_in_process_unless_workers_are_given(model, monkeypatch):
    def no_processes(*args):
        raise AssertionError("predict_many started processes")

    monkeypatch.setattr(workers, "predict_in_processes", no_processes)
    paths = [str(music_wav()), str(music_wav())]
    assert [r.ok for r in model.predict_many(paths)] == [True, True]
    with pytest.raises(AssertionError, match="started processes"):
        list(model.predict_many(paths, workers=2))


def test_old_names_still_answer_with_a_deprecation_warning(model):
    result = model.predict(str(music_wav()))
    stream = model.stream(silence_reset=False)
    update = list(stream.feed(synthesize(model.audio.sample_rate, seconds=6.0)))[-1]
    song = stream.song
    with pytest.deprecated_call():
        assert result.song == dict(result.probs)
    with pytest.deprecated_call():
        assert np.array_equal(result.segment("arousal"), result.timeline("arousal"))
    with pytest.deprecated_call():
        assert update.song["valence"] == update.song.valence
    with pytest.deprecated_call():
        assert update.quadrant == update.song.quadrant
    with pytest.deprecated_call():
        assert update.segments == update.song.n_segments
    with pytest.deprecated_call():
        assert song.song == dict(song.probs) and song.song["valence"] == song.valence
    with pytest.deprecated_call():
        assert song.segments == song.n_segments
    with pytest.deprecated_call():
        decoded = model.decode(str(music_wav()))
    with pytest.deprecated_call():
        assert model.finish(decoded).valence == result.valence
    with pytest.raises(AttributeError):
        model.no_such_stage  # noqa: B018


def test_model_first_screen_is_the_api():
    public = sorted(name for name in vars(mer_live.Model) if not name.startswith("_"))
    assert public == ["name", "predict", "predict_many", "stream", "warm_up"]
