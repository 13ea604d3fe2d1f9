#!/usr/bin/env bash
# One-off: convert the musicnn wheel's TensorFlow checkpoints to mer_live/models/pretrained/*.safetensors
# and refresh the golden outputs in tests/golden/. TensorFlow lives in its own environment
# (.venv-convert), never in mer-live's: the musicnn wheel pins numpy<1.17, so it is installed
# without its dependencies beside a TensorFlow that still runs its TF1 graph code.
# Usage: scripts/convert_musicnn.sh [--real-clips FOLDER_OF_4Q_MP3S]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv-convert/bin/python ]; then
  "$PYTHON" -m venv .venv-convert
  .venv-convert/bin/pip install -q tensorflow-cpu==2.15.1 numpy==1.26.4 librosa==0.10.2 soundfile soxr safetensors
  .venv-convert/bin/pip install -q --no-deps musicnn==0.1.0
fi
.venv-convert/bin/python scripts/convert_musicnn.py "$@"
