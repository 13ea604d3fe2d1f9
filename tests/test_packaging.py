import subprocess
import sys
import time

from tests.conftest import REPO


def test_runtime_and_cli_do_not_import_torch():
    code = (
        "import sys, mer_live.cli, mer_live.realtime, mer_live.bundle, mer_live.stats, mer_live.audio\n"
        "mer_live.cli.build_parser()\n"
        "bad = [m for m in ('torch', 'onnx', 'matplotlib') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


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
