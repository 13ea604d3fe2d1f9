"""``mer-live label --ray``: the labeling pipeline on a Ray cluster, with Ray Data.

The stages are the local path's, run apart:

* decoding and the front end (``Stages.decode``): Ray tasks on CPUs, one file per task (a block of
  several files past ``MAX_BLOCKS`` files), each worker process opening the stages once
  (``runtime.workers.worker_stages``, as the local worker processes do);
* the segment model and the song aggregation (``Stages.finish``): an actor pool, each actor opening
  its ONNX Runtime sessions once, on a GPU with the CUDA provider when the cluster has GPUs;
* the rows: the driver (this process) turns the results into the same rows, in the same sorted
  order (``preserve_order``), and ``label_files`` writes them atomically, as locally.

A decode task whose process dies (its node lost, or a file that crashes the decoder) is retried
``DECODE_RETRIES`` times, then its files are reported failed and the run goes on; an actor lost with
its node is restarted and its calls retried (Ray Data's defaults for actor pools), so a lost node
costs the files it had in flight, never the run. The model reaches the workers by its folder when the node has the
same bundle at the same path (a shared file system, or one machine), else as bytes through the
object store, written once per node into a cache folder and verified like any bundle.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import socket
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mer_live.errors import MerLiveError, one_line
from mer_live.runtime.workers import StagesSpec, worker_stages

if TYPE_CHECKING:
    from mer_live.runtime.engine import Model
    from mer_live.runtime.results import SongResult
    from mer_live.runtime.stages import Stages

INSTALL_HINT = "--ray needs Ray, an optional extra this install lacks: pip install 'mer-live[ray]'"
MAX_BLOCKS = 10_000  # decode tasks per run at most: past it, a task decodes several files in turn
DECODE_RETRIES = 3  # a decode task whose process dies is retried this often, then its files are failed
CRASHED = (f"its decoder process died {DECODE_RETRIES + 1} times (a file that crashes the decoder, or its nodes "
           "were lost); the other files go on")
# CPU clusters: the segment model is ~95% of the work (default model), so one actor per CPU; the
# actor claims most of a CPU and the decode tasks the rest, so neither can starve the other.
CPU_ACTOR_CPUS = 0.8
CPU_DECODE_CPUS = 0.2
GPU_ACTOR_CPUS = 1.0  # a GPU actor's feeding thread
GPU_DECODE_CPUS = 1.0  # with GPU actors, the CPUs are the decoders'
CACHE_ENV = "MER_LIVE_RAY_BUNDLE_CACHE"
LOCAL = "this machine (started for this run)"


def import_ray():
    """Ray, or one line naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401 - the ray[data] part
    except ImportError:
        raise MerLiveError(INSTALL_HINT) from None
    return ray


@dataclass(frozen=True)
class Spec:
    """What a worker needs to open the stages: the driver's ``StagesSpec``, and the bundle's id and bytes
    for a node whose file system lacks that folder."""

    stages: StagesSpec
    bundle_id: str  # sha256 of bundle.json: names the bundle, and checks the path holds the same one
    files: Any = field(default=None, compare=False, hash=False)  # ObjectRef of {name: bytes}


@dataclass
class Plan:
    """Where a run goes: the cluster, and how the work is split over it."""

    address: str
    nodes: int
    cpus: float
    gpus: float
    actors: int
    gpus_per_actor: float
    actor_cpus: float
    decode_cpus: float

    def where(self) -> str:
        kind = (f"{self.actors} GPU actor{'s' * (self.actors != 1)} ({self.gpus_per_actor:g} GPU each)"
                if self.gpus_per_actor else f"{self.actors} CPU actor{'s' * (self.actors != 1)}")
        at = "Ray started on this machine for this run" if self.address == LOCAL else f"Ray cluster at {self.address}"
        return (f"{at}, {self.nodes} node{'s' * (self.nodes != 1)}, "
                f"{self.cpus:g} CPUs, {self.gpus:g} GPUs, {kind}")


def connect(address: str | None):
    """Join the cluster at ``address`` ("auto": the running one this machine knows; "local" or None:
    start one here for this run). Returns ray and the address in words."""
    ray = import_ray()
    if ray.is_initialized():
        return ray, "this process's Ray"
    target = "local" if address in (None, "", "local") else address
    _check_reachable(target)
    try:
        ray.init(address=target, logging_level=logging.WARNING, log_to_driver=False,
                 configure_logging=True, include_dashboard=False if target == "local" else None)
    except ConnectionError as exc:
        raise MerLiveError(f"--ray {address}: no Ray cluster there ({one_line(exc)}); start one with "
                           "`ray start --head`, or give --ray without an address to start one for this run") from exc
    except Exception as exc:  # noqa: BLE001 - a version mismatch, a bad address: one line
        raise MerLiveError(f"--ray {address}: cannot join the Ray cluster ({one_line(exc)})") from exc
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    return ray, LOCAL if target == "local" else address


def _check_reachable(target: str, timeout: float = 5.0) -> None:
    """A host:port where nothing listens is one line at once (ray.init would retry for minutes)."""
    if target in ("local", "auto") or "://" in target:
        return
    host, _, port = target.rpartition(":")
    if not port.isdigit():
        raise MerLiveError(f"--ray {target}: give HOST:PORT of the cluster's head (GCS port, 6379 by default), "
                           "auto, or nothing")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as exc:
        raise MerLiveError(f"--ray {target}: no Ray cluster answers there ({exc.strerror or exc}); start one with "
                           "`ray start --head`, or give --ray without an address to start one for this run") from None


def plan(ray, address: str, provider: str, gpus_per_actor: float | None, actors: int | None) -> Plan:
    """The actor pool for this cluster: GPU actors where it has GPUs (unless --compute cpu), else CPU ones."""
    total = ray.cluster_resources()
    cpus, gpus = float(total.get("CPU", 0)), float(total.get("GPU", 0))
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    if gpus_per_actor is None:
        gpus_per_actor = 1.0 if gpus >= 1 and provider != "cpu" else 0.0
    if gpus_per_actor < 0:
        raise MerLiveError("--ray-gpus must be 0 (CPU actors) or more")
    if gpus_per_actor and provider == "cpu":
        raise MerLiveError("--ray-gpus puts the segment model on GPUs: it does not go with --compute cpu")
    if provider == "cuda" and not gpus_per_actor:
        raise MerLiveError(f"--compute cuda: the Ray cluster at {address} has no GPUs "
                           f"({gpus:g}); use --compute auto or cpu")
    if gpus_per_actor and gpus < gpus_per_actor:
        raise MerLiveError(f"--ray-gpus {gpus_per_actor:g}: the cluster has {gpus:g} GPUs")
    if cpus < 1:
        raise MerLiveError(f"the Ray cluster at {address} has no CPUs for decoding ({cpus:g})")
    if gpus_per_actor:
        actor_cpus, decode_cpus = GPU_ACTOR_CPUS, GPU_DECODE_CPUS
        default_actors = int(gpus // gpus_per_actor)
    else:
        actor_cpus, decode_cpus = CPU_ACTOR_CPUS, CPU_DECODE_CPUS
        default_actors = int(cpus)
    if actors is not None and actors < 1:
        raise MerLiveError("--ray-actors must be 1 or more")
    return Plan(address, nodes, cpus, gpus, actors or max(1, default_actors), gpus_per_actor, actor_cpus,
                decode_cpus)


def bundle_spec(ray, model: Model) -> Spec:
    folder = Path(model.bundle.path)
    manifest = (folder / "bundle.json").read_bytes()
    names = ["bundle.json", *sorted(model.bundle.manifest["files"])]
    files = ray.put({name: (folder / name).read_bytes() for name in names})
    stages = StagesSpec(str(folder.resolve()), model.stride, model.stages.aggregator_kind)
    return Spec(stages, hashlib.sha256(manifest).hexdigest(), files)


class RayRunner:
    """``label_files``'s runner: paths -> their SongResults, in the same order, labeled on the cluster."""

    def __init__(self, ray, model: Model, plan: Plan) -> None:
        self.ray, self.model, self.plan = ray, model, plan
        self.spec = bundle_spec(ray, model)

    def __call__(self, paths: list[str]) -> Iterator[SongResult]:
        if not paths:
            return iter(())
        return self._results(paths)

    def dataset(self, paths: list[str]):
        ray, p = self.ray, self.plan
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # rows come back in the order given
        context.enable_progress_bars = False  # label_files shows its own
        context.max_errored_blocks = -1  # a decode task that died every time: its files fail, the run goes on
        logging.getLogger("ray.data._internal.execution.streaming_executor_state").setLevel(logging.CRITICAL)
        with contextlib.suppress(Exception):  # and says so once, not on every run
            from ray.util.debug import log_once

            log_once("ray_data_progress_manager_disabled")
        with contextlib.suppress(AttributeError):
            context.print_on_execution_start = False
        per_block = math.ceil(len(paths) / MAX_BLOCKS)
        items = [{"i": i, "path": path} for i, path in enumerate(paths)]
        ds = ray.data.from_items(items, override_num_blocks=math.ceil(len(paths) / per_block))  # a task per block
        # decode_row never raises (a bad file is a row with its error); a task whose process dies is retried
        # DECODE_RETRIES times, then its block is skipped (max_errored_blocks above) and _results fails its
        # files. Ray >= 2.60 deprecates remote args with no named max_retries to take their place.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ds = ds.map(decode_row, fn_args=(self.spec,), num_cpus=p.decode_cpus, max_retries=DECODE_RETRIES)
        provider = "cuda" if p.gpus_per_actor else "cpu"
        threads = max(1, int(p.actor_cpus))
        blocks = math.ceil(len(paths) / per_block)
        return ds.map(SegmentModel, fn_constructor_args=(self.spec, provider, threads),
                      compute=ray.data.ActorPoolStrategy(size=min(p.actors, blocks)), num_cpus=p.actor_cpus,
                      num_gpus=p.gpus_per_actor or None)

    def _results(self, paths: list[str]) -> Iterator[SongResult]:
        """Results in the order of ``paths``; the files of a decode task that died every time come back failed."""
        stages = self.model.stages
        expected = 0
        try:
            for row in self.dataset(paths).iter_rows():
                i = int(row["i"])
                if i < expected:  # preserve_order promises this; a broken promise must not mislabel
                    raise MerLiveError(f"Ray returned file {i} where {expected} was due; rerun with --resume")
                for skipped in range(expected, i):
                    yield stages.failed(paths[skipped], CRASHED)
                expected = i + 1
                yield self.result(row)
            for skipped in range(expected, len(paths)):
                yield stages.failed(paths[skipped], CRASHED)
                expected += 1
        except MerLiveError:
            raise
        except Exception as exc:  # noqa: BLE001 - an actor that cannot start, a lost head: one line, not a trace
            raise MerLiveError(f"the Ray run stopped after {expected} of {len(paths)} files ({one_line(exc)}); "
                               "with --out, the rows saved so far stay and --resume continues") from exc

    def result(self, row: dict) -> SongResult:
        stages = self.model.stages
        messages = tuple(json.loads(row["messages"]))
        if row["error"]:
            return stages.failed(row["path"], row["error"], messages)
        segments = np.frombuffer(row["segments"], dtype=row["dtype"]).reshape(-1, len(stages.tasks))
        song = {k: float(v) for k, v in json.loads(row["song"]).items()}
        return stages.song_result(row["path"], float(row["duration"]), song, segments.copy(), messages)


# ---- on the workers


def worker_model(spec: Spec, provider: str, threads: int) -> Stages:
    """The stages on this node (``worker_stages``: opened once per worker process)."""
    return worker_stages(dataclasses.replace(spec.stages, bundle_path=local_bundle(spec)), provider, threads)


@lru_cache(maxsize=4)
def local_bundle(spec: Spec) -> str:
    """The bundle folder on this node: the driver's path when it holds the same bundle, else the bytes
    from the object store written (once, atomically) into a cache folder named by the bundle's hash."""
    with contextlib.suppress(OSError):
        if hashlib.sha256((Path(spec.stages.bundle_path) / "bundle.json").read_bytes()).hexdigest() == spec.bundle_id:
            return spec.stages.bundle_path
    root = Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "mer-live-ray-bundles")
    folder = root / spec.bundle_id[:32]
    if (folder / "bundle.json").is_file():
        return str(folder)
    import ray

    files = ray.get(spec.files)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    for name, data in files.items():
        (staging / name).write_bytes(data)
    try:
        os.rename(staging, folder)
    except OSError:  # another worker on this node got there first
        for name in files:
            (staging / name).unlink(missing_ok=True)
        staging.rmdir()
    return str(folder)


def decode_row(row: dict, spec: Spec) -> dict:
    """The CPU stage: decode one file and run the front end; a failure is the row's ``error``."""
    model = worker_model(spec, "cpu", 1)
    item = model.decode(row["path"])
    logmel = item.logmel if item.logmel is not None else np.zeros((0, 0), np.float32)
    return {"i": row["i"], "path": row["path"], "duration": float(item.duration), "error": item.error,
            "messages": json.dumps(list(item.messages)), "logmel": logmel.tobytes(),
            "rows": int(logmel.shape[0]), "cols": int(logmel.shape[1]), "dtype": str(logmel.dtype)}


class SegmentModel:
    """The actor stage: the segment model over a clip's log-mel, then the song aggregation."""

    def __init__(self, spec: Spec, provider: str, threads: int) -> None:
        self.model = worker_model(spec, provider, threads)

    def __call__(self, row: dict) -> dict:
        from mer_live.runtime.stages import Decoded

        messages = json.loads(row["messages"])
        out = {"i": row["i"], "path": row["path"], "duration": float(row["duration"]), "error": row["error"],
               "messages": row["messages"], "song": "{}", "segments": b"", "dtype": "float32"}
        if row["error"]:
            return out
        logmel = np.frombuffer(row["logmel"], dtype=row["dtype"]).reshape(int(row["rows"]), int(row["cols"]))
        try:
            result = self.model.finish(Decoded(row["path"], float(row["duration"]), logmel, "", messages))
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch
            out["error"] = one_line(exc)
            return out
        out.update(duration=float(result.duration), error=result.error, song=json.dumps(dict(result.probs)),
                   segments=np.ascontiguousarray(result.segments).tobytes(), dtype=str(result.segments.dtype))
        return out


# ---- the command


@contextlib.contextmanager
def ray_runner(model: Model, address: str | None, provider: str = "auto", gpus_per_actor: float | None = None,
               actors: int | None = None) -> Iterator[tuple[RayRunner, str]]:
    """(runner, where) for ``label_files`` on the cluster at ``address``; disconnects (and stops a
    cluster started here) at the end."""
    ray = import_ray()
    started_here = not ray.is_initialized()
    ray, shown = connect(address)
    try:
        runner = RayRunner(ray, model, plan(ray, shown, provider, gpus_per_actor, actors))
        yield runner, runner.plan.where()
    finally:
        if started_here:
            ray.shutdown()
