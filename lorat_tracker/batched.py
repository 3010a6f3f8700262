"""Lockstep evaluation of many sequences through one batched forward per step (no harness imports).

Up to ``batch_size`` sequences are tracked at once with ``LoRATTracker.step``; when one ends, the
next job takes its slot. Each sequence keeps its own template, mask, padding colour and box (a
``Target``) and goes through the same operations as in a sequential ``initialize`` / ``track`` run.

What that guarantees, and what it does not: at ``batch_size=1`` the boxes are bit-identical to the
sequential run (same kernels, same shapes). At ``batch_size > 1`` every row of a batched forward is
the batch-1 arithmetic, but the BLAS may sum a batched GEMM in another order than a single one:
bit-identical boxes on CPUs whose kernels do not (``blas_rows_match_batch_one()``; e.g. the AMD EPYC
AVX-512 machine the tests were written on), float32 rounding differences elsewhere (Intel AMX:
oneDNN/MKL block batched GEMMs differently; measured up to 4.6e-05 px over 16 sequences), and on
GPUs. The bound tested and checked by ``benchmarks/batched.py`` is ``BATCH_TOLERANCE_PX`` (1e-3 px,
the tolerance ``lorat selftest`` holds the official pipeline to). Tracking feeds each box into the
next crop, so a near tie between two cells of a score map could in principle let the runs choose
different cells; no such case has been observed.
Frames are decoded by a background thread, in exactly the order the lockstep loop consumes them,
so decoding overlaps with compute.

A harness keeps writing its own files; it only hands over jobs and a callback::

    from lorat_tracker.batched import SequenceJob, run_batched

    jobs = [SequenceJob(name, frame_paths, init_box_xywh) for name, frame_paths, init_box_xywh in dataset]
    def write(result):                       # called once per sequence, as soon as it is finished
        save_boxes(result.name, result.boxes)           # (T, 4) xywh, row 0 = the init box as given
        save_times(result.name, result.times)           # (T,) seconds
    run_batched(tracker, jobs, batch_size=8, callback=write, read_frame=my_reader)

``read_frame`` must decode exactly as the sequential path does (PIL vs OpenCV JPEG decoders may
differ in the last bit of a pixel); it returns an RGB uint8 (H, W, 3) array. Results arrive in the
order sequences finish; ``iter_batched`` yields them instead of calling back.
"""
from __future__ import annotations

import dataclasses
import functools
import queue
import threading
import time
from collections import deque
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .tracker import LoRATTracker, Target
from .images import read_rgb  # the default frame reader (OpenCV; images.py says who decodes how)

FrameSource = Union[Sequence, Callable[[int], np.ndarray]]

# Largest box difference (px) between a batched and the sequential run that the tests and
# benchmarks/batched.py accept: float32 summation order, not a tracking difference (see above).
BATCH_TOLERANCE_PX = 1e-3


@functools.lru_cache(maxsize=None)
def blas_rows_match_batch_one(device="cpu", dim: int = 768, tokens: int = 320, batch: int = 3) -> bool:
    """Whether this machine's GEMM kernels give every row of a batched product bit-identically to a
    batch of one, at B-224's widths (token count, embed dim, 4x MLP, attention). Where they do, batched
    evaluation is bit-identical to sequential; where they do not, it agrees to float32 rounding."""
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, tokens, dim, generator=g).to(device)
    weights = [torch.randn(n, dim, generator=g).to(device) * 0.02 for n in (dim, 3 * dim, 4 * dim)]
    with torch.inference_mode():
        for w in weights:
            full = torch.nn.functional.linear(x, w)
            if not all(torch.equal(full[i], torch.nn.functional.linear(x[i:i + 1], w)[0]) for i in range(batch)):
                return False
        q = x.view(batch, tokens, 12, dim // 12).transpose(1, 2)
        full = q @ q.transpose(-1, -2)
        return all(torch.equal(full[i], (q[i:i + 1] @ q[i:i + 1].transpose(-1, -2))[0]) for i in range(batch))


@dataclasses.dataclass
class SequenceJob:
    """One sequence to track.

    ``frames``: a list of frame paths (decoded with ``read_frame``) or RGB arrays, or a callable
    ``frames(i) -> RGB array`` together with ``num_frames``. ``init_box``: 0-based [x, y, w, h] in
    frame 0. ``meta`` is passed through untouched (e.g. the harness's own sequence object).
    """
    name: str
    frames: FrameSource
    init_box: Sequence[float]
    num_frames: Optional[int] = None
    meta: object = None

    def __len__(self) -> int:
        if self.num_frames is not None:
            return self.num_frames
        if callable(self.frames):
            raise ValueError(f"sequence {self.name!r}: frames is a callable, so num_frames must be given")
        return len(self.frames)

    def frame(self, index: int, read_frame: Callable) -> np.ndarray:
        if callable(self.frames):
            return self.frames(index)
        item = self.frames[index]
        return item if isinstance(item, np.ndarray) else read_frame(item)


@dataclasses.dataclass
class SequenceResult:
    """A finished sequence. Row 0 of ``boxes`` is the init box as given, score 1.0 (like a harness).

    ``times[0]`` is the time of ``new_target``; ``times[t]`` for t >= 1 is the wall time of the batched
    step that produced frame t divided by the number of sequences in that step (the frame's share of
    the forward), so ``times.sum()`` over all sequences adds up to the tracking time. Decoding is not
    included (harnesses time only init/update, not image loading).
    """
    name: str
    boxes: np.ndarray    # (T, 4) float64 0-based xywh
    scores: np.ndarray   # (T,) float64
    times: np.ndarray    # (T,) seconds
    job: SequenceJob


# ------------------------------------------------------------------------------------ scheduling

# A step of the lockstep loop: first the slots that (re)start with a new job, each needing its frame 0,
# then every busy slot advances by one frame. Both the decoder thread and the tracking loop walk the
# same deterministic schedule, so the decoder can stay ahead without ever guessing.
Step = Tuple[List[Tuple[int, int]], List[Tuple[int, int, int]]]  # ([(slot, job)], [(slot, job, frame)])


def lockstep_schedule(lengths: Sequence[int], batch_size: int) -> Iterator[Step]:
    """The steps for jobs of the given frame counts: slots are refilled in job order, lowest slot first."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pending = deque(range(len(lengths)))
    slots: List[Optional[List[int]]] = [None] * batch_size  # [job, next frame]
    while True:
        starts = []
        for s in range(batch_size):
            while slots[s] is None and pending:
                j = pending.popleft()
                starts.append((s, j))
                if lengths[j] > 1:  # a one-frame sequence ends at its init frame
                    slots[s] = [j, 1]
        advances = [(s, slot[0], slot[1]) for s, slot in enumerate(slots) if slot is not None]
        if not starts and not advances:
            return
        yield starts, advances
        for s, j, _ in advances:
            slots[s][1] += 1
            if slots[s][1] >= lengths[j]:
                slots[s] = None


class _Prefetcher:
    """Decodes frames on a background thread in schedule order into a bounded queue."""

    _END = object()

    def __init__(self, jobs: Sequence[SequenceJob], lengths, batch_size: int, read_frame: Callable, depth: int):
        self._queue: "queue.Queue" = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(jobs, lengths, batch_size, read_frame),
                                        name="lorat-frame-prefetch", daemon=True)
        self._thread.start()

    def _run(self, jobs, lengths, batch_size, read_frame):
        try:
            for starts, advances in lockstep_schedule(lengths, batch_size):
                for _, j in starts:
                    self._put((j, 0, jobs[j].frame(0, read_frame)))
                for _, j, t in advances:
                    self._put((j, t, jobs[j].frame(t, read_frame)))
        except _Stopped:
            return
        except BaseException as e:  # handed to the consumer, raised there with the frame it was on
            self._put_quietly(e)
            return
        self._put_quietly(self._END)

    def _put(self, item):
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def _put_quietly(self, item):
        try:
            self._put(item)
        except _Stopped:
            pass

    def get(self, job: int, frame: int) -> np.ndarray:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        if item is self._END or item[:2] != (job, frame):  # cannot happen: same schedule on both sides
            got = "the end" if item is self._END else item[:2]
            raise RuntimeError(f"frame prefetch out of order: wanted {(job, frame)}, got {got}")
        return item[2]

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)


class _Stopped(Exception):
    pass


class _Direct:
    """Same interface as _Prefetcher, decoding on the calling thread (prefetch=0)."""

    def __init__(self, jobs, read_frame):
        self.jobs, self.read_frame = jobs, read_frame

    def get(self, job: int, frame: int) -> np.ndarray:
        return self.jobs[job].frame(frame, self.read_frame)

    def close(self):
        pass


# ------------------------------------------------------------------------------------ the loop

@dataclasses.dataclass
class _Running:
    job: int
    target: Target
    boxes: np.ndarray
    scores: np.ndarray
    times: np.ndarray


def iter_batched(tracker: LoRATTracker, jobs: Sequence[SequenceJob], batch_size: int = 8,
                 read_frame: Callable = read_rgb, prefetch: Optional[int] = None,
                 longest_first: bool = True) -> Iterator[SequenceResult]:
    """Track ``jobs`` ``batch_size`` at a time; yield each ``SequenceResult`` as its sequence ends.

    ``prefetch``: how many decoded frames the background thread may hold ahead of the tracker
    (default ``2 * batch_size``; 0 decodes on the calling thread). ``longest_first`` starts the
    longest sequences first so that few steps at the end run with a part-empty batch (each
    sequence's boxes do not depend on the order, only the order results arrive in does).
    """
    jobs = list(jobs)
    if longest_first:
        jobs = sorted(jobs, key=len, reverse=True)  # stable: equal lengths keep their order
    lengths = [len(job) for job in jobs]
    for job, n in zip(jobs, lengths):
        if n < 1:
            raise ValueError(f"sequence {job.name!r} has no frames")
    depth = 2 * batch_size if prefetch is None else prefetch
    source = _Prefetcher(jobs, lengths, batch_size, read_frame, depth) if depth > 0 else _Direct(jobs, read_frame)
    slots: List[Optional[_Running]] = [None] * batch_size
    try:
        for starts, advances in lockstep_schedule(lengths, batch_size):
            for s, j in starts:
                frame = source.get(j, 0)
                start = time.perf_counter()
                target = tracker.new_target(frame, jobs[j].init_box)
                n = lengths[j]
                run = _Running(j, target, np.zeros((n, 4)), np.zeros(n), np.zeros(n))
                run.boxes[0] = np.asarray(jobs[j].init_box, dtype=np.float64)
                run.scores[0] = 1.0
                run.times[0] = time.perf_counter() - start
                if n == 1:
                    yield _result(jobs[j], run)
                else:
                    slots[s] = run
            if not advances:
                continue
            frames = [source.get(j, t) for _, j, t in advances]
            start = time.perf_counter()
            predictions = tracker.step([slots[s].target for s, _, _ in advances], frames)
            share = (time.perf_counter() - start) / len(advances)
            for (s, j, t), pred in zip(advances, predictions):
                run = slots[s]
                run.boxes[t], run.scores[t], run.times[t] = pred.box, pred.score, share
                if t == lengths[j] - 1:
                    slots[s] = None
                    yield _result(jobs[j], run)
    finally:
        source.close()


def _result(job: SequenceJob, run: _Running) -> SequenceResult:
    return SequenceResult(job.name, run.boxes, run.scores, run.times, job)


def run_batched(tracker: LoRATTracker, jobs: Sequence[SequenceJob], batch_size: int = 8,
                callback: Optional[Callable[[SequenceResult], None]] = None, read_frame: Callable = read_rgb,
                prefetch: Optional[int] = None, longest_first: bool = True) -> List[SequenceResult]:
    """``iter_batched`` with a callback per finished sequence; returns the results (in job order)
    unless a callback is given (then results are not kept, so memory stays flat on big benchmarks)."""
    kept = []
    results = iter_batched(tracker, jobs, batch_size, read_frame=read_frame, prefetch=prefetch,
                           longest_first=longest_first)
    try:
        for result in results:
            if callback is not None:
                callback(result)
            else:
                kept.append(result)
    finally:
        results.close()  # stops the prefetch thread at once if the callback raised
    order = {id(job): i for i, job in enumerate(jobs)}
    return sorted(kept, key=lambda r: order[id(r.job)])


def track_sequential(tracker: LoRATTracker, job: SequenceJob, read_frame: Callable = read_rgb) -> SequenceResult:
    """The plain ``initialize`` / ``track`` loop over one job (the reference the batched run must equal)."""
    n = len(job)
    boxes, scores, times = np.zeros((n, 4)), np.zeros(n), np.zeros(n)
    boxes[0], scores[0] = np.asarray(job.init_box, dtype=np.float64), 1.0
    for t in range(n):
        frame = job.frame(t, read_frame)
        start = time.perf_counter()
        if t == 0:
            tracker.initialize(frame, job.init_box)
        else:
            pred = tracker.track(frame)
            boxes[t], scores[t] = pred.box, pred.score
        times[t] = time.perf_counter() - start
    return SequenceResult(job.name, boxes, scores, times, job)
