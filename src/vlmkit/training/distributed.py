"""More processes through torch.distributed: `torchrun --nproc-per-node N -m vlmkit train ...`.

Only the projector trains, so plain DistributedDataParallel over it is enough (no FSDP). torchrun
sets RANK, WORLD_SIZE and LOCAL_RANK; without them this is one process and nothing changes.
Each process trains on its share of every global batch; rank 0 alone writes the run folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    reduce_device: str = "cpu"  # where all-reduced scalars live: the GPU with NCCL, the CPU with gloo


def start(device: str | None) -> tuple[Distributed, str | None]:
    """(the process group, the device this process uses); a single process when not under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Distributed(), device
    import torch
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if cuda:
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Distributed(rank, world, local_rank, device if cuda else "cpu"), device or "cpu"


def wrap(projector, info: Distributed, device: str):
    if info.world == 1:
        return projector
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(projector, device_ids=[info.local_rank] if device.startswith("cuda") else None)


def stop(info: Distributed) -> None:
    if info.world > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
