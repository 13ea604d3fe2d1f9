"""A real multi-node Ray cluster on one machine, for tests and benchmarks: ``ray start`` processes.

Each node is a ``ray start`` of its own (``--num-cpus``, its own ``--temp-dir`` and process group), so
a node can be killed alone (``raylet_pid``) and ``stop`` ends exactly this cluster, never another
Ray on the machine (``ray stop`` would end them all). Only the standard library loads here; the
``ray`` executable is the one beside this Python.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Node death noticed in about 3 s instead of about 30 s: a test that kills a node fits CI's time.
FAST_HEALTH_CHECKS = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
                      "RAY_health_check_failure_threshold": "3", "RAY_health_check_initial_delay_ms": "1000"}


def ray_executable() -> Path:
    return Path(sys.executable).parent / "ray"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pids_with(text: str) -> list[int]:
    """Processes whose command line mentions ``text`` (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(entry.name))
    return pids


class LocalCluster:
    """``nodes`` Ray nodes on this machine with ``cpus`` CPUs each; the first is the head."""

    def __init__(self, nodes: int = 2, cpus: float = 1, object_store_mb: int = 200, fast_health_checks: bool = True
                 ) -> None:
        # Ray's socket paths must stay under 107 bytes: a short temp dir, not a test's deep one
        self.root = Path(tempfile.mkdtemp(prefix="mlray-", dir="/tmp" if os.path.isdir("/tmp") else None))
        self.nodes, self.cpus, self.object_store_mb = nodes, cpus, object_store_mb
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dirs = [self.root / ("head" if i == 0 else f"node{i}") for i in range(nodes)]
        self.groups: list[int] = []
        # RAY_AUTH_MODE set for every node alike: unset, Ray >= 2.5x turns token auth on for a head when
        # ~/.ray/auth_token exists (a local ray.init() writes one) but not for a joining node, which is refused
        self.env = {"RAY_AUTH_MODE": "disabled", **os.environ, "RAY_USAGE_STATS_ENABLED": "0",
                    **(FAST_HEALTH_CHECKS if fast_health_checks else {})}

    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _start(self, *args: str) -> None:
        cmd = [str(ray_executable()), "start", "--num-cpus", f"{self.cpus:g}", "--object-store-memory",
               str(self.object_store_mb * 2**20), "--disable-usage-stats", "--node-ip-address", "127.0.0.1", *args]
        proc = subprocess.Popen(cmd, env=self.env, start_new_session=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        self.groups.append(proc.pid)  # its pid is the process group of everything this node starts
        out, _ = proc.communicate(timeout=180)
        if proc.returncode != 0:
            raise RuntimeError(f"ray start failed ({proc.returncode}): {out[-2000:]}")

    def start(self) -> None:
        self._start("--head", "--port", str(self.port), "--temp-dir", str(self.dirs[0]), "--include-dashboard=false")
        for folder in self.dirs[1:]:
            self._start("--address", self.address, "--temp-dir", str(folder))

    def raylet_pid(self, node: int) -> int | None:
        """The raylet of node ``node`` (0: the head), found by its temp dir."""
        for pid in pids_with(str(self.dirs[node]) + os.sep):
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "raylet":
                    return pid
            except OSError:
                continue
        return None

    def kill_node(self, node: int) -> int:
        """SIGKILL node ``node``'s raylet (its workers then exit): a node lost, as a crash loses it."""
        pid = self.raylet_pid(node)
        if pid is None:
            raise RuntimeError(f"no raylet found for node {node} under {self.dirs[node]}")
        os.kill(pid, signal.SIGKILL)
        return pid

    def stop(self) -> None:
        """End every process of this cluster (its process groups, then anything under its temp dir)."""
        for group in reversed(self.groups):
            try:
                os.killpg(group, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + 10
        while True:  # anything that left the groups; then wait until none writes under the temp dir
            pids = pids_with(str(self.root) + os.sep)
            if not pids or time.monotonic() > deadline:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.2)
        shutil.rmtree(self.root, ignore_errors=True)
