import subprocess
import sys
import time

from tests.conftest import REPO


def test_help_is_fast_and_lists_the_commands():
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "mer_live", "--help"], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout
    assert time.perf_counter() - start < 5  # generous for a loaded CI box; ~0.3 s here
    for word in ("--mic", "--file", "label", "train", "evaluate", "export", "bench"):
        assert word in out


def test_version():
    out = subprocess.run([sys.executable, "-m", "mer_live", "--version"], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout
    assert out.startswith("mer-live ")
