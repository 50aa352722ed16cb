"""DistributedDataParallel under torchrun: gloo on CPU, NCCL on CUDA; rank 0 alone logs and saves."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: torch.device) -> Rank:
    """Join the process group torchrun set up (a no-op in a single process). On CUDA each rank
    first makes its own GPU (LOCAL_RANK) the current device: otherwise every rank's NCCL
    communicator and stray allocations land on GPU 0."""
    if not launched_by_torchrun():
        return Rank()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Rank(dist.get_rank(), local_rank, dist.get_world_size())


def any_rank(flag: bool, rank: Rank, device: torch.device) -> bool:
    """True on every rank if it is true on any (so all ranks stop at the same step)."""
    if not rank.distributed:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def barrier(rank: Rank) -> None:
    """Wait until every rank gets here (e.g. rank 0 has set the checkpoint folder up)."""
    if rank.distributed:
        dist.barrier()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
