import subprocess
import sys
import time

from tests.conftest import REPO


def test_runtime_api_and_cli_do_not_import_torch_or_training_tools():
    """Every module of the runtime (each realtime module, the API, the CLI's parser) imports without
    torch, onnx, scikit-learn, matplotlib or Ray, and using the API does not pull them in either."""
    code = (
        "import importlib, pkgutil, sys, mer_live, mer_live.cli, mer_live.realtime\n"
        "for m in pkgutil.iter_modules(mer_live.realtime.__path__):\n"
        "    importlib.import_module('mer_live.realtime.' + m.name)\n"
        "import mer_live.api, mer_live.bundle, mer_live.stats, mer_live.audio, mer_live.config, mer_live.atomic\n"
        "import mer_live.live.web, mer_live.label.report, mer_live.plot\n"
        "mer_live.cli.build_parser()\n"
        "model = mer_live.load('compact', provider='cpu')\n"
        "import numpy as np\n"
        "result = model.predict(np.random.default_rng(0).standard_normal(70000).astype('float32') * 0.1, 22050)\n"
        "stream = model.stream(); stream.feed(np.zeros(50000, np.float32)); stream.finish()\n"
        "assert mer_live.SongResult is type(result) and mer_live.Model is type(model)\n"
        "bad = [m for m in ('torch', 'onnx', 'sklearn', 'matplotlib', 'ray', 'skl2onnx') if m in sys.modules]\n"
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
