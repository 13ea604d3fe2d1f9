"""A runtime-only install (`pip install 'mer-live[cpu]'`: no torch, no scikit-learn) answers the
training commands and `--aggregator pickle` with one line naming the extra, and labels without them
(issue 12, item 14). The missing packages are simulated by blocking their import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.realtime_helpers import music_wav, tiny_bundle

BLOCK = "import sys\nfor m in ('torch', 'sklearn', 'scipy', 'onnx', 'skl2onnx', 'matplotlib'): sys.modules[m] = None\n"


def without_training_extras(*args: str) -> subprocess.CompletedProcess:
    code = BLOCK + f"from mer_live.cli import main\nsys.exit(main({list(args)!r}))\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)


@pytest.mark.parametrize("args", [["train", "--dataset", "synth", "--root", "x", "--out", "y"],
                                  ["evaluate", "--dataset", "synth", "--root", "x"],
                                  ["export", "runs/none", "--out", "z"]])
def test_training_commands_name_the_extra_in_one_line(args, tmp_path) -> None:
    result = without_training_extras(*args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"mer-live: error: mer-live {args[0]} needs ")
    assert "pip install 'mer-live[train]'" in result.stderr


def test_labeling_needs_no_training_extra_and_pickle_says_which(tmp_path) -> None:
    bundle = str(tiny_bundle().path)
    ok = without_training_extras("label", str(music_wav()), "--model", bundle, "--format", "csv")
    assert ok.returncode == 0, ok.stderr
    pickle = without_training_extras("label", str(music_wav()), "--model", bundle, "--format", "csv",
                                     "--aggregator", "pickle")
    assert pickle.returncode == 2 and "Traceback" not in pickle.stderr
    assert pickle.stderr.startswith("mer-live: error: --aggregator pickle needs sklearn"), pickle.stderr
    assert "pip install 'mer-live[train]'" in pickle.stderr
