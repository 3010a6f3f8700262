"""The data position: which dataset indices global step ``s`` trains on, and the DataLoader of this
rank's share of each global batch.

The pairs of global step ``s`` are the dataset indices ``[s * B, (s + 1) * B)`` (``B`` = global
batch) and a pair is a pure function of (seed, epoch, index) (``PairDataset``), so neither the number
of data workers nor the number of ranks changes what is trained: rank ``r`` of ``W`` takes the
``r``-th contiguous ``B / W`` slice of every global batch.
"""
from __future__ import annotations

import signal
from typing import Iterator, List, Sequence

import torch

from ..errors import LoRATError


def step_indices(step: int, batch_size: int, rank: int = 0, world: int = 1) -> List[int]:
    """Dataset indices of this rank's share of global step ``step``: a contiguous ``batch_size / world``
    slice of ``[step * batch_size, (step + 1) * batch_size)``."""
    per = batch_size // world
    start = step * batch_size + rank * per
    return list(range(start, start + per))


def _worker_init(_):
    # Ctrl-C is the main process's business: it finishes the step and writes a checkpoint, and a
    # worker dying of the same SIGINT would turn that into a DataLoader crash.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


def start_fork_server_without_sigint() -> None:
    """Start the fork server with SIGINT blocked, so that neither it nor any worker it forks ever sees one.

    Ctrl-C in a terminal signals the whole foreground process group: the fork server and the workers
    too. A worker ignores SIGINT only once ``_worker_init`` has run, and the fork server only once its
    preload (``__main__``: this package, torch) is imported, so a Ctrl-C in those seconds killed one of
    them and the loop ended in "DataLoader worker exited unexpectedly" instead of its stop checkpoint. A
    blocked signal mask is inherited through fork and exec, and the fork server sets SIGINT to ignored
    (dropping a pending one) before it forks any worker. A SIGINT sent meanwhile to this process stays
    pending and is delivered here when the mask is restored."""
    import multiprocessing.forkserver

    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def make_loader(dataset, steps: Sequence[int], batch_size: int, rank: int, world: int, workers: int,
                pin_memory: bool = False):
    """Workers start from a fork server, not by forking this process: its threads (OpenMP, an inference
    runtime's pool, the evaluator's) make ``fork`` unsafe. That is not enough after OpenVINO: a process
    that had run it crashed (SIGSEGV) when it later started workers even so, so training runs in a process
    that has not (``lorat train`` is its own process; docs/backends.md says so). A pair is a pure function
    of its index, so the batches are the same with any number of workers."""
    batches = [step_indices(s, batch_size, rank, world) for s in steps]
    if workers:
        start_fork_server_without_sigint()
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                                         worker_init_fn=_worker_init if workers else None,
                                         multiprocessing_context="forkserver" if workers else None,
                                         pin_memory=pin_memory, persistent_workers=False,
                                         prefetch_factor=4 if workers else None)
    return _Batches(loader)


class _Batches:
    """The DataLoader's batches, with a worker's project error re-raised as itself: torch re-raises it in
    this process with the worker's whole traceback as its message, which the CLI would print as a dozen
    lines where a data mistake gets one."""

    def __init__(self, loader: torch.utils.data.DataLoader):
        self.loader = loader

    def __iter__(self) -> Iterator[dict]:
        try:
            yield from self.loader
        except LoRATError as e:
            text = str(e)
            if "Original Traceback" not in text:
                raise
            # the traceback's last line: "lorat_tracker.errors.DatasetLayoutError: <the message>"
            raise type(e)(text.rstrip().splitlines()[-1].partition(": ")[2]) from None
