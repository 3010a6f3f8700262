"""``lorat eval --batch-size N`` and ``lorat eval`` under torchrun write the sequential run's files.

Byte for byte where the CPU's GEMM kernels sum batched rows like single ones; elsewhere (Intel AMX,
GPUs) a printed ``%.3f`` value may differ by one unit in its last place when the two runs' boxes,
within ``BATCH_TOLERANCE_PX`` of each other, straddle a rounding boundary.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("got10k")

from lorat_tracker import demo as sd  # noqa: E402
from run_cli import run_lorat  # noqa: E402

NAME = "tiny"


@pytest.fixture(scope="module")
def lasot_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lasot")
    sd.write_lasot(root, frames=8)
    # Different lengths, so the lockstep loop refills slots mid-run.
    seq = root / "airplane" / "airplane-9"
    for f in sorted((seq / "img").iterdir())[5:]:
        f.unlink()
    lines = (seq / "groundtruth.txt").read_text().splitlines()[:5]
    (seq / "groundtruth.txt").write_text("\n".join(lines) + "\n")
    for name in ("full_occlusion.txt", "out_of_view.txt"):
        if (seq / name).is_file():
            (seq / name).write_text(",".join(["0"] * 5) + "\n")
    return root


def _run(launcher, lasot_root, tiny_model, out: Path, *extra):
    proc = run_lorat("eval", "lasot", "--root", lasot_root, *tiny_model.cli_args(), "--device", "cpu", "--name", NAME,
                     "--results", out / "results", "--reports", out / "reports", *extra, cwd=out, timeout=300,
                     launcher=launcher)
    assert proc.returncode == 0, proc.stderr
    return proc


def _results(out: Path):
    folder = out / "results" / "LaSOT" / NAME
    return {f.name: f.read_text() for f in sorted(folder.glob("*.txt"))}


def assert_same_result_files(got, expected):
    from lorat_tracker.batched import BATCH_TOLERANCE_PX, blas_rows_match_batch_one

    assert got.keys() == expected.keys()
    if blas_rows_match_batch_one():
        assert got == expected  # byte for byte
        return
    for name in expected:  # one unit of the last printed decimal (0.001) plus the deviation bound
        a, b = (np.loadtxt(text.splitlines(), delimiter=",", ndmin=2) for text in (got[name], expected[name]))
        assert a.shape == b.shape, name
        np.testing.assert_allclose(a, b, rtol=0, atol=0.001 + BATCH_TOLERANCE_PX, err_msg=name)


@pytest.fixture(scope="module")
def sequential(lasot_root, tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("sequential")
    _run((), lasot_root, tiny_model, out)
    return _results(out)


@pytest.mark.slow
def test_batched_eval_writes_the_sequential_files(lasot_root, tiny_model, tmp_path, sequential):
    proc = _run((), lasot_root, tiny_model, tmp_path, "--batch-size", "2")
    assert len(sequential) == 3
    assert_same_result_files(_results(tmp_path), sequential)
    assert "tracker" in proc.stdout and "AUC" in proc.stdout


@pytest.mark.slow
def test_batch_size_zero_is_a_usage_error(lasot_root, tiny_model, tmp_path):
    proc = run_lorat("eval", "lasot", "--root", lasot_root, *tiny_model.cli_args(), "--batch-size", "0", cwd=tmp_path)
    assert proc.returncode == 2 and "--batch-size must be at least 1" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_two_torchrun_nodes_shard_merge_and_resume_after_a_rank_is_killed(tiny_model, tmp_path):
    """Two torchrun nodes (c10d rendezvous on 127.0.0.1, gloo), as on two machines sharing the results
    folder: disjoint shards, one merged report, and a rank killed with SIGKILL mid-run ends both nodes (no
    hang), after which the same command on both nodes resumes to the single process's result files."""
    import signal
    import time

    from run_cli import finish, launch_nodes, worker_of

    if shutil.which("torchrun") is None:
        pytest.skip("torchrun not on PATH")
    root = tmp_path / "GOT-10k"
    sd.write_got10k(root, "val", count=6, frames=30, seed=3)
    args = ("eval", "got10k-val", "--root", root, *tiny_model.cli_args(), "--device", "cpu", "--name", NAME)

    def results(out):
        return {f.name: f.read_text() for f in sorted((out / "results" / "GOT-10k" / NAME).glob("*/*_001.txt"))}

    single = tmp_path / "single"
    proc = run_lorat(*args, "--results", single / "results", "--reports", single / "reports", cwd=tmp_path,
                     timeout=300)
    assert proc.returncode == 0, proc.stderr
    expected = results(single)
    assert len(expected) == 6

    out = tmp_path / "nodes"
    where = ("--results", out / "results", "--reports", out / "reports")
    nodes = launch_nodes(*args, *where, cwd=tmp_path)
    # Rank 1 tracks sorted(sequences)[1::2]: kill it once its first sequence is on disk.
    first_of_rank_1 = out / "results" / "GOT-10k" / NAME / "GOT-10k_Val_000002" / "GOT-10k_Val_000002_001.txt"
    deadline = time.monotonic() + 240
    while not first_of_rank_1.exists() and time.monotonic() < deadline and all(n.poll() is None for n in nodes):
        time.sleep(0.05)
    assert first_of_rank_1.exists(), finish(nodes, 10)
    killed = None
    for node in nodes:  # the node whose rank is 1 (which node gets which rank is the rendezvous' choice)
        pid = worker_of(node)
        if Path(f"/proc/{pid}/environ").read_bytes().split(b"\0").count(b"RANK=1"):
            killed = pid
            os.kill(pid, signal.SIGKILL)
    assert killed is not None
    ended = finish(nodes, timeout=120)
    assert all(code != 0 for code, _, _ in ended), ended  # both stop; none waits for the dead rank forever
    assert not any("[test] node still running" in err for _, _, err in ended), ended
    kept = results(out)
    assert 1 <= len(kept) < 6 and all(kept[name] == expected[name] for name in kept)

    ended = finish(launch_nodes(*args, *where, "--batch-size", "2", cwd=tmp_path), timeout=300)
    assert all(code == 0 for code, _, _ in ended), ended
    stdout = "".join(o for _, o, _ in ended)
    assert "rank 0/2: 3 of 6 sequences" in stdout and "rank 1/2: 3 of 6 sequences" in stdout
    resumed = sum(int(line.split(" sequences already done")[0].rsplit(" ", 1)[-1])
                  for line in stdout.splitlines() if "sequences already done" in line)
    assert resumed == len(kept)
    assert stdout.count("AO") == 1  # one merged report, from rank 0
    assert_same_result_files(results(out), expected)
