"""``mer-live label --ray`` on a real two-node Ray cluster started here with ``ray start``.

The cluster test is marked ``ray``: skip it locally with ``pytest -m "not ray"`` or
``MER_LIVE_SKIP_RAY=1``. It needs the ``ray`` extra, which scripts/setup.sh installs; in CI
(``CI`` set) a missing Ray fails the test instead of skipping it. Each node gets one CPU, its own
temp dir and its own process group, so the teardown ends exactly this cluster, also when a test fails.
"""

from __future__ import annotations

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

TOLERANCE = 1e-6
N_CLIPS = 36


def mer_live(*args, env=None, timeout=240):
    return subprocess.run([sys.executable, "-m", "mer_live", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout, env=env)


def rows_of(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def assert_same_rows(got: list[dict], want: list[dict]) -> None:
    """The same files in the same order; equal fields, probabilities within 1e-6."""
    assert [r["path"] for r in got] == [r["path"] for r in want]
    for g, w in zip(got, want):
        assert set(g) == set(w)
        for key, value in w.items():
            if key in ("valence", "arousal") and value is not None:
                assert abs(g[key] - value) <= TOLERANCE, (w["path"], key)
            elif key in ("segment_valence", "segment_arousal") and value is not None:
                assert len(g[key]) == len(value)
                assert max(abs(a - b) for a, b in zip(g[key], value)) <= TOLERANCE, (w["path"], key)
            else:
                assert g[key] == value, (w["path"], key)


# ---- no cluster needed


def test_ray_without_ray_says_which_extra(tmp_path):
    """A Python where `import ray` fails: --ray answers in one line, before loading anything."""
    fake = tmp_path / "no-ray"
    fake.mkdir()
    (fake / "ray.py").write_text("raise ImportError('No module named ray (simulated)')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), str(REPO)])}
    result = mer_live("label", music_wav(), "--ray", env=env, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "pip install 'mer-live[ray]'" in lines[0]


def test_ray_address_where_no_cluster_answers(tmp_path):
    pytest.importorskip("ray")
    from harness.local_cluster import free_port

    begin = time.monotonic()
    result = mer_live("label", music_wav(), "--model", tiny_bundle().path, "--ray", f"127.0.0.1:{free_port()}",
                      timeout=60)
    assert result.returncode == 2, result.stderr
    assert "no Ray cluster answers there" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert time.monotonic() - begin < 30


def test_local_path_does_not_import_ray(tmp_path):
    bundle = tiny_bundle()
    code = ("import sys\nfrom mer_live.cli import main\n"
            f"rc = main(['label', {str(music_wav())!r}, '--model', {str(bundle.path)!r}, '--format', 'jsonl', "
            "'--workers', '1'])\n"
            "assert rc == 0, rc\n"
            "bad = [m for m in sys.modules if m == 'ray' or m.startswith('ray.') or m == 'pyarrow']\n"
            "assert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr


def test_manifest_lists_files(tmp_path):
    from mer_live.audio.manifest import expand

    (tmp_path / "m.txt").write_text("# a comment\n\na.wav\n/abs/b.mp3\n")
    (tmp_path / "m.csv").write_text("path,artist\nc.wav,x\n")
    assert expand([str(tmp_path / "m.txt"), str(tmp_path / "m.csv"), "d.wav"]) == [
        str(tmp_path / "a.wav"), "/abs/b.mp3", str(tmp_path / "c.wav"), "d.wav"]
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"path": ["e.mp3", "/abs/f.flac"], "n": [1, 2]}), tmp_path / "m.parquet")
    assert expand([str(tmp_path / "m.parquet")]) == [str(tmp_path / "e.mp3"), "/abs/f.flac"]
    (tmp_path / "bad.csv").write_text("file\nx.wav\n")
    from mer_live.errors import MerLiveError

    with pytest.raises(MerLiveError, match="needs a 'path' column"):
        expand([str(tmp_path / "bad.csv")])


class FakeRay:
    """What ``plan`` asks of Ray: the cluster's resources and nodes."""

    def __init__(self, cpus: float, gpus: float = 0, nodes: int = 1) -> None:
        self.resources = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
        self.n = nodes

    def cluster_resources(self) -> dict:
        return self.resources

    def nodes(self) -> list[dict]:
        return [{"Alive": True}] * self.n + [{"Alive": False}]


def test_plan_sizes_the_actor_pool():
    """CPU clusters: an actor per CPU, decoders always fit beside; GPU clusters: an actor per GPU share."""
    from mer_live.errors import MerLiveError
    from mer_live.label.cluster import plan

    cpu = plan(FakeRay(2, nodes=2), "h:1", "auto", None, None)
    assert (cpu.actors, cpu.gpus_per_actor, cpu.nodes) == (2, 0.0, 2)
    assert cpu.actor_cpus + cpu.decode_cpus <= 1  # a 1-CPU node holds an actor and a decoder
    gpu = plan(FakeRay(32, gpus=4, nodes=4), "h:1", "auto", None, None)
    assert (gpu.actors, gpu.gpus_per_actor) == (4, 1.0)
    assert plan(FakeRay(32, gpus=4), "h:1", "auto", 0.5, None).actors == 8
    assert plan(FakeRay(32, gpus=4), "h:1", "cpu", None, None).gpus_per_actor == 0  # --compute cpu
    assert plan(FakeRay(8), "h:1", "auto", None, 3).actors == 3
    assert "4 GPU actors (1 GPU each)" in gpu.where()
    for args in [("cuda", None, None), ("auto", 1.0, None), ("auto", None, 0)]:
        with pytest.raises(MerLiveError):
            plan(FakeRay(8), "h:1", *args)


def parquet_rows(path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def test_parquet_output_and_resume(tmp_path):
    """--out x.parquet: the rows of the JSON-lines output, typed; --resume reads it back."""
    pytest.importorskip("pyarrow")
    bundle = tiny_bundle()
    folder = tmp_path / "music"
    folder.mkdir()
    shutil.copy(music_wav(), folder / "a.wav")
    shutil.copy(music_wav(6.0, 22050), folder / "b.wav")
    (folder / "c.mp3").write_bytes(b"not audio")
    common = [folder, "--model", bundle.path, "--segments", "--workers", 1]
    want = rows_of(mer_live("label", *common, "--format", "jsonl").stdout)
    out = tmp_path / "labels.parquet"
    result = mer_live("label", *common, "--out", out)
    assert result.returncode == 1, result.stderr
    assert_same_rows(parquet_rows(out), want)
    import pyarrow.parquet as pq

    assert b"probability" in pq.read_schema(out).metadata[b"scale"]
    again = mer_live("label", *common, "--out", out, "--resume")
    assert "2 files already labeled in" in again.stderr, again.stderr
    assert_same_rows(parquet_rows(out), want)
    refused = mer_live("label", *common, "--format", "parquet")
    assert refused.returncode == 2 and "--out FILE.parquet" in refused.stderr


# ---- a real two-node cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if os.environ.get("MER_LIVE_SKIP_RAY"):
        pytest.skip("MER_LIVE_SKIP_RAY is set")
    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("the ray extra is missing: scripts/setup.sh installs it (pip install '.[ray]')")
        pytest.skip("Ray is not installed (pip install '.[ray]'); or skip with -m 'not ray'")
    from harness.local_cluster import LocalCluster

    # `ray start --head --num-cpus 1` and `ray start --address ... --num-cpus 1`, each with its own temp dir
    # and process group; the teardown kills both groups, also when the test fails. Its workers decode
    # through tests/ray_crash_hook.py, which crashes them on a file named for it (and only on that).
    hook = tmp_path_factory.mktemp("ray-hook")
    shutil.copy(Path(__file__).with_name("ray_crash_hook.py"), hook / "sitecustomize.py")
    cluster = LocalCluster(nodes=2, cpus=1)
    cluster.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(hook), cluster.env.get("PYTHONPATH")) if p)
    with cluster:
        yield cluster


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Generated clips (two lengths), one corrupt file; and a manifest listing them plus a missing one."""
    root = tmp_path_factory.mktemp("ray-clips")
    for i in range(N_CLIPS):
        source = music_wav(20.0) if i % 2 else music_wav(8.0, 22050)
        shutil.copy(source, root / f"clip{i:02d}.wav")
    (root / "broken.mp3").write_bytes(b"ID3\x03\x00\x00\x00" + os.urandom(2000))
    manifest = root / "manifest.txt"
    names = sorted(p.name for p in root.iterdir() if p.suffix in (".wav", ".mp3"))
    manifest.write_text("\n".join([*names, "missing.wav"]) + "\n")
    return root


@pytest.mark.ray
@pytest.mark.slow
def test_two_node_cluster_matches_local_survives_node_loss_and_resumes(cluster, clips, tmp_path):
    bundle = tiny_bundle()
    manifest = clips / "manifest.txt"
    common = ["--model", bundle.path, "--segments"]
    local = mer_live("label", manifest, *common, "--format", "jsonl", "--workers", 2)
    assert local.returncode == 1, local.stderr  # the broken and the missing file
    want = rows_of(local.stdout)
    assert len(want) == N_CLIPS + 2
    assert sum(1 for r in want if r["error"]) == 2

    # 1. The same rows from the cluster (as Parquet, the format for big runs).
    out = tmp_path / "ray.parquet"
    run = mer_live("label", manifest, *common, "--out", out, "--ray", cluster.address)
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert f"Ray cluster at {cluster.address}, 2 nodes" in run.stderr
    assert_same_rows(parquet_rows(out), want)

    # 2. The second node's raylet killed mid-run: every row still arrives, the same.
    out = tmp_path / "lost-node.jsonl"
    assert cluster.raylet_pid(1) is not None
    proc = subprocess.Popen([sys.executable, "-m", "mer_live", "label", str(manifest), *map(str, common), "--out",
                             str(out), "--save-every", "0.1", "--ray", cluster.address], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and len(rows_of(out.read_text())) >= 2:
                break
            time.sleep(0.05)
        done_at_kill = len(rows_of(out.read_text())) if out.exists() else 0
        assert proc.poll() is None, "the run ended before the node could be killed"
        assert done_at_kill < len(want)
        cluster.kill_node(1)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert_same_rows(rows_of(out.read_text()), want)

    # 3. --resume labels only what the output lacks (and retries the failed rows).
    kept = rows_of(out.read_text())
    dropped = {kept[3]["path"], kept[10]["path"]}
    out.write_text("".join(json.dumps(r) + "\n" for r in kept if r["path"] not in dropped))
    resumed = mer_live("label", manifest, *common, "--out", out, "--resume", "--ray", cluster.address)
    assert resumed.returncode == 1, resumed.stderr
    assert f"{len(want) - 2 - 2} files already labeled" in resumed.stderr  # the 2 failed ones go again
    assert_same_rows(rows_of(out.read_text()), want)


@pytest.mark.ray
def test_a_file_that_crashes_its_decoder_is_retried_a_few_times_then_failed_alone(cluster, clips, tmp_path):
    folder = tmp_path / "crash"
    folder.mkdir()
    for name, source in (("a.wav", "clip00.wav"), ("b-crashes-the-decoder.wav", "clip00.wav"), ("c.wav", "clip01.wav")):
        shutil.copy(clips / source, folder / name)
    run = mer_live("label", folder, "--model", tiny_bundle().path, "--format", "jsonl", "--ray", cluster.address,
                   timeout=300)
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    rows = rows_of(run.stdout)  # the rows alone: Ray's word of the dead workers went to stderr
    assert [Path(r["path"]).name for r in rows] == ["a.wav", "b-crashes-the-decoder.wav", "c.wav"]
    assert [bool(r["error"]) for r in rows] == [False, True, False], rows
    assert "decoder process died 4 times" in rows[1]["error"]
