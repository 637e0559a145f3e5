"""Multi-process (DistributedDataParallel) plumbing.

``torchrun --nproc-per-node=K -m edgeseg.cli train ...`` sets ``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK`` and the rendezvous variables; :func:`init_from_env` turns them into a process group
(NCCL on CUDA, gloo on the CPU). :func:`edgeseg.train.fit` itself only asks whether a process group
exists, so tests (and users embedding edgeseg) can also start the group themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from edgeseg.errors import EdgesegError

__all__ = ["DistInfo", "dist_info", "init_from_env", "shutdown", "gather_objects", "barrier"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job.

    Args:
        rank: global rank (0 in a single-process run).
        world_size: number of processes.
        local_rank: rank on this machine; selects the CUDA device.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on the process that logs and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def dist_info() -> DistInfo:
    """Rank and world size of the current process group (a single process when there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def init_from_env(use_cuda: bool) -> DistInfo:
    """Start the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1); no-op otherwise.

    Args:
        use_cuda: pick NCCL and bind this process to GPU ``LOCAL_RANK``; otherwise gloo (CPU).

    Raises:
        EdgesegError: ``WORLD_SIZE`` is set but the other torchrun variables are not.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        return dist_info()
    for var in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise EdgesegError(f"WORLD_SIZE={world} but {var} is not set; launch with torchrun")
    if use_cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return dist_info()


def shutdown() -> None:
    """Destroy the process group if one exists."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
