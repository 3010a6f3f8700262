"""``lorat demo-data``: every layout is read back by the project's own readers, and DIR is protected."""
from __future__ import annotations

import contextlib
import io
import stat

import numpy as np
import pytest

from lorat_tracker.cli import main
from lorat_tracker.demo import LAYOUTS, encode_mask, render_sequence


def lorat(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("layout, key", [("lasot", "lasot"), ("got10k", "got10k-val"), ("otb", "otb"),
                                               ("trackingnet", "trackingnet"), ("tnl2k", "tnl2k")])
def test_benchmark_layouts_are_what_lorat_eval_reads(tmp_path, layout, key):
    pytest.importorskip("got10k")
    from lorat_tracker.integrations.got10k import Benchmark

    code, out, err = lorat("demo-data", tmp_path / "d", "--layout", layout, "--frames", 4)
    assert code == 0, err
    bench = Benchmark(key, str(tmp_path / "d"), result_dir=str(tmp_path / "r"), report_dir=str(tmp_path / "p"))
    assert len(bench.sequences) == LAYOUTS[layout].count
    assert all(name in out for name in bench.sequences)
    bench.check_annotations()   # every line parses, first boxes inside their frames


def test_lasot_boxes_are_one_based_and_frames_match_the_truth(tmp_path):
    from lorat_tracker.datasets import lasot_sequences, load_sequence
    from lorat_tracker.demo import write_lasot

    truth = write_lasot(tmp_path, frames=3)
    files = lasot_sequences(str(tmp_path))
    assert sorted(files) == sorted(truth)
    seq = load_sequence("airplane-1", files["airplane-1"], "lasot", one_based=True)
    np.testing.assert_array_equal(seq.tracks[0].boxes, truth["airplane-1"].boxes[0])   # shifted back to 0-based


def test_folder_layout_is_a_training_source(tmp_path):
    from lorat_tracker.datasets import read_source

    assert lorat("demo-data", tmp_path / "v", "--layout", "folder", "--count", 2, "--frames", 3, "--seed", 7)[0] == 0
    sequences = read_source("folder", str(tmp_path / "v"))
    assert [len(s.frames) for s in sequences] == [3, 3]
    np.testing.assert_array_equal(sequences[0].tracks[0].boxes, render_sequence(3, seed=7).boxes[0])


@pytest.mark.parametrize("layout, stack", [("vot", "vot2022/shorttermbox"), ("vots", "tests/multiobject")])
def test_vot_layouts_make_offline_workspaces(tmp_path, layout, stack):
    pytest.importorskip("vot")
    from lorat_tracker.integrations.vot.workspace import create_workspace

    assert lorat("demo-data", tmp_path / "seq", "--layout", layout, "--frames", 3)[0] == 0
    create_workspace(tmp_path / "ws", stack, sequences=tmp_path / "seq")
    listed = (tmp_path / "ws" / "sequences" / "list.txt").read_text().split()
    assert listed == (["box1", "box2"] if layout == "vot" else ["multi1", "multi2"])


def test_vot_mask_lines_decode_to_the_mask():
    mask = np.zeros((5, 6), dtype=bool)
    mask[1:3, 2:5] = True
    mask[2, 2] = False
    # offset (2, 1), size 3x2, then runs over [1 1 1 / 0 1 1]: 0 zeros, 3 ones, 1 zero, 2 ones
    assert encode_mask(mask) == "m2,1,3,2,0,3,1,2"
    assert encode_mask(np.zeros((2, 2), dtype=bool)) == "0"


def test_non_empty_dir_is_refused_unless_force(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me\n")
    code, out, err = lorat("demo-data", tmp_path, "--layout", "otb")
    assert code == 2 and "not empty" in err and "--force" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
    assert lorat("demo-data", tmp_path, "--layout", "otb", "--force", "--frames", 2)[0] == 0
    assert (tmp_path / "mine.txt").read_text() == "keep me\n" and (tmp_path / "Boy" / "img" / "0002.jpg").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--layout", "otb", "--count", "4"], "at most 3 sequences"),
    (["--layout", "lasot", "--count", "0"], "--count must be >= 1"),
    (["--layout", "folder", "--frames", "1"], "--frames >= 2"),
])
def test_impossible_sizes_are_usage_errors(tmp_path, argv, message):
    code, out, err = lorat("demo-data", tmp_path / "d", *argv)
    assert code == 2 and message in err and not (tmp_path / "d").exists()


def test_a_file_as_dir_is_refused(tmp_path):
    (tmp_path / "f").write_text("")
    code, _, err = lorat("demo-data", tmp_path / "f", "--layout", "vot")
    assert code == 2 and "is a file" in err


def test_files_honour_the_umask(tmp_path):
    import os

    old = os.umask(0o027)
    try:
        assert lorat("demo-data", tmp_path / "d", "--layout", "tnl2k", "--count", 1, "--frames", 2)[0] == 0
    finally:
        os.umask(old)
    for path in (tmp_path / "d").rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o640, path


def test_cli_offers_exactly_the_package_layouts():
    # The CLI lists the names without importing numpy (lorat --help stays light): keep them in step.
    from lorat_tracker.cli import demo as cli_demo

    assert list(cli_demo._layouts()) == list(LAYOUTS)
