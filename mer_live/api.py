"""mer-live as a library: load a model, predict songs, stream audio.

    import mer_live

    model = mer_live.load()                      # the packaged default, CUDA when present
    result = model.predict("song.mp3")           # SongResult: valence, arousal, quadrant, timeline
    for r in model.predict_many(paths, workers=4):
        print(r.path, r.quadrant, r.error)
    stream = model.stream()
    for update in stream.feed(block, sr=44100):  # one Update per completed segment
        print(update.song.valence)

A facade: the engine is ``mer_live.runtime``; every command of the CLI is built on it, and it never
imports torch.
"""

from mer_live.errors import AudioError, MerLiveError
from mer_live.runtime.engine import Model, load
from mer_live.runtime.results import Song, SongEstimate, SongResult, Update
from mer_live.runtime.stages import Decoded
from mer_live.runtime.stream import Stream, Updates

__all__ = ["load", "Model", "SongEstimate", "SongResult", "Stream", "Update", "Updates", "Song", "Decoded",
           "AudioError", "MerLiveError"]
