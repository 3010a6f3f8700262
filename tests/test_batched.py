"""Batched lockstep evaluation equals the sequential initialize/track loop, frame for frame.

Bit for bit at batch size 1 (by construction) and wherever the CPU's GEMM kernels sum a batched
product like a single one (``blas_rows_match_batch_one``, checked here first); within
``BATCH_TOLERANCE_PX`` everywhere (Intel AMX CPUs, GPUs: float32 summation order).
"""
from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
import torch

from lorat_tracker.batched import (BATCH_TOLERANCE_PX, SequenceJob, blas_rows_match_batch_one, iter_batched,
                                   lockstep_schedule, read_rgb, run_batched, track_sequential)
from lorat_tracker.demo import render_sequence

# Different lengths (including a one-frame sequence), frame sizes and frame sources.
LENGTHS = [7, 3, 1, 9, 4]


# Scores are sigmoid outputs in [0, 1]: float32 rounding of the logits moves them by ~1e-7.
SCORE_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def exact_blas():
    """True where batched GEMM rows are bit-identical to batch 1 on this CPU (then so are our boxes)."""
    return blas_rows_match_batch_one()


def assert_batched_matches(got, expected, exact: bool, atol: float = BATCH_TOLERANCE_PX, err_msg: str = ""):
    """Bit-equality where it is guaranteed (batch 1, or a BLAS that sums batched rows like single ones),
    the documented bound elsewhere."""
    if exact:
        np.testing.assert_array_equal(got, expected, err_msg=err_msg)
    else:
        np.testing.assert_allclose(got, expected, rtol=0, atol=atol, err_msg=err_msg)


@pytest.fixture(scope="module")
def tracker(tiny_model):
    return tiny_model.tracker(precision="fp32")


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    root = tmp_path_factory.mktemp("seqs")
    out = []
    for i, n in enumerate(LENGTHS):
        seq = render_sequence(n, size_wh=(320, 240) if i % 2 == 0 else (256, 200), seed=10 + i, speed=6.0)
        init = seq.boxes[0, 0].tolist()
        if i % 3 == 0:  # paths on disk (PNG: lossless, decoded by the default reader)
            paths = []
            for t, frame in enumerate(seq.frames):
                p = root / f"seq{i}" / f"{t:08d}.png"
                p.parent.mkdir(exist_ok=True)
                cv2.imwrite(str(p), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
                paths.append(p)
            out.append(SequenceJob(f"seq{i}", paths, init))
        elif i % 3 == 1:  # in-memory arrays
            out.append(SequenceJob(f"seq{i}", seq.frames, init))
        else:  # a callable
            out.append(SequenceJob(f"seq{i}", seq.frames.__getitem__, init, num_frames=n))
    return out


@pytest.fixture(scope="module")
def sequential(tracker, jobs):
    return {job.name: track_sequential(tracker, job) for job in jobs}


def test_schedule_covers_every_frame_once_in_order():
    lengths = [5, 1, 3, 8, 2, 2]
    for n in (1, 2, 3, 10):
        seen = {j: [] for j in range(len(lengths))}
        for starts, advances in lockstep_schedule(lengths, n):
            busy = [s for s, _, _ in advances]
            assert len(busy) == len(set(busy)) <= n
            for _, j in starts:
                seen[j].append(0)
            for _, j, t in advances:
                seen[j].append(t)
        assert all(seen[j] == list(range(lengths[j])) for j in seen), n


@pytest.mark.parametrize("batch_size", [1, 3])
def test_batched_equals_sequential(tracker, jobs, sequential, batch_size, exact_blas):
    results = run_batched(tracker, jobs, batch_size=batch_size)
    assert [r.name for r in results] == [j.name for j in jobs]
    exact = batch_size == 1 or exact_blas
    for r in results:
        ref = sequential[r.name]
        assert r.boxes.shape == (len(r.job), 4)
        np.testing.assert_array_equal(r.boxes[0], np.asarray(r.job.init_box))
        assert r.scores[0] == 1.0
        # The same targets through the same per-row arithmetic: bit-identical where guaranteed.
        assert_batched_matches(r.boxes, ref.boxes, exact, err_msg=r.name)
        assert_batched_matches(r.scores, ref.scores, exact, atol=SCORE_TOLERANCE, err_msg=r.name)
        assert np.all(r.times >= 0) and r.times.shape == (len(r.job),)
    # Something was actually tracked (the one-frame sequence aside).
    assert any(not np.allclose(r.boxes[1:], r.boxes[0]) for r in results if len(r.job) > 1)


def test_callback_gets_each_sequence_once_without_prefetch(tracker, jobs, sequential, exact_blas):
    got = []
    assert run_batched(tracker, jobs, batch_size=2, callback=got.append, prefetch=0) == []
    assert sorted(r.name for r in got) == sorted(j.name for j in jobs)
    for r in got:
        assert_batched_matches(r.boxes, sequential[r.name].boxes, exact_blas, err_msg=r.name)


def test_prefetch_decodes_on_a_background_thread(tracker, jobs, sequential, exact_blas):
    threads = set()

    def reader(path):
        threads.add(threading.current_thread().name)
        return read_rgb(path)

    results = run_batched(tracker, jobs, batch_size=3, read_frame=reader, prefetch=2)
    assert threads == {"lorat-frame-prefetch"}
    for r in results:
        assert_batched_matches(r.boxes, sequential[r.name].boxes, exact_blas, err_msg=r.name)


def test_reader_errors_reach_the_caller_and_stop_the_thread(tracker):
    frames = render_sequence(4, seed=3).frames

    def broken(i):
        if i == 2:
            raise OSError("disk on fire")
        return frames[i]

    job = SequenceJob("broken", broken, [50, 50, 40, 30], num_frames=4)
    with pytest.raises(OSError, match="disk on fire"):
        run_batched(tracker, [job], batch_size=2)
    assert not any(t.name == "lorat-frame-prefetch" and t.is_alive() for t in threading.enumerate())


def test_targets_are_independent(tracker, exact_blas):
    """A target's result depends only on its own state: alone or next to others, the same box."""
    seq = render_sequence(5, num_objects=3, seed=7)
    frames = seq.frames
    alone = []
    for k in range(3):
        target = tracker.new_target(frames[0], seq.boxes[k, 0])
        alone.append([tracker.step([target], frames[t])[0].box for t in range(1, 5)])
    targets = [tracker.new_target(frames[0], seq.boxes[k, 0]) for k in range(3)]
    fills = {tuple(t.fill.tolist()) for t in targets}
    assert len(fills) == 1  # same frame -> same padding colour, but masks and boxes differ
    assert not torch.equal(targets[0].mask, targets[1].mask) or not np.array_equal(targets[0].box, targets[1].box)
    together = [[p.box for p in tracker.step(targets, frames[t])] for t in range(1, 5)]
    for k in range(3):
        assert_batched_matches(np.array([together[t][k] for t in range(4)]), np.array(alone[k]), exact_blas)


def test_batched_rows_equal_batch_one_at_b224_width(exact_blas):
    """At real widths the head once saw a strided batch and summed differently in the last bit.

    Bit-equality is asserted where the BLAS itself gives batched rows bit-identically (so any
    difference is ours, e.g. a strided input again); elsewhere float32 rounding of the outputs
    (normalised units) is the bound.
    """
    from lorat_tracker.config import load_config
    from lorat_tracker.model import LoRATModel

    torch.manual_seed(0)
    model = LoRATModel(load_config("B-224"))
    model.blocks = model.blocks[:2]  # depth does not matter for this; width and token layout do
    model.head.reset_buffers()
    model.eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.02)
    n = 3
    z, x = torch.randn(n, 3, 112, 112), torch.randn(n, 3, 224, 224)
    mask = torch.randint(0, 2, (n, 8, 8))
    with torch.inference_mode():
        scores, boxes = model(z, x, mask)
        for i in range(n):
            s1, b1 = model(z[i:i + 1], x[i:i + 1], mask[i:i + 1])
            if exact_blas:
                assert torch.equal(s1[0], scores[i]) and torch.equal(b1[0], boxes[i])
            else:
                torch.testing.assert_close(s1[0], scores[i], rtol=0, atol=1e-5)
                torch.testing.assert_close(b1[0], boxes[i], rtol=0, atol=1e-5)


def test_one_frame_and_empty_jobs(tracker):
    frames = render_sequence(2, seed=1).frames
    results = run_batched(tracker, [SequenceJob("one", frames[:1], [20, 20, 30, 30])], batch_size=4)
    assert results[0].boxes.shape == (1, 4)
    with pytest.raises(ValueError, match="no frames"):
        list(iter_batched(tracker, [SequenceJob("none", [], [20, 20, 30, 30])]))
