"""lorat_tracker.datasets: every source layout read into sequences/tracks, the cleaning rules, and every
kind of bad input refused with a typed error naming file and line; ``lorat eval`` checks annotations
before it tracks anything (issue 9)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from lorat_tracker import demo as sd
from lorat_tracker.datasets import SourceSpec, lasot_test_names, parse_source, read_source
from lorat_tracker.errors import AnnotationError, DatasetLayoutError, LoRATError


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    truth = sd.write_folder(root, count=2, frames=6, absent=[1])
    return root, truth


def copy(src, tmp_path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


# ---------------------------------------------------------------- source specifications

def test_parse_source_weights_and_colons():
    assert parse_source("folder=/data/a") == SourceSpec("folder", "/data/a", 1.0)
    assert parse_source("folder=/data/a:2.5") == SourceSpec("folder", "/data/a", 2.5)
    assert parse_source("folder=/data/a:b") == SourceSpec("folder", "/data/a:b", 1.0)   # not a number: part of the path
    assert parse_source("lasot=/d/x:3:1") == SourceSpec("lasot", "/d/x:3", 1.0)        # explicit weight
    assert parse_source("GOT10K-VOT=/g") == SourceSpec("got10k-vot", "/g", 1.0)
    for bad, match in (("/data/a", "KIND=ROOT"), ("vastrack=/x", "unknown data source kind 'vastrack'"),
                       ("folder=/a:0", "positive"), ("folder=/a:-1", "positive"), ("folder=", "names no folder"),
                       ("folder=/a:nan", "positive")):
        with pytest.raises(DatasetLayoutError, match=match):
            parse_source(bad)


# ---------------------------------------------------------------- readers

def test_folder_source(folder_root):
    root, truth = folder_root
    sequences = read_source(f"folder={root}:2")
    assert [s.name for s in sequences] == ["video_0", "video_1"]
    seq = sequences[0]
    assert seq.source == "folder" and seq.size_wh == (320, 240) and len(seq.frames) == 6
    assert seq.frames[0].endswith("00000001.jpg")
    np.testing.assert_array_equal(seq.tracks[0].boxes[0], truth["video_0"].boxes[0][0])
    assert seq.tracks[0].valid.tolist() == [True, False, True, True, True, True]  # absence.label
    assert sequences[1].tracks[0].valid.all()


@pytest.mark.parametrize("delimiter", [" ", "\t", ", "])
def test_folder_groundtruth_separators(tmp_path, delimiter):
    truth = sd.write_folder(tmp_path, count=1, frames=3, delimiter=delimiter)
    seq = read_source("folder", tmp_path)[0]
    np.testing.assert_array_equal(seq.tracks[0].boxes, truth["video_0"].boxes[0])


def test_boxes_are_clipped_and_empty_boxes_invalid(tmp_path):
    sd.write_folder(tmp_path, count=1, frames=4)
    (tmp_path / "video_0" / "groundtruth.txt").write_text("-10,-5,50,40\n300,200,40,60\n0,0,0,0\n10,10,20,20\n")
    track = read_source("folder", tmp_path)[0].tracks[0]
    np.testing.assert_array_equal(track.boxes[:2], [[0, 0, 40, 35], [300, 200, 20, 40]])
    assert track.valid.tolist() == [True, True, False, True]


def test_got10k_train_absence_and_cover(tmp_path):
    sd.write_got10k(tmp_path, subset="train", count=2, frames=5)
    seq_dir = tmp_path / "train" / "GOT-10k_Train_000001"
    (seq_dir / "absence.label").write_text("0\n1\n0\n0\n0\n")
    (seq_dir / "cover.label").write_text("8\n0\n0\n3\n8\n")
    sequences = read_source(f"got10k={tmp_path}")
    assert [s.name for s in sequences] == ["GOT-10k_Train_000001", "GOT-10k_Train_000002"]
    # absence.label decides, as in the official reader; cover.label 0 alone does not exclude a frame
    assert sequences[0].tracks[0].valid.tolist() == [True, False, True, True, True]
    (seq_dir / "cover.label").write_text("8\n0\n0\n3\n")
    with pytest.raises(AnnotationError, match="cover.label has 4 flags for 5 frames"):
        read_source(f"got10k={tmp_path}")
    (seq_dir / "cover.label").write_text("8\n0\n0\n3\n8\n")
    sd.write_got10k(tmp_path, subset="val", count=1, frames=3)
    assert [s.name for s in read_source("got10k", tmp_path, split="val")] == ["GOT-10k_Val_000001"]
    with pytest.raises(DatasetLayoutError, match="VOT-excluding split indexes the full GOT-10k train list"):
        read_source(f"got10k-vot={tmp_path}")


def test_got10k_vot_split_selects_the_official_sequences(tmp_path, monkeypatch):
    from lorat_tracker import datasets

    names = [f"GOT-10k_Train_{k:06d}" for k in range(1, 9336)]
    indices = datasets._split_indices("got10k_vot_train_split.txt")
    assert len(indices) == 7086 and len(datasets._split_indices("got10k_vot_val_split.txt")) == 1249
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "list.txt").write_text("\n".join(names) + "\n")
    read = []
    monkeypatch.setattr(datasets, "_got10k_read", lambda root, subset, chosen: read.extend(chosen) or [])
    with pytest.raises(DatasetLayoutError, match="no sequence with a valid"):
        read_source(f"got10k-vot={tmp_path}")
    assert read == [names[i] for i in indices] and read[0] == names[3784]


def test_lasot_train_is_the_complement_of_the_test_split(tmp_path):
    assert len(lasot_test_names()) == 280
    truth = sd.write_lasot(tmp_path, names=("airplane-1", "airplane-2", "bird-5"), frames=4)
    occluded = tmp_path / "airplane" / "airplane-2" / "full_occlusion.txt"
    occluded.write_text("0,1,0,0\n")
    (tmp_path / "bird" / "bird-5" / "out_of_view.txt").write_text("0,0,0,1\n")
    sequences = read_source(f"lasot={tmp_path}")
    assert sorted(s.name for s in sequences) == ["airplane-2", "bird-5"]  # airplane-1 is a test sequence
    seq = next(s for s in sequences if s.name == "airplane-2")
    np.testing.assert_array_equal(seq.tracks[0].boxes, truth["airplane-2"].boxes[0])  # 1-based file shifted back
    assert seq.tracks[0].valid.tolist() == [True, False, True, True]
    assert next(s for s in sequences if s.name == "bird-5").tracks[0].valid.tolist() == [True, True, True, False]


def test_trackingnet_train_chunks_in_frame_number_order(tmp_path):
    truth = sd.write_trackingnet(tmp_path, subset="TRAIN_0", count=1, frames=12)
    sd.write_trackingnet(tmp_path, subset="TRAIN_3", count=1, frames=3)
    sequences = read_source(f"trackingnet={tmp_path}")
    assert [s.name for s in sequences] == ["TRAIN_0/synthetic_0", "TRAIN_3/synthetic_0"]
    assert [os.path.basename(f) for f in sequences[0].frames[:3]] + [os.path.basename(sequences[0].frames[-1])] == \
        ["0.jpg", "1.jpg", "2.jpg", "11.jpg"]
    np.testing.assert_array_equal(sequences[0].tracks[0].boxes, truth["synthetic_0"].boxes[0])
    with pytest.raises(DatasetLayoutError, match="TRAIN_0"):
        read_source("trackingnet", tmp_path / "TRAIN_0")


def write_coco(root: Path, annotations, images=((1, 64, 48), (2, 40, 30), (3, 20, 20))):
    (root / "annotations").mkdir(parents=True)
    (root / "train2017").mkdir()
    for image_id, w, h in images:
        cv2.imwrite(str(root / "train2017" / f"{image_id:012d}.jpg"), np.zeros((h, w, 3), np.uint8))
    data = {"images": [{"id": i, "file_name": f"{i:012d}.jpg", "width": w, "height": h} for i, w, h in images],
            "annotations": [dict(id=k + 1, category_id=1, area=1.0, **a) for k, a in enumerate(annotations)],
            "categories": [{"id": 1, "name": "thing"}]}
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(data))


def test_coco_every_non_crowd_object_is_a_one_frame_track(tmp_path):
    write_coco(tmp_path, [
        dict(image_id=1, bbox=[10, 5, 20, 10], iscrowd=0),
        dict(image_id=1, bbox=[50, 30, 30, 30], iscrowd=0),     # partly outside: clipped to 14 x 18
        dict(image_id=1, bbox=[0, 0, 64, 48], iscrowd=1),       # crowd region: skipped
        dict(image_id=2, bbox=[3, 3, 0, 5], iscrowd=0),         # empty: removed, and the image with it
        dict(image_id=3, bbox=[1, 1, 5, 5], iscrowd=1),         # only a crowd: image removed
    ])
    sequences = read_source(f"coco={tmp_path}")
    assert [s.name for s in sequences] == ["coco/1"]
    seq = sequences[0]
    assert seq.frames == [str(tmp_path / "train2017" / "000000000001.jpg")] and seq.size_wh == (64, 48)
    assert [t.boxes.tolist() for t in seq.tracks] == [[[10, 5, 20, 10]], [[50, 30, 14, 18]]]
    assert all(t.valid.tolist() == [True] for t in seq.tracks)


def test_coco_box_outside_its_image_names_the_annotation(tmp_path):
    write_coco(tmp_path, [dict(image_id=1, bbox=[100, 5, 20, 10], iscrowd=0)])
    with pytest.raises(AnnotationError, match=r"instances_train2017.json: annotation 1 \(image 1\): box 100,5,20,10 "
                                              r"lies outside its 64x48 frame"):
        read_source(f"coco={tmp_path}")


# ---------------------------------------------------------------- bad input: typed, naming file and line

def broken_folder(tmp_path, lines, frames=4):
    sd.write_folder(tmp_path, count=2, frames=frames)
    gt = tmp_path / "video_1" / "groundtruth.txt"
    gt.write_text("".join(line + "\n" for line in lines))
    return gt


@pytest.mark.parametrize("lines, message", [
    (["10,10,20,20", "10,10,twenty,20", "1,1,5,5", "1,1,5,5"], "line 2: '10,10,twenty,20' is not 4 numbers"),
    (["10,10,20,20", "10,10,20", "1,1,5,5", "1,1,5,5"], "line 2: 3 numbers where 4"),
    (["10,10,20,20", "10,10,20,20,7", "1,1,5,5", "1,1,5,5"], "line 2: 5 numbers where 4"),
    (["10,10,20,20", "", "1,1,5,5", "1,1,5,5"], "line 2: empty line"),
    (["nan,10,20,20", "1,1,5,5", "1,1,5,5", "1,1,5,5"], "line 1: box nan,10,20,20 is not finite"),
    (["10,10,20,20", "1,1,5,5", "1,1,inf,5", "1,1,5,5"], "line 3: box 1,1,inf,5 is not finite"),
    (["10,10,20,20", "1,1,5,5", "1,1,5,5", "400,10,20,20"], "line 4: box 400,10,20,20 lies outside its 320x240 frame"),
    (["10,10,20,20", "1,1,-5,5", "1,1,5,5", "1,1,5,5"], "line 2: box 1,1,-5,5 has a negative width"),
    (["10,10,20,20", "1,1,5,5", "1,1,5,5"], r"has 3 boxes for the 4 frames .* \(fewer boxes than frames"),
    (["10,10,20,20"] * 5, "has 5 boxes for the 4 frames"),
])
def test_bad_groundtruth_lines_name_file_and_line(tmp_path, lines, message):
    gt = broken_folder(tmp_path, lines)
    with pytest.raises(AnnotationError, match=message) as info:
        read_source(f"folder={tmp_path}")
    assert str(gt) in str(info.value)
    assert isinstance(info.value, DatasetLayoutError) and isinstance(info.value, LoRATError)


def test_absent_frame_may_lie_anywhere_but_flags_are_checked(tmp_path):
    sd.write_folder(tmp_path, count=1, frames=3)
    seq_dir = tmp_path / "video_0"
    (seq_dir / "groundtruth.txt").write_text("10,10,20,20\n900,900,5,5\n10,10,20,20\n")
    (seq_dir / "absence.label").write_text("0\n1\n0\n")
    assert read_source("folder", tmp_path)[0].tracks[0].valid.tolist() == [True, False, True]
    (seq_dir / "absence.label").write_text("0\nyes\n0\n")
    with pytest.raises(AnnotationError, match=r"absence.label, line 2: 'yes' is not an integer flag"):
        read_source("folder", tmp_path)
    (seq_dir / "absence.label").write_text("0\n1\ninf\n")
    with pytest.raises(AnnotationError, match=r"absence.label, line 3: 'inf' is not an integer flag"):
        read_source("folder", tmp_path)
    (seq_dir / "absence.label").write_text("0\n1\n")
    with pytest.raises(AnnotationError, match=r"absence.label has 2 flags for 3 frames"):
        read_source("folder", tmp_path)


def test_wrong_layouts(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match="is not a sequence-folder dataset root: missing a sequence folder"):
        read_source("folder", tmp_path / "empty")
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        read_source("folder", tmp_path / "nope")
    one = tmp_path / "one"
    sd.write_folder(one, count=1, frames=2)
    with pytest.raises(DatasetLayoutError, match="looks like one sequence"):
        read_source("folder", one / "video_0")
    (one / "video_0" / "groundtruth.txt").unlink()
    with pytest.raises(DatasetLayoutError, match=r"missing .*video_0.groundtruth.txt"):
        read_source("folder", one)
    frames_missing = tmp_path / "noframes" / "seq"
    frames_missing.mkdir(parents=True)
    (frames_missing / "groundtruth.txt").write_text("1,1,5,5\n")
    with pytest.raises(DatasetLayoutError, match="the frames of"):
        read_source("folder", tmp_path / "noframes")
    with pytest.raises(DatasetLayoutError, match="LaSOT has no validation split"):
        read_source("lasot", tmp_path, split="val")
    with pytest.raises(DatasetLayoutError, match="unknown split 'test'"):
        read_source("folder", tmp_path, split="test")
    with pytest.raises(DatasetLayoutError, match="unknown data source kind 'imagenet'"):
        read_source("imagenet", tmp_path)
    with pytest.raises(DatasetLayoutError, match="GOT-10k dataset root: missing .*list.txt"):
        read_source("got10k", tmp_path)
    with pytest.raises(DatasetLayoutError, match="LaSOT dataset root"):
        read_source("lasot", tmp_path / "empty")
    with pytest.raises(DatasetLayoutError, match="COCO dataset root: missing .*instances_train2017.json"):
        read_source("coco", tmp_path / "empty")


def test_only_absent_targets_leave_nothing_to_train_on(tmp_path):
    sd.write_folder(tmp_path, count=1, frames=2)
    (tmp_path / "video_0" / "groundtruth.txt").write_text("0,0,0,0\n0,0,0,0\n")
    with pytest.raises(DatasetLayoutError, match="no sequence with a valid"):
        read_source("folder", tmp_path)


# ---------------------------------------------------------------- lorat eval: checked before tracking

@pytest.mark.slow
def test_lorat_eval_refuses_a_malformed_line_before_tracking(tmp_path, tiny_model):
    line, where = "12,30,abc,20", "line 3: '12,30,abc,20' is not 4 numbers"
    from run_cli import run_lorat

    pytest.importorskip("got10k")
    sd.write_lasot(tmp_path / "lasot", frames=4)
    gt = tmp_path / "lasot" / "airplane" / "airplane-13" / "groundtruth.txt"  # the last sequence
    lines = gt.read_text().splitlines()
    lines[2] = line
    gt.write_text("\n".join(lines) + "\n")
    out = run_lorat("eval", "lasot", "--root", tmp_path / "lasot", *tiny_model.cli_args(), "--device", "cpu",
                    "--results", tmp_path / "results", "--reports", tmp_path / "reports", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"lorat eval: error: {gt}, {where}"), lines
    assert not (tmp_path / "results").exists()  # nothing tracked, nothing written


def test_lorat_eval_names_the_file_of_a_nan_first_box(tmp_path, tiny_model, capsys):
    from lorat_tracker.cli import main

    pytest.importorskip("got10k")
    sd.write_lasot(tmp_path / "lasot", frames=4)
    gt = tmp_path / "lasot" / "airplane" / "airplane-9" / "groundtruth.txt"
    gt.write_text("NaN,NaN,NaN,NaN\n" + "".join(gt.read_text().splitlines(True)[1:]))
    args = ["eval", "lasot", "--root", str(tmp_path / "lasot"), *map(str, tiny_model.cli_args()), "--device", "cpu",
            "--results", str(tmp_path / "results"), "--reports", str(tmp_path / "reports")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{gt}, line 1: the first box nan,nan,nan,nan is not finite" in err
    assert not (tmp_path / "results").exists()
    # a short line in the middle of a file
    gt.write_text("12,30,40,20\n12,30,40\n12,30,40,20\n12,30,40,20\n")
    assert main(args) == 2
    assert f"{gt}, line 2: 3 numbers where 4 (x,y,w,h) were expected" in capsys.readouterr().err
    # a first box outside its frame is refused too (LaSOT is 1-based: 900 -> 899)
    gt.write_text("900,900,10,10\n" + "12,30,40,20\n" * 3)
    assert main(args) == 2
    assert f"{gt}, line 1: the first box 900,900,10,10 lies outside its 320x240 frame" in capsys.readouterr().err


def test_check_annotation_allows_later_nan_lines(tmp_path):
    from lorat_tracker.benchmark_layouts import check_annotation

    frame = tmp_path / "0001.jpg"
    cv2.imwrite(str(frame), np.zeros((30, 40, 3), np.uint8))
    gt = tmp_path / "gt.txt"
    gt.write_text("1,2,10,10\nNaN,NaN,NaN,NaN\n3,4,5,6\n")
    assert check_annotation(str(gt), first_frame=str(frame), frames=3).shape == (3, 4)
    with pytest.raises(AnnotationError, match=r"has 3 boxes for 4 frames \(fewer"):
        check_annotation(str(gt), first_frame=str(frame), frames=4)
    with pytest.raises(AnnotationError, match=r"has 3 boxes for 2 frames \(more"):
        check_annotation(str(gt), first_frame=str(frame), frames=2)
    gt.write_text("1,2,0,10\n")
    with pytest.raises(AnnotationError, match="line 1: the first box 1,2,0,10 has no area"):
        check_annotation(str(gt), first_frame=str(frame))


@pytest.mark.parametrize("bench, writer, annotation", [
    ("got10k-val", lambda root: sd.write_got10k(root, "val", count=2, frames=3),
     "val/GOT-10k_Val_000002/groundtruth.txt"),
    ("otb", lambda root: sd.write_otb(root, frames=3), "Boy/groundtruth_rect.txt"),
    ("tnl2k", lambda root: sd.write_tnl2k(root, frames=3), "synthetic_video_1/groundtruth.txt"),
    ("trackingnet", lambda root: sd.write_trackingnet(root, "TEST", count=2, frames=3), "TEST/anno/synthetic_1.txt"),
])
def test_every_benchmark_checks_annotations_before_tracking(tmp_path, tiny_model, capsys, bench, writer,
                                                            annotation):
    from lorat_tracker.cli import main

    pytest.importorskip("got10k")
    writer(tmp_path / "data")
    gt = tmp_path / "data" / annotation
    gt.write_text("1,2,x,4\n" + "".join(gt.read_text().splitlines(True)[1:]))
    args = ["eval", bench, "--root", str(tmp_path / "data"), *map(str, tiny_model.cli_args()),
            "--results", str(tmp_path / "results"), "--reports", str(tmp_path / "reports")]
    assert main(args) == 2
    assert f"{gt}, line 1: '1,2,x,4' is not 4 numbers" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()
