"""``lorat eval --batch-size N`` and ``lorat eval`` under torchrun write the sequential run's files.

Byte for byte where the CPU's GEMM kernels sum batched rows like single ones; elsewhere (Intel AMX,
GPUs) a printed ``%.3f`` value may differ by one unit in its last place when the two runs' boxes,
within ``BATCH_TOLERANCE_PX`` of each other, straddle a rounding boundary.
"""
from __future__ import annotations

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
def test_torchrun_two_ranks_write_the_sequential_files(lasot_root, tiny_model, tmp_path, sequential):
    if shutil.which("torchrun") is None:
        pytest.skip("torchrun not on PATH")
    proc = _run(("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"), lasot_root, tiny_model,
                tmp_path, "--batch-size", "2")
    assert "rank 0/2" in proc.stdout and "rank 1/2" in proc.stdout
    assert_same_result_files(_results(tmp_path), sequential)
    assert proc.stdout.count("AUC") == 1  # only rank 0 reports
