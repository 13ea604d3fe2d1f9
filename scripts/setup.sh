#!/usr/bin/env bash
# Create .venv and install mer-live with everything its features need. Idempotent: re-runs
# only when pyproject.toml changed. GPU machines (nvidia-smi works) get onnxruntime-gpu and
# a CUDA torch; others get onnxruntime and the CPU torch wheel.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
# audio capture (PortAudio, a PulseAudio for the capture tests); a headless Chromium for the browser tests
APT_PACKAGES="libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins chromium chromium-driver"

missing=()
for pkg in $APT_PACKAGES; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: audio capture and the browser tests need: sudo apt-get install -y ${missing[*]}" >&2
  fi
fi

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  flavour=gpu; torch_spec="torch"
else
  flavour=cpu; torch_spec="torch==2.13.0"   # the CPU wheel; a plain `torch` pulls CUDA builds
fi

stamp=.venv/.mer-live-setup
want="$flavour $(sha256sum pyproject.toml | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
echo "setup: installing mer-live[$flavour,train,dev,ray] into .venv ($flavour)"
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q "$torch_spec"
fi
.venv/bin/python -m pip install -q -e ".[$flavour,train,dev,ray]"
echo "$want" > "$stamp"
