"""mer-live: streaming, real-time music emotion recognition (SSSL, arXiv 2410.21897).

    import mer_live
    model = mer_live.load()
    print(model.predict("song.mp3").quadrant)

The API (``load``, ``Model``, ``SongEstimate``, ``SongResult``, ``Stream``, ``Update``) loads on first use, so the
command line starts without ONNX Runtime.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["load", "Model", "SongEstimate", "SongResult", "Stream", "Update", "Song", "AudioError", "MerLiveError"]

_HOMES = {name: "mer_live.api" for name in __all__} | {"AudioError": "mer_live.errors",
                                                        "MerLiveError": "mer_live.errors"}


def __getattr__(name: str):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'mer_live' has no attribute {name!r}")
