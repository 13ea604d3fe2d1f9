"""Real capture: a clip played into a PulseAudio null sink is monitored through PortAudio's ALSA `pulse`
device, the path a microphone takes. Skips (saying why) where PulseAudio, paplay or PortAudio is missing."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.realtime_helpers import music_wav, tiny_bundle

TEST_PA = """load-module module-native-protocol-unix auth-anonymous=1 socket={run}/native
load-module module-null-sink sink_name=mer_null
set-default-source mer_null.monitor
"""


def _portaudio_missing() -> str | None:
    probe = subprocess.run([sys.executable, "-c", "import sounddevice"], capture_output=True, text=True)
    return None if probe.returncode == 0 else "PortAudio (libportaudio2) is not installed"


@pytest.fixture
def pulse(tmp_path):
    """An isolated PulseAudio daemon with a null sink; always killed afterwards."""
    for tool in ("pulseaudio", "paplay"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (apt-get install pulseaudio pulseaudio-utils libasound2-plugins)")
    if reason := _portaudio_missing():
        pytest.skip(reason)
    if not Path("/usr/lib/x86_64-linux-gnu/alsa-lib/libasound_module_pcm_pulse.so").exists() and not list(
            Path("/usr/lib").glob("*/alsa-lib/libasound_module_pcm_pulse.so")):
        pytest.skip("the ALSA pulse plugin is not installed (libasound2-plugins)")
    d = tmp_path
    for sub in ("home", "run", "cfg"):
        (d / sub).mkdir()
    os.chmod(d / "run", 0o700)
    env = {**os.environ, "HOME": f"{d}/home", "XDG_RUNTIME_DIR": f"{d}/run", "XDG_CONFIG_HOME": f"{d}/cfg",
           "PULSE_RUNTIME_PATH": f"{d}/run", "PULSE_SERVER": f"unix:{d}/run/native"}
    (d / "test.pa").write_text(TEST_PA.format(run=f"{d}/run"))
    start = subprocess.run(["pulseaudio", "-D", "--exit-idle-time=-1", "--system=false", "-n", "-F",
                            str(d / "test.pa"), f"--log-target=file:{d}/pa.log"], env=env, capture_output=True,
                           text=True, timeout=30)
    try:
        if start.returncode != 0:
            pytest.skip(f"pulseaudio would not start here: {start.stderr.strip()[:200]}")
        for _ in range(50):
            if (d / "run" / "native").exists():
                break
            time.sleep(0.1)
        yield env
    finally:
        subprocess.run(["pulseaudio", "--kill"], env=env, capture_output=True, timeout=30)


def test_live_capture_through_pulseaudio(pulse):
    bundle = tiny_bundle()
    devices = subprocess.run([sys.executable, "-m", "mer_live", "--list-devices"], env=pulse, cwd=REPO,
                             capture_output=True, text=True, timeout=60)
    if "pulse" not in devices.stdout:
        pytest.skip(f"PortAudio lists no ALSA `pulse` device: {devices.stdout.strip()[:200]}")
    player = subprocess.Popen(["paplay", "--device=mer_null", str(music_wav())], env=pulse)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "mer_live", "--mic", "--device", "pulse", "--jsonl", "--duration", "7",
             "--model", bundle.path], env=pulse, cwd=REPO, capture_output=True, text=True, timeout=120)
    finally:
        player.kill()
        player.wait()
    assert result.returncode == 0, result.stderr
    updates = [u for u in map(json.loads, result.stdout.splitlines()) if u["event"] == "segment"]
    assert len(updates) >= 2, result.stderr
    assert updates[-1]["song"]["segments"] >= 2
    assert "overflows" in result.stderr
