"""Real training runs and bundles without training, for tests (a helper module, not a test file).

The builders live in the package (``harness.tiny``) so the benchmarks' stand-in models use
them too; this module keeps the names the tests import.
"""

from __future__ import annotations

from harness.tiny import SONG, make_tiny_bundle, make_tiny_run, verify_audio

TASKS = list(SONG.tasks)

__all__ = ["TASKS", "make_tiny_bundle", "make_tiny_run", "verify_audio"]
