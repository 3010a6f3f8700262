"""``lorat eval`` end to end: real got10k experiments on a generated LaSOT-layout dataset, the tiny model."""
from __future__ import annotations

import json
import os
import shutil

import pytest

pytest.importorskip("got10k")

from lorat_tracker import demo as sd  # noqa: E402
from run_cli import run_lorat  # noqa: E402
from lorat_tracker.cli import EXIT_INTERRUPTED, EXIT_USAGE, main  # noqa: E402

NAME = "tiny"


def lorat_eval(*args, cwd):
    return run_lorat("eval", *args, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def lasot_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lasot")
    sd.write_lasot(root, frames=10)
    return root


@pytest.mark.slow
def test_eval_lasot_end_to_end_resumes_and_compares(lasot_root, tiny_model, tmp_path):
    common = ["--root", lasot_root, *tiny_model.cli_args(), "--device", "cpu", "--name", NAME,
              "--results", tmp_path / "results", "--reports", tmp_path / "reports"]
    results = tmp_path / "results" / "LaSOT" / NAME

    # 1. two sequences only
    first = lorat_eval("lasot", *common, "--sequences", "airplane-1,airplane-9", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "0 sequences already done, 2 to track" in first.stdout
    assert sorted(os.listdir(results)) == ["airplane-1.txt", "airplane-9.txt", "lorat-tracker.json", "times"]
    mtimes = {f: os.stat(results / f).st_mtime_ns for f in ("airplane-1.txt", "airplane-9.txt")}
    assert "mean AUC" in first.stderr  # the progress bar's running score

    # 2. the whole benchmark: the two finished sequences are not tracked again
    second = lorat_eval("lasot", *common, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "2 sequences already done, 1 to track" in second.stdout
    assert {f: os.stat(results / f).st_mtime_ns for f in mtimes} == mtimes
    assert (results / "airplane-13.txt").is_file()
    lines = second.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:4] == ["tracker", "AUC", "P_norm", "P"])
    row = lines[header + 1].split()
    assert row[0] == NAME and all(0 <= float(v) <= 1 for v in row[1:4])
    reports = tmp_path / "reports" / "LaSOT" / NAME
    for png in ("success_plots.png", "precision_plots.png", "norm_precision_plots.png"):
        assert (reports / png).stat().st_size > 0 and f"plot:   {reports / png}" in second.stdout

    # 3. nothing left to track; another tracker's results plotted on the same axes
    baseline = tmp_path / "baseline"
    shutil.copytree(results, baseline)
    third = lorat_eval("lasot", *common, "--compare", baseline, cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    assert "3 sequences already done, 0 to track" in third.stdout
    assert "loading" not in third.stderr  # the model was not even loaded
    table = third.stdout.splitlines()
    assert any(line.split()[:1] == ["baseline"] for line in table)
    assert set(json.loads((reports / "performance.json").read_text())) == {NAME, "baseline"}


def test_ctrl_c_keeps_finished_sequences(lasot_root, tiny_model, tmp_path, monkeypatch, capsys):
    from lorat_tracker.cli import evaluate

    real, calls = evaluate.track_sequence, []

    def interrupted_on_second(tracker, bench, seq_name):
        calls.append(seq_name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # what Ctrl-C raises in the middle of a sequence
        return real(tracker, bench, seq_name)

    monkeypatch.setattr(evaluate, "track_sequence", interrupted_on_second)
    code = main(["eval", "lasot", "--root", str(lasot_root), *map(str, tiny_model.cli_args()), "--device", "cpu",
                 "--name", NAME, "--results", str(tmp_path / "r"), "--reports", str(tmp_path / "p")])
    assert code == EXIT_INTERRUPTED
    assert sorted(os.listdir(tmp_path / "r" / "LaSOT" / NAME)) == ["airplane-1.txt", "lorat-tracker.json", "times"]
    assert "run the same command again to resume" in capsys.readouterr().err


@pytest.mark.slow
def test_wrong_layout_is_one_line_without_traceback(tmp_path, tiny_model):
    (tmp_path / "empty").mkdir()
    out = lorat_eval("lasot", "--root", tmp_path / "empty", *tiny_model.cli_args(), cwd=tmp_path)
    assert out.returncode == EXIT_USAGE
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not a LaSOT dataset root: missing" in lines[0] and "groundtruth.txt" in lines[0]


def test_a_missing_device_is_refused_before_the_dataset_is_read(tmp_path, tiny_model, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    (tmp_path / "empty").mkdir()  # not a LaSOT root either: the device is checked first
    assert main(["eval", "lasot", "--root", str(tmp_path / "empty"), *tiny_model.cli_args(), "--device", "cuda"]) \
        == EXIT_USAGE
    assert capsys.readouterr().err.strip() == ("lorat eval: error: --device cuda asked but CUDA is not available "
                                               "here - use --device cpu")


@pytest.mark.slow
def test_unknown_benchmark_is_one_line_without_traceback(tmp_path, tiny_model):
    out = lorat_eval("vot2099", "--root", tmp_path, *tiny_model.cli_args(), cwd=tmp_path)
    assert out.returncode == EXIT_USAGE and "Traceback" not in out.stderr
    assert out.stderr.strip() == ("lorat eval: error: unknown benchmark 'vot2099': choose one of got10k-val, "
                                  "got10k-test, lasot, lasot-ext, trackingnet, tnl2k, otb, uav123, nfs")


def test_missing_root_and_compare_folder(tmp_path, tiny_model, capsys):
    assert main(["eval", "otb", "--root", str(tmp_path / "nope"), *map(str, tiny_model.cli_args())]) == EXIT_USAGE
    assert "--root" in capsys.readouterr().err
    assert main(["eval", "otb", "--root", str(tmp_path), *map(str, tiny_model.cli_args()),
                 "--compare", str(tmp_path / "missing")]) == EXIT_USAGE
    assert "--compare folder" in capsys.readouterr().err


def test_help_has_an_example(capsys):
    with pytest.raises(SystemExit) as e:
        main(["eval", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "lorat eval lasot --root" in out and "got10k-val" in out and "resume" in out
