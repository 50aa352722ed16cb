"""DistributedDataParallel under torchrun: gloo on CPU, NCCL on CUDA; rank 0 alone logs and saves.

On one node or several: torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, ...) says where
the others are. A collective that waits longer than the timeout (a node lost without its sockets
closing, a hung peer) fails instead of hanging for torch's 30 minutes: `init` takes the timeout for
the start, where ranks wait for rank 0's own work (setting up the checkpoint folder and the
tracking run, which may take a while; SETUP_TIMEOUT_S), and `set_timeout` a shorter one for the
training steps.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

SETUP_TIMEOUT_S = 600.0  # a timeout for the start, while rank 0 sets up what the others will read


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


def init(device: torch.device, timeout_s: float | None = None) -> Rank:
    """Join the process group torchrun set up (a no-op in a single process). On CUDA each rank
    first makes its own GPU (LOCAL_RANK) the current device: otherwise every rank's NCCL
    communicator and stray allocations land on GPU 0. `timeout_s` bounds every collective
    (None: torch's default, 30 minutes)."""
    if not launched_by_torchrun():
        return Rank()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        timeout = {"timeout": timedelta(seconds=timeout_s)} if timeout_s else {}
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", **timeout,
                                **_this_rounds_store(timeout_s))
    return Rank(dist.get_rank(), local_rank, dist.get_world_size())


def _this_rounds_store(timeout_s: float | None) -> dict:
    """Under torchrun's agent store (TORCHELASTIC_USE_AGENT_STORE), the store of this round of
    workers. The agent keeps one store for every restart, and torch's process group keys carry no
    round: a restarted rank could read the address a dead rank of the previous round left there
    and fail to connect (seen on two nodes after a lost worker). Each worker counts itself in the
    store; a round's workers all count before the next round starts, so count // world size names
    the round, and its keys live under that prefix (a worker that dies before it counts, at import,
    shifts the count: the next round then fails at the start's timeout). Elsewhere: {} (torch's
    env:// as it is)."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return {}
    world_size = int(os.environ["WORLD_SIZE"])
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                          timeout=timedelta(seconds=timeout_s or 1800))
    workers = store.add("folio/workers", 1)
    return {"store": dist.PrefixStore(f"folio/round-{(workers - 1) // world_size}", store),
            "rank": int(os.environ["RANK"]), "world_size": world_size}


def any_rank(flag: bool, rank: Rank, device: torch.device) -> bool:
    """True on every rank if it is true on any (so all ranks stop at the same step)."""
    if not rank.distributed:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def gather(obj, rank: Rank) -> list:
    """`obj` from every rank, in rank order (every rank gets the list; [obj] in a single process)."""
    if not rank.distributed:
        return [obj]
    objects = [None] * rank.world_size
    dist.all_gather_object(objects, obj)
    return objects


# how gloo says a peer is gone (a plain RuntimeError): its socket closed, or the timeout passed
_PEER_LOST = ("Connection closed by peer", "Connection reset by peer", "Timed out waiting", "timed out",
              "Socket Timeout", "gloo/transport")


def is_peer_lost(err: BaseException) -> bool:
    """Whether `err` is a collective that failed because another rank went away or timed out."""
    return isinstance(err, dist.DistError) or (
        isinstance(err, RuntimeError) and any(mark in str(err) for mark in _PEER_LOST))


def barrier(rank: Rank) -> None:
    """Wait until every rank gets here (e.g. rank 0 has set the checkpoint folder up)."""
    if rank.distributed:
        dist.barrier()


def set_timeout(rank: Rank, timeout_s: float) -> None:
    """From now on a collective (gloo or NCCL) that waits over `timeout_s` for the others fails."""
    if rank.distributed:
        dist.distributed_c10d._set_pg_timeout(timedelta(seconds=timeout_s))


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
