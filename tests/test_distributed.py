"""Sharding an evaluation over two gloo processes gives the boxes of one process."""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from lorat_tracker import distributed as dist_utils

LENGTHS = {"a": 5, "b": 3, "c": 6, "d": 2, "e": 4}


def _jobs():
    from lorat_tracker.batched import SequenceJob
    from lorat_tracker.demo import render_sequence

    jobs = []
    for i, (name, n) in enumerate(LENGTHS.items()):
        seq = render_sequence(n, seed=40 + i)
        jobs.append(SequenceJob(name, seq.frames, seq.boxes[0, 0].tolist()))
    return jobs


def _tracker():
    from conftest import TinyModel

    return TinyModel("tiny-mlp").tracker(precision="fp32")


def _worker(rank: int, world: int, port: int, out_dir: str, tests_dir: str):
    sys.path.insert(0, tests_dir)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    from lorat_tracker.batched import run_batched

    assert dist_utils.init("cpu") and dist_utils.is_initialized()
    assert dist_utils.rank_and_world() == (rank, world)
    jobs = dist_utils.shard(_jobs(), key=lambda j: j.name)

    def write(result):  # one file per sequence, as a harness would; ranks never share a file
        np.savetxt(Path(out_dir) / f"{result.name}.txt", result.boxes, delimiter=",", fmt="%.17g")
        (Path(out_dir) / f"{result.name}.rank").write_text(str(rank))

    run_batched(_tracker(), jobs, batch_size=2, callback=write)
    dist_utils.barrier()
    if dist_utils.is_main():  # after the barrier every rank's files are there
        assert len(list(Path(out_dir).glob("*.txt"))) == len(LENGTHS)
    dist_utils.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shard_is_disjoint_and_complete():
    names = ["e", "b", "a", "d", "c"]
    shards = [dist_utils.shard(names, rank=r, world=2) for r in range(2)]
    assert shards == [["a", "c", "e"], ["b", "d"]]
    assert dist_utils.shard(names, rank=0, world=1) == sorted(names)
    with pytest.raises(ValueError):
        dist_utils.shard(names, rank=2, world=2)


def test_single_process_defaults(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert dist_utils.rank_and_world() == (0, 1) and dist_utils.is_main()
    assert dist_utils.init("cpu") is False  # nothing to join
    dist_utils.barrier()  # no-op
    assert dist_utils.backend_for("cpu") == "gloo" and dist_utils.backend_for("cuda:0") == "nccl"
    assert dist_utils.device_for_rank("cpu") == torch.device("cpu")


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process(tmp_path):
    tests_dir = str(Path(__file__).resolve().parent)
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), tests_dir), nprocs=2, join=True)
    from lorat_tracker.batched import BATCH_TOLERANCE_PX, blas_rows_match_batch_one, track_sequential

    tracker = _tracker()
    exact = blas_rows_match_batch_one()  # batch 2 per rank: bit-identical only where the BLAS is
    ranks = set()
    for job in _jobs():
        expected = track_sequential(tracker, job).boxes
        got = np.loadtxt(tmp_path / f"{job.name}.txt", delimiter=",", ndmin=2)
        if exact:
            np.testing.assert_array_equal(got, expected, err_msg=job.name)
        else:
            np.testing.assert_allclose(got, expected, rtol=0, atol=BATCH_TOLERANCE_PX, err_msg=job.name)
        ranks.add((tmp_path / f"{job.name}.rank").read_text())
    assert ranks == {"0", "1"}  # both ranks did work


def test_a_rank_gone_at_the_barrier_is_one_line(monkeypatch):
    # What gloo raises on the rank that waits when another process of the job was killed (measured with two
    # torchrun nodes on this machine; tests/test_multinode.py runs that case end to end).
    from lorat_tracker.errors import RankFailedError

    class Gloo:
        def get_backend(self):
            return "gloo"

        def barrier(self):
            raise RuntimeError("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection "
                               "closed by peer [127.0.0.1]:29361. This is typically caused by a remote worker "
                               "crashing.\nmore lines")

        def get_rank(self):
            return 0

        def get_world_size(self):
            return 2

    monkeypatch.setattr(dist_utils, "_dist", lambda: Gloo())
    monkeypatch.setattr(dist_utils, "is_initialized", lambda: True)
    with pytest.raises(RankFailedError) as e:
        dist_utils.barrier()
    message = str(e.value)
    assert message.startswith("rank 0/2: another process of this job stopped while this one waited for it "
                              "(Connection closed by peer [127.0.0.1]:29361.")
    assert "run the same command again on every node to resume" in message and "\n" not in message
