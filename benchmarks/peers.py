"""The peers' own environment: vibenet (GPL-3.0) and librosa never become project dependencies.

They are installed from PyPI into ``benchmarks/.peers/venv`` (gitignored) on first use, so the
comparison runs the peers exactly as their users install them, without touching mer-live's
environment.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PEERS_DIR = Path(__file__).resolve().parent / ".peers"
VENV = PEERS_DIR / "venv"
PACKAGES = ("vibenet", "librosa")


def python() -> Path:
    return VENV / "bin" / "python"


def ensure(log=print) -> str | None:
    """Create the peers' venv and install the packages if needed; None when ready, else why not."""
    if python().is_file() and _installed():
        return None
    try:
        if not python().is_file():
            log(f"creating {VENV} for the peers (vibenet, librosa)")
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, capture_output=True, text=True)
        log(f"pip install {' '.join(PACKAGES)} into {VENV}")
        subprocess.run([str(python()), "-m", "pip", "install", "-q", *PACKAGES], check=True, capture_output=True,
                       text=True, timeout=900)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        return f"peers could not be installed: {detail.strip().splitlines()[-1] if detail.strip() else exc}"
    return None if _installed() else "peers could not be installed (import check failed)"


def _installed() -> bool:
    check = subprocess.run([str(python()), "-c", "import vibenet, librosa, onnxruntime"], capture_output=True)
    return check.returncode == 0


def versions() -> dict:
    out = subprocess.run([str(python()), "-c", "from importlib.metadata import version as v; import json; "
                          "print(json.dumps({n: v(n) for n in ('vibenet', 'librosa', 'onnxruntime', 'numpy')}))"],
                         capture_output=True, text=True)
    import json

    return json.loads(out.stdout) if out.returncode == 0 else {}
