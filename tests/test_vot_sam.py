"""VOTS masks with SAM in the real VOT toolkit: `lorat vot register --masks sam` + plain `vot evaluate`.

The tiny LoRAT and the tiny SAM of the segmentify fixture (rebuilt from its seed, saved as a
checkpoint file in a temporary directory) run in the toolkit's tracker process; the test recomputes
every answer with the core tracker and ``BoxToMask`` in this process and requires equality.
"""
from __future__ import annotations

import configparser
import json
import logging
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("trax")
pytest.importorskip("vot")
pytest.importorskip("segment_anything")

import tiny_sam  # noqa: E402
from lorat_tracker.demo import write_vot_boxes, write_vots_masks  # noqa: E402
from test_vot import frame_paths, kind, lorat, ok, read_results, vot  # noqa: E402

from lorat_tracker.boxes import rasterized_xywh  # noqa: E402
from lorat_tracker.images import read_rgb  # noqa: E402
from lorat_tracker.integrations.vot.regions import mask_bbox_xywh  # noqa: E402

ID = "LoRAT_tiny_SAM"


def register_sam(ws, tiny_model, sam_file, name=ID):
    return ok(lorat("vot", "register", "--workspace", ws, *tiny_model.cli_args(), "--name", name, "--device", "cpu",
                    "--masks", "sam", "--sam-checkpoint", sam_file, "--no-check"))


def full_mask(region, size_wh) -> np.ndarray:
    """A vot.region.Mask as a full-frame bool array."""
    w, h = size_wh
    out = np.zeros((h, w), dtype=bool)
    m = region.mask.astype(bool)
    x0, y0 = region.offset
    out[y0:y0 + m.shape[0], x0:x0 + m.shape[1]] = m
    return out


@pytest.mark.slow
def test_vots_mask_stack_gets_sam_masks(tmp_path, tiny_model, sam_file, refiner):
    """Plain `vot evaluate` + `vot analysis` (the VOTS measures) on a 2-object mask stack: every object of
    every sequence has a mask trajectory whose masks are the refiner applied to the core tracker's boxes."""
    from lorat_tracker.integrations.vot.workspace import create_workspace

    seqs = write_vots_masks(tmp_path / "src", count=2, frames=4, objects=2)
    ws = create_workspace(tmp_path / "ws", "tests/multiobject", sequences=tmp_path / "src", log=lambda *_: None)
    register_sam(ws, tiny_model, sam_file)
    ok(vot("evaluate", "--workspace", ws, ID))

    tracker = tiny_model.tracker()
    for name, seq in seqs.items():
        paths = frame_paths(ws / "sequences" / name)
        first = read_rgb(paths[0])
        targets = [tracker.new_target(first, list(map(float, mask_bbox_xywh(seq.masks[o][0])))) for o in range(2)]
        results = [read_results(ws / "results" / ID / "baseline" / name / f"{name}_obj{o + 1}_001.bin")
                   for o in range(2)]
        assert all(len(r) == len(paths) == 4 for r in results)
        for k in range(1, len(paths)):
            image = read_rgb(paths[k])
            tracker.step(targets, image)
            expected = refiner(image, np.stack([t.box for t in targets]), box_format="xyxy")
            for o in range(2):
                r = results[o][k]
                assert kind(r) == "Mask", r
                got = full_mask(r, seq.size_wh)
                assert expected[o].any() and not expected[o].all()
                assert np.array_equal(got, expected[o]), (name, o, k, int((got != expected[o]).sum()))
    log = (ws / "logs" / f"{ID}.tracker.log").read_text()
    assert log.count("INFO starting:") == 2 and "SAM gave no mask" not in log
    assert log.index("SAM custom (sam_tiny.pth) loaded") < log.index("TraX handshake done")  # before the handshake

    ok(vot("analysis", "--workspace", ws, "--name", "vots", ID))
    exp = json.loads((ws / "analysis" / "vots.json").read_text())["results"]["baseline"]
    names = [a["name"] for a in exp["parameters"]["analyses"]]
    assert {"Quality", "AR"} <= set(names)
    quality = exp["results"][names.index("Quality")][0][0]
    assert 0 < quality <= 1


@pytest.mark.slow
def test_box_stack_keeps_rectangles_with_sam(tmp_path, tiny_model, sam_file):
    """The same registration on a box stack: rectangles, the core tracker's boxes."""
    from lorat_tracker.integrations.vot.workspace import create_workspace

    write_vot_boxes(tmp_path / "src", count=1, frames=3)
    ws = create_workspace(tmp_path / "ws", "vot2022/shorttermbox", sequences=tmp_path / "src", log=lambda *_: None)
    register_sam(ws, tiny_model, sam_file)
    ok(vot("evaluate", "--workspace", ws, "--experiments", "unsupervised", ID))
    regions = read_results(ws / "results" / ID / "unsupervised" / "box1" / "box1_001.bin")
    paths = frame_paths(ws / "sequences" / "box1")
    tracker = tiny_model.tracker()
    tracker.initialize(read_rgb(paths[0]), np.loadtxt(ws / "sequences" / "box1" / "groundtruth.txt", delimiter=",")[0])
    for k in range(1, len(paths)):
        tracker.track(read_rgb(paths[k]))
        r = regions[k]
        assert kind(r) == "Rectangle" and (r.x, r.y, r.width, r.height) == rasterized_xywh(tracker.target.box)


def test_session_mixed_objects_and_sam_failure(tiny_model, refiner, caplog):
    """In one session a rectangle object keeps its rectangle and a mask object gets SAM's mask; when SAM
    fails on a frame the object is answered with its box as a mask, logged, and the run goes on."""
    import trax
    from lorat_tracker.demo import render_sequence

    from lorat_tracker.integrations.vot.server import Session, answer_region

    seq = render_sequence(3, (320, 180), num_objects=2, seed=3)
    session = Session(tiny_model.tracker(), refiner)
    session.initialize(seq.frames[0], "f0", [("rectangle", seq.boxes[0][0]), ("mask", seq.boxes[1][0])])
    answers = session.frame(seq.frames[1], "f1")
    (k0, box0, _, mask0), (k1, box1, _, mask1) = answers
    assert (k0, mask0) == ("rectangle", None)
    assert np.array_equal(mask1, refiner(seq.frames[1], box1[None], box_format="xyxy")[0])
    region, props = answer_region(k1, box1, 0.5, mask1)
    assert region.type == trax.Region.MASK and float(props["confidence"]) == 0.5
    assert answer_region(k0, box0, 0.5, mask0)[0].type == trax.Region.RECTANGLE

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    session.refiner = broken
    with caplog.at_level(logging.WARNING, logger="lorat.vot"):
        logging.getLogger("lorat.vot").propagate = True
        try:
            answers = session.frame(seq.frames[2], "f2")
        finally:
            logging.getLogger("lorat.vot").propagate = False
    assert answers[1][3] is None  # answered by answer_region as the filled box
    assert "SAM failed on frame f2" in caplog.text and session.mask_failures == 1
    region, _ = answer_region("mask", answers[1][1], 0.5, None)
    assert region.type == trax.Region.MASK


def test_session_answers_the_box_where_sam_gives_no_mask(tiny_model, caplog):
    """SAM's typed fallback (NaN logits) for one object: logged with its reason, counted, answered as the box."""
    from lorat_tracker.demo import render_sequence

    from lorat_tracker.integrations.vot.server import Session

    nan_refiner = tiny_sam.refiner()
    with torch.no_grad():
        nan_refiner.sam.mask_decoder.output_hypernetworks_mlps[0].layers[0].weight[0, 0] = float("nan")
    seq = render_sequence(2, (320, 180), num_objects=2, seed=3)
    session = Session(tiny_model.tracker(), nan_refiner)
    session.initialize(seq.frames[0], "f0", [("rectangle", seq.boxes[0][0]), ("mask", seq.boxes[1][0])])
    with caplog.at_level(logging.WARNING, logger="lorat.vot"):
        logging.getLogger("lorat.vot").propagate = True
        try:
            answers = session.frame(seq.frames[1], "f1")
        finally:
            logging.getLogger("lorat.vot").propagate = False
    assert answers[1][0] == "mask" and answers[1][3] is None and session.mask_failures == 1
    assert "SAM gave no mask for object 1 on frame f1 (SAM gave NaN or infinite logits)" in caplog.text


@pytest.mark.parametrize("stack", ["vots2025/main", "vots2026/main"])
def test_vots_2025_2026_workspaces_load_offline(tmp_path, stack):
    """`lorat vot workspace` for the VOTS 2025/2026 main stacks (bundled with vot-toolkit 0.9.0): the
    toolkit loads them from the user's sequences, nothing downloaded, multi-object experiment."""
    from vot.workspace import Workspace

    from lorat_tracker.integrations.vot.workspace import create_workspace

    write_vots_masks(tmp_path / "src", count=1, frames=3, objects=2)
    ws = create_workspace(tmp_path / "ws", stack, sequences=tmp_path / "src", log=lambda *_: None)
    loaded = Workspace.load(str(ws))
    assert [s.name for s in loaded.dataset] == ["multi1"]
    assert len(list(loaded.dataset["multi1"].objects())) == 2
    assert [e.multiobject for e in loaded.stack] == [True]


def _ws(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "config.yaml").write_text("registry:\n- ./trackers.ini\nstack: tests/multiobject\n")
    return ws


def test_registration_entry_with_sam(tmp_path, tiny_model, sam_file):
    from lorat_tracker.integrations.vot.registration import DEFAULT_TIMEOUT_S, register

    ws = _ws(tmp_path)
    register(ws, tiny_model.variant, tiny_model.weights, tiny_model.backbone, name=ID, device="cpu",
             masks="sam", sam_checkpoint=sam_file, log=lambda *_: None)
    ini = configparser.ConfigParser()
    ini.read(ws / "trackers.ini")
    entry = ini[ID]
    assert entry["env_lorat_vot_masks"] == "sam" and entry["env_lorat_vot_sam_precision"] == "fp32"
    assert entry["env_lorat_vot_sam_checkpoint"] == str(sam_file.resolve())
    assert int(entry["timeout"]) > DEFAULT_TIMEOUT_S  # room for SAM on the CPU
    assert entry["label"].endswith("+ SAM custom")


@pytest.mark.parametrize("check", [True, False])
def test_tiny_sam_timeout_comes_from_its_measured_size(tmp_path, tiny_model, sam_file, check):
    """A non-standard SAM is sized from its checkpoint's tensors (embed dim 64, depth 2 here), not counted
    as ViT-B: its timeout is the floor's, far below ViT-B's 4,500 s, with and without --no-check."""
    from lorat_tracker.integrations.vot.registration import (DEFAULT_TIMEOUT_S, SAM_MIN_SECONDS_PER_OBJECT,
                                                             SAM_TIMEOUT_OBJECTS, default_timeout, register)
    from lorat_tracker.segmentation import MODEL_TYPES, SamArchitecture

    ws = _ws(tmp_path)
    register(ws, tiny_model.variant, tiny_model.weights, tiny_model.backbone, name=ID, device="cpu",
             masks="sam", sam_checkpoint=sam_file, check=check, log=lambda *_: None)
    ini = configparser.ConfigParser()
    ini.read(ws / "trackers.ini")
    vit_b = SamArchitecture(*MODEL_TYPES["vit_b"])
    assert default_timeout("sam", vit_b, "cpu") == 4500  # 300 s + 3 x 20 objects x 70 s, as measured
    expected = int(DEFAULT_TIMEOUT_S + 3 * SAM_TIMEOUT_OBJECTS * SAM_MIN_SECONDS_PER_OBJECT["cpu"])
    assert int(ini[ID]["timeout"]) == expected == 600


def test_sam_seconds_scale_with_the_encoder_size():
    from lorat_tracker.integrations.vot.registration import SAM_SECONDS_PER_OBJECT, sam_seconds_per_object
    from lorat_tracker.segmentation import MODEL_TYPES, SamArchitecture

    for size, spec in MODEL_TYPES.items():  # the released sizes: their measured times
        for device in ("cpu", "cuda"):
            assert sam_seconds_per_object(SamArchitecture(*spec), device) == SAM_SECONDS_PER_OBJECT[device][size]
    # a custom SAM twice ViT-B's depth at its width: twice ViT-B's weights, twice its time
    assert sam_seconds_per_object(SamArchitecture(768, 24, 12, (5, 11, 17, 23)), "cpu") == pytest.approx(140.0)
    assert sam_seconds_per_object(SamArchitecture(64, 2, 2, (1,)), "cuda") == 0.05  # the floor
    assert sam_seconds_per_object(None, "cpu") == 215.0  # unknown: the largest released size


@pytest.mark.parametrize("case", ["no-checkpoint", "missing", "corrupt", "wrong-size", "without-masks",
                                  "not-installed"])
def test_bad_sam_registration_gives_one_clear_line(tmp_path, tiny_model, sam_file, case, capsys, monkeypatch):
    from lorat_tracker.cli import main

    ws = _ws(tmp_path)
    (tmp_path / "corrupt.pth").write_bytes(b"PK\x03\x04 truncated zip")
    extra = {"no-checkpoint": ["--masks", "sam"],
             "missing": ["--masks", "sam", "--sam-checkpoint", str(tmp_path / "sam_vit_h_4b8939.pth")],
             "corrupt": ["--masks", "sam", "--sam-checkpoint", str(tmp_path / "corrupt.pth")],
             "wrong-size": ["--masks", "sam", "--sam-checkpoint", str(sam_file), "--sam-type", "vit_h"],
             "without-masks": ["--sam-checkpoint", str(sam_file)],
             "not-installed": ["--masks", "sam", "--sam-checkpoint", str(sam_file)]}[case]
    expected = {"no-checkpoint": "--masks sam needs --sam-checkpoint", "missing": "does not exist",
                "corrupt": "corrupt", "wrong-size": "--sam-type vit_h was given",
                "without-masks": "add --masks sam", "not-installed": 'pip install "lorat-tracker[sam]"'}[case]
    if case == "not-installed":
        monkeypatch.setitem(sys.modules, "segment_anything", None)
        monkeypatch.setitem(sys.modules, "segment_anything.build_sam", None)
    argv = ["vot", "register", "--workspace", str(ws), *tiny_model.cli_args(), "--name", ID, *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lorat vot: error:") and expected in err[0], err
    assert not (ws / "trackers.ini").exists()


def test_demo_workspace_with_mask_ground_truth(tmp_path):
    """`lorat vot workspace --demo N --demo-masks`: the toolkit's cow sequences with VOTS-style mask
    ground truth (the cow's silhouette where the toolkit pasted it)."""
    from vot.region import Mask
    from vot.workspace import Workspace

    from lorat_tracker.integrations.vot.workspace import create_workspace

    ws = create_workspace(tmp_path / "ws", "vots2026/main", demo=1, demo_objects=2, demo_length=2, demo_masks=True,
                          log=lambda *_: None)
    seq = Workspace.load(str(ws)).dataset["demo1"]
    for obj in seq.objects():
        region = seq.object(obj)[0]
        assert isinstance(region, Mask) and 0 < region.mask.sum() < region.mask.size
