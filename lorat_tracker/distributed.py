"""Sharding an evaluation over processes (torchrun, several GPUs or machines); no harness imports.

Every rank tracks ``shard(sequences)`` and writes its own result files into the shared output
layout (one file per sequence, so ranks never write the same file); rank 0 may analyse after
``barrier()``. Works without torch.distributed initialised (a single process is rank 0 of 1)::

    from lorat_tracker import distributed as dist_utils

    dist_utils.init()                                   # no-op unless launched by torchrun
    device = dist_utils.device_for_rank("cuda")         # cuda:LOCAL_RANK under torchrun
    mine = dist_utils.shard(sequence_names)             # sorted(names)[rank::world]
    ...track and write mine...
    dist_utils.barrier()
    if dist_utils.is_main(): ...report...
    dist_utils.cleanup()
"""
from __future__ import annotations

import datetime
import os
from typing import Callable, List, Optional, Sequence, Tuple, TypeVar

import torch

T = TypeVar("T")


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() else None


def is_initialized() -> bool:
    dist = _dist()
    return dist is not None and dist.is_initialized()


def rank_and_world() -> Tuple[int, int]:
    """(rank, world size): from the process group if initialised, else torchrun's RANK / WORLD_SIZE, else (0, 1)."""
    if is_initialized():
        dist = _dist()
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    return rank_and_world()[0] == 0


def backend_for(device) -> str:
    """nccl for CUDA devices, gloo otherwise (CPU, tests)."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def init(device="cpu", timeout_s: float = 1800.0) -> bool:
    """Join the process group torchrun describes (MASTER_ADDR/PORT, RANK, WORLD_SIZE) if there is one.

    Returns True when running distributed. A no-op for a single process or if already initialised.
    """
    if is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1:
        return False
    dist = _dist()
    if dist is None:
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend_for(dev), timeout=datetime.timedelta(seconds=timeout_s))
    return True


def device_for_rank(device) -> torch.device:
    """``cuda`` -> ``cuda:LOCAL_RANK`` when several processes share a machine; other devices unchanged."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and rank_and_world()[1] > 1:
        return torch.device("cuda", local_rank())
    return dev


def shard(items: Sequence[T], rank: Optional[int] = None, world: Optional[int] = None,
          key: Optional[Callable[[T], object]] = None) -> List[T]:
    """This rank's share: ``sorted(items, key)[rank::world]`` (every rank sorts the same way, so the
    shards are disjoint and cover everything, whatever order each rank listed the items in)."""
    r, w = rank_and_world()
    rank = r if rank is None else rank
    world = w if world is None else world
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside world of size {world}")
    return sorted(items, key=key)[rank::world]


def barrier() -> None:
    """Wait for every rank (no-op when not distributed). A rank that stopped meanwhile (its connection
    closed) raises ``RankFailedError``: one line for this rank instead of gloo's or NCCL's C++ trace."""
    if not is_initialized():
        return
    dist = _dist()
    try:
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()
    except RuntimeError as e:  # dist.DistError and gloo's "Connection closed by peer" are RuntimeErrors
        from .errors import RankFailedError

        rank, world = rank_and_world()
        cause = (str(e).strip().splitlines() or [type(e).__name__])[0]
        cause = cause.split("] ", 1)[-1][:200]  # gloo prefixes its source location
        raise RankFailedError(f"rank {rank}/{world}: another process of this job stopped while this one waited "
                              f"for it ({cause}); what every rank finished is kept - run the same command again "
                              "on every node to resume") from None


def cleanup() -> None:
    if is_initialized():
        _dist().destroy_process_group()
