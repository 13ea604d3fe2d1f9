"""Data-parallel training: what every process of `torchrun -m mer_live train --ddp` shares.

``Comm`` is the one object the training loop talks to when it runs as one of several processes
(DistributedDataParallel; gloo on the CPU, NCCL on GPUs). Each process

- steps on its share of every batch: the epoch's order is a ``DistributedSampler`` permutation
  seeded with the run's seed and the epoch, so process r takes segments r, r + N, r + 2N, ... of
  the permutation one process would walk through, and with ``--batch-size B/N`` per process the
  global batch is the same B segments; DDP averages the gradients, which for a per-process mean
  loss over equal shares is the mean over the global batch;
- predicts its share of the segments for the epoch's GMM division; the shares are gathered, the
  GMM is fit once (first process) and the same division is sent to every process;
- draws augmentation and dropout from a generator seeded per process and epoch, so a resumed run
  draws what an unbroken one would have.

Only the first process writes the checkpoint, the run directory and the plots. A one-process run
talks to ``comm.Solo`` instead and never imports this module.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import socket
import sys
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from mer_live.errors import MerLiveError

TIMEOUT = datetime.timedelta(minutes=30)  # the first process may fill the caches while the others wait


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Comm:
    """This process's place in a group of several and the collective operations training needs
    (``comm.Communicator``)."""

    def __init__(self, rank: int, world_size: int, local_rank: int, device: torch.device) -> None:
        self.rank = rank
        self.world_size = world_size
        self.local_rank = local_rank
        self.device = device

    @classmethod
    @contextlib.contextmanager
    def start(cls, requested: str = "auto") -> Iterator[Comm]:
        """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT),
        or a group of one when started without torchrun; leave it on the way out."""
        if "RANK" not in os.environ:
            os.environ.update({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                               "MASTER_PORT": str(_free_port())})
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if requested == "cuda" and not torch.cuda.is_available():
            raise MerLiveError("--compute cuda asked for, but torch sees no CUDA GPU")
        if requested != "cpu" and torch.cuda.is_available():
            if local_rank >= torch.cuda.device_count():
                raise MerLiveError(f"process {local_rank} of this machine has no GPU: torch sees "
                                   f"{torch.cuda.device_count()}; start at most that many per machine")
            device, backend = torch.device("cuda", local_rank), "nccl"
            torch.cuda.set_device(device)
        else:
            device, backend = torch.device("cpu"), "gloo"
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=TIMEOUT)
        try:
            yield cls(rank, world, local_rank, device)
        finally:
            dist.destroy_process_group()

    @property
    def is_first(self) -> bool:
        return self.rank == 0

    def note(self, message: str) -> None:
        """A line from every process (the epoch lines come from the first one only)."""
        print(f"[rank {self.rank}/{self.world_size}] {message}", file=sys.stderr, flush=True)

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """The trainable module under DistributedDataParallel (batch norm synchronised on GPUs; gloo has
        no SyncBatchNorm, so on the CPU each process normalises over its own share of the batch)."""
        if self.device.type == "cuda":
            module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
            return DistributedDataParallel(module, device_ids=[self.device.index])
        return DistributedDataParallel(module)

    @contextlib.contextmanager
    def first_then_rest(self) -> Iterator[None]:
        """The first process runs the block alone (filling caches), then the others run it (reading them)."""
        if not self.is_first:
            dist.barrier()
        yield
        if self.is_first:
            dist.barrier()

    def epoch_rng(self, seed: int, epoch: int, rng: np.random.Generator) -> np.random.Generator:
        """Augmentation and mixup draws of this process in this epoch (not ``rng``, the run's: per process
        and epoch, so a resumed run draws what an unbroken one would); torch's (dropout) reseeded alike."""
        torch.manual_seed(int(np.random.SeedSequence([seed, epoch, self.rank]).generate_state(1)[0]))
        return np.random.default_rng([seed, epoch, self.rank])

    def epoch_order(self, n: int, epoch: int, seed: int, segments_per_epoch: int, rng: np.random.Generator
                    ) -> np.ndarray:
        """This process's share of the epoch's permutation of ``n`` segments (a DistributedSampler's)."""
        sampler = DistributedSampler(range(n), num_replicas=self.world_size, rank=self.rank, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        order = np.fromiter(iter(sampler), dtype=np.int64)
        return order[: -(-segments_per_epoch // self.world_size)] if segments_per_epoch else order

    def gather_rows(self, compute: Callable[[np.ndarray], dict[str, np.ndarray]], n: int) -> dict[str, np.ndarray]:
        """``compute(idx)`` on this process's rows (r, r + N, ...) of ``n``; every process gets all rows."""
        idx = np.arange(self.rank, n, self.world_size)
        shares = [None] * self.world_size
        dist.all_gather_object(shares, (idx, compute(idx)))
        out = {}
        for rows, values in shares:
            for key, value in values.items():
                if key not in out:
                    out[key] = np.empty((n, *value.shape[1:]), dtype=value.dtype)
                out[key][rows] = value
        return out

    def from_first(self, compute: Callable[[], object]):
        """``compute()`` on the first process; every process returns that result."""
        box = [compute() if self.is_first else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_finite(self, loss: torch.Tensor) -> bool:
        """Whether every process's loss is finite (so that all stop together, not some in a collective)."""
        bad = torch.tensor([0.0 if torch.isfinite(loss.detach()).all() else 1.0], device=self.device)
        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        return bad.item() == 0.0

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Per-key mean over the processes."""
        keys = list(values)
        tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return {k: float(v) / self.world_size for k, v in zip(keys, tensor.tolist())}

    def note_division(self, epoch: int, clean: np.ndarray) -> None:
        """Every process names the division it steps with: the same fingerprint on every process."""
        self.note(f"epoch {epoch + 1} GMM division of {len(clean)} segments: {digest(clean)}")

    def describe(self) -> str:
        """What the training log line adds after the device: ' x 2 processes'."""
        return f" x {self.world_size} processes"

    def same_buffers(self, module: torch.nn.Module) -> None:
        """Every process takes the first one's buffers (batch-norm running statistics)."""
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def digest(array: np.ndarray) -> str:
    """A short fingerprint of an array's exact bytes: equal on two processes only if the arrays are."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]
