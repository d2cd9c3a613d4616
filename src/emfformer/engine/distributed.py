"""Multi-process training on torch.distributed, launched by torchrun (one process per GPU or CPU slot).

``torchrun --nproc_per_node=N -m emfformer train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK; without
them training runs in one process and nothing here does anything. Each step's global batch
(``optim.batch_size``) is cut into equal per-rank parts of the same global order, so N processes
see the same samples per step as one process would; DistributedDataParallel averages the gradients.
BatchNorm statistics stay per rank (SyncBatchNorm needs CUDA), the one difference from one process.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "Dist", "from_env", "setup", "teardown", "barrier", "wrap", "unwrap", "rank_batches", "shard", "gather", "mean",
    "all_reduce_sum",
]  # fmt: skip

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    """Where this process sits in the job: global rank, number of processes, rank on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs and the run folder; the others only compute."""
        return self.rank == 0


def from_env() -> Dist:
    """The job layout torchrun exports (RANK, WORLD_SIZE, LOCAL_RANK); one process when absent."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as exc:
        raise ValueError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers (set by torchrun): {exc}") from exc
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ValueError(
            f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}"
        )
    return Dist(rank, world, local)


def setup(d: Dist, device: torch.device, timeout_s: float = 1800) -> torch.device:
    """Join the process group (nccl on CUDA, gloo on CPU); returns this rank's device."""
    if not d.enabled:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(seconds=timeout_s)
        )
    return device


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(d: Dist) -> None:
    """Wait for every rank (e.g. until rank 0 has written the split and the slice cache)."""
    if d.enabled:
        dist.barrier()


def wrap(model: nn.Module, d: Dist, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` when there are several processes."""
    if not d.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a DistributedDataParallel (its state dict has no ``module.`` prefix)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def rank_batches(
    n: int, batch_size: int, generator: torch.Generator, drop_last: bool, d: Dist
) -> list[list[int]]:
    """This rank's share of each global batch of one epoch's shuffled order of ``n`` samples.

    The global order is ``torch.randperm(n, generator)`` cut into batches of ``batch_size``; rank r
    takes every ``world_size``-th sample of each batch, starting at r.
    """
    if batch_size % d.world_size:
        raise ValueError(
            f"optim.batch_size {batch_size} is the global batch: it must divide evenly among the "
            f"{d.world_size} processes"
        )
    order = torch.randperm(n, generator=generator).tolist()
    stop = n - n % batch_size if drop_last else n
    batches = [order[i : i + batch_size][d.rank :: d.world_size] for i in range(0, stop, batch_size)]
    return [b for b in batches if b]


def shard(items: Sequence[T], d: Dist) -> Sequence[T]:
    """This rank's items of a sequence (every ``world_size``-th, starting at its rank). A slice, not a
    list: a lazy sequence (`emfformer.data.cases.LazyVolumes`) stays lazy, volumes are read one at a time."""
    return items[d.rank :: d.world_size]


def gather(items: list[T], d: Dist) -> list[T]:
    """Undo `shard`: every rank's items, back in their original order, on every rank."""
    if not d.enabled:
        return items
    parts: list[Any] = [None] * d.world_size
    dist.all_gather_object(parts, items)
    out: list[T] = []
    for i in range(max(len(p) for p in parts)):
        out.extend(p[i] for p in parts if i < len(p))
    return out


def mean(value: float | None, d: Dist) -> float | None:
    """The mean of a per-rank number over all ranks (None stays None)."""
    if not d.enabled or value is None:
        return value
    values = gather([float(value)], d)  # objects, not tensors: works on gloo and nccl alike
    return sum(values) / len(values)


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of ``tensor`` over all ranks, differentiable; shape unchanged.

    The gradient is summed over the ranks as well: every rank computes the same loss from the summed
    tensor, and after DistributedDataParallel divides by the number of processes each rank's part of a
    global-batch quantity (the Dice sums) gets exactly its one-process gradient. (What the deprecated
    ``torch.distributed.nn.functional.all_reduce`` did; torch 2.13 has no public differentiable
    replacement.)
    """
    return _AllReduceSum.apply(tensor)
