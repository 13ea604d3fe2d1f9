"""What the training loop asks of the processes it runs in, and the answer for one process.

``Communicator`` is the loop's whole view of its process group; ``distributed.Comm`` answers for
several processes (torchrun, DistributedDataParallel), ``Solo`` for one: rank 0 of 1, gathering is
computing, a mean is the value itself, the wrapped module is the module. The loop therefore has no
one-process branch, and a one-process run never imports ``torch.distributed``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np
import torch

from mer_live.errors import MerLiveError


class Communicator(Protocol):
    """This process's place in the group and the few collective operations training needs."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_first(self) -> bool: ...

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module: ...

    def first_then_rest(self) -> contextlib.AbstractContextManager[None]: ...

    def epoch_rng(self, seed: int, epoch: int, rng: np.random.Generator) -> np.random.Generator: ...

    def epoch_order(self, n: int, epoch: int, seed: int, segments_per_epoch: int, rng: np.random.Generator
                    ) -> np.ndarray: ...

    def gather_rows(self, compute: Callable[[np.ndarray], dict[str, np.ndarray]], n: int
                    ) -> dict[str, np.ndarray]: ...

    def from_first(self, compute: Callable[[], object]): ...

    def all_finite(self, loss: torch.Tensor) -> bool: ...

    def mean(self, values: dict[str, float]) -> dict[str, float]: ...

    def note_division(self, epoch: int, clean: np.ndarray) -> None: ...

    def describe(self) -> str: ...

    def same_buffers(self, module: torch.nn.Module) -> None: ...


class Solo:
    """The group of one process: every collective operation is the local computation."""

    rank = 0
    world_size = 1

    def __init__(self, device: torch.device) -> None:
        self.device = device

    @property
    def is_first(self) -> bool:
        return True

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        return module

    @contextlib.contextmanager
    def first_then_rest(self) -> Iterator[None]:
        yield

    def epoch_rng(self, seed: int, epoch: int, rng: np.random.Generator) -> np.random.Generator:
        """One generator for the whole run (a resumed run restores it from the checkpoint)."""
        return rng

    def epoch_order(self, n: int, epoch: int, seed: int, segments_per_epoch: int, rng: np.random.Generator
                    ) -> np.ndarray:
        """A fresh permutation of the ``n`` segments (its first ``segments_per_epoch`` when given)."""
        order = rng.permutation(n)
        return order[:segments_per_epoch] if segments_per_epoch else order

    def gather_rows(self, compute: Callable[[np.ndarray], dict[str, np.ndarray]], n: int
                    ) -> dict[str, np.ndarray]:
        return compute(np.arange(n))

    def from_first(self, compute: Callable[[], object]):
        return compute()

    def all_finite(self, loss: torch.Tensor) -> bool:
        return math.isfinite(loss.item())

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        return values

    def note_division(self, epoch: int, clean: np.ndarray) -> None:
        """Nothing to compare a lone process's division with."""

    def same_buffers(self, module: torch.nn.Module) -> None:
        """A lone process's buffers are the only ones."""

    def describe(self) -> str:
        return ""


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA when available (or asked), else the CPU."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise MerLiveError("--compute cuda asked for, but torch sees no CUDA GPU")
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(requested)
