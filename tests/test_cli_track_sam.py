"""``lorat track --masks sam``: one PNG mask per frame and the overlay in --video; SAM-related mistakes."""
from __future__ import annotations

import os
import stat
import sys

import cv2
import numpy as np
import pytest

pytest.importorskip("segment_anything")

import tiny_sam  # noqa: E402
from run_cli import box_arg  # noqa: E402
from lorat_tracker.demo import render_sequence  # noqa: E402

from lorat_tracker.cli import main as lorat_main  # noqa: E402
from lorat_tracker.images import read_rgb  # noqa: E402


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    root = tmp_path_factory.mktemp("sam_clip")
    seq = render_sequence(num_frames=3, size_wh=(320, 180), seed=5)
    folder = root / "img"
    folder.mkdir()
    for i, f in enumerate(seq.frames):
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return folder, seq.boxes[0][0]


@pytest.mark.slow
def test_track_writes_sam_masks_and_overlay(frames, sam_file, tiny_model, tmp_path, capsys):
    folder, box = frames
    old = os.umask(0o022)
    try:
        code = lorat_main(["track", str(folder), "--box", box_arg(box), *tiny_model.cli_args(), "--device", "cpu",
                           "--masks", "sam", "--sam-checkpoint", str(sam_file), "--mask-dir", str(tmp_path / "m"),
                           "--video", str(tmp_path / "v.avi"), "--output", str(tmp_path / "b.txt"),
                           "--no-progress"])
    finally:
        os.umask(old)
    assert code == 0, capsys.readouterr().err
    pngs = sorted((tmp_path / "m").iterdir())
    assert [p.name for p in pngs] == ["00000000.png", "00000001.png", "00000002.png"]  # no temporary left
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in pngs)
    refiner = tiny_sam.refiner()
    tracker = tiny_model.tracker()
    images = [read_rgb(p) for p in sorted(folder.iterdir())]
    tracker.initialize(images[0], box)
    rows = np.loadtxt(tmp_path / "b.txt", delimiter=",")
    for k, png in enumerate(pngs):
        if k == 0:
            expected = refiner(images[0], [box])[0]
        else:
            tracker.track(images[k])
            expected = refiner(images[k], tracker.target.box[None], box_format="xyxy")[0]
            np.testing.assert_allclose(rows[k, :4], tracker.target.box_xywh, atol=5e-4)  # the box drives
        got = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        assert got.dtype == np.uint8 and set(np.unique(got)) <= {0, 255}
        assert np.array_equal(got == 255, expected), k
    cap = cv2.VideoCapture(str(tmp_path / "v.avi"))
    ok, first = cap.read()
    cap.release()
    assert ok
    on = refiner(images[0], [box])[0]

    def magenta(bgr):  # red + blue against green: the overlay pulls green down
        return (bgr[:, 0] + bgr[:, 2] - 2 * bgr[:, 1]).mean()

    plain = cv2.cvtColor(images[0], cv2.COLOR_RGB2BGR)
    assert magenta(first[on].astype(int)) > magenta(plain[on].astype(int)) + 40
    assert abs(magenta(first[~on].astype(int)) - magenta(plain[~on].astype(int))) < 10
    assert "masks -> " in capsys.readouterr().err


@pytest.mark.parametrize("case", ["no-checkpoint", "missing-checkpoint", "corrupt", "wrong-size", "no-output",
                                  "mask-dir-without-masks", "not-installed", "zero-box"])
def test_sam_mistakes_give_one_line(frames, sam_file, tiny_model, tmp_path, capsys, monkeypatch, case):
    folder, box = frames
    (tmp_path / "corrupt.pth").write_bytes(b"\x80\x02garbage")
    mask_dir = ["--mask-dir", str(tmp_path / "m")]
    extra, expected = {
        "no-checkpoint": (["--masks", "sam", *mask_dir], "--masks sam needs --sam-checkpoint"),
        "missing-checkpoint": (["--masks", "sam", "--sam-checkpoint", str(tmp_path / "no.pth"), *mask_dir],
                               "--sam-checkpoint"),
        "corrupt": (["--masks", "sam", "--sam-checkpoint", str(tmp_path / "corrupt.pth"), *mask_dir], "corrupt"),
        "wrong-size": (["--masks", "sam", "--sam-checkpoint", str(sam_file), "--sam-type", "vit_b", *mask_dir],
                       "--sam-type vit_b was given"),
        "no-output": (["--masks", "sam", "--sam-checkpoint", str(sam_file)], "nowhere to put the masks"),
        "mask-dir-without-masks": (mask_dir, "add --masks sam"),
        "not-installed": (["--masks", "sam", "--sam-checkpoint", str(sam_file), *mask_dir],
                          'pip install "lorat-tracker[sam]"'),
        "zero-box": (["--masks", "sam", "--sam-checkpoint", str(sam_file), *mask_dir], "width or height <= 0"),
    }[case]
    if case == "not-installed":
        monkeypatch.setitem(sys.modules, "segment_anything", None)
        monkeypatch.setitem(sys.modules, "segment_anything.build_sam", None)
    b = "10,10,0,20" if case == "zero-box" else box_arg(box)
    code = lorat_main(["track", str(folder), f"--box={b}", *tiny_model.cli_args(), "--device", "cpu",
                       "--output", str(tmp_path / "b.txt"), "--no-progress", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("lorat track: error:") and expected in err[0], err
    assert not (tmp_path / "b.txt").exists() and not (tmp_path / "m").exists()  # nothing half-written
