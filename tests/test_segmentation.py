"""SAM box-to-mask refinement against the official LoRAT "segmentify" outputs (fixtures/segmentify).

The tiny random SAM is rebuilt from its seed (tests/tiny_sam.py checks its SHA-256). One run of the
refiner per fixture frame (3 boxes, one batched image-encoder forward) records the intermediates;
each test below checks one step, so a failure names it.

Tolerance. Everything up to the SAM box prompt and the warp back are element-wise float32 / float64
operations and must match bit for bit. SAM's logits come out of matrix products whose summation
order depends on the CPU's kernels (AVX2, AVX-512, AMX): there the bound asserted, on every CPU, is
that a low-resolution pixel may differ only where our logit is within 1e-4 of 0 (the fixture's
smallest |logit| per mask is 5e-8 .. 1e-5), and a frame pixel only where the warp of such flipped
pixels reaches. With no flipped pixel (the case on the development machine: 0 differing pixels in
all 18 masks) the frame masks must be identical.
"""
from __future__ import annotations

import json
import sys

import cv2
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

pytest.importorskip("segment_anything")

import tiny_sam  # noqa: E402

from lorat_tracker.errors import ConfigError, InvalidBoxError  # noqa: E402
from lorat_tracker.segmentation import (BoxToMask, SamCheckpointError, SamCheckpointNotFoundError,  # noqa: E402
                                        SamNotInstalledError, SegmentationError, box_mask, detect_architecture,
                                        segmentify_crop_params, warp_mask_to_frame)

FIX = tiny_sam.FIXTURE
BOXES = json.loads((FIX / "boxes.json").read_text())
NEAR_ZERO = 1e-4  # |logit| below which another CPU's summation order may flip the sign


def frame(k: int) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(FIX / BOXES["frames"][k]["file"])), cv2.COLOR_BGR2RGB)


def fixture_mask(masks, key: str) -> np.ndarray:
    h, w = (int(v) for v in masks[key + ".shape"])
    return np.unpackbits(masks[key + ".packed"], axis=-1, count=w).astype(bool)


def unpack_lowres(a: np.ndarray) -> np.ndarray:
    return np.unpackbits(a, axis=-1).astype(bool)


# One worker runs this module: its `runs` fixture (the refiner over every fixture frame, ~12 s) is module-
# scoped, and pytest-xdist would otherwise compute it again on every worker that gets one of its tests.
pytestmark = pytest.mark.xdist_group("segmentation-fixture")


@pytest.fixture(scope="module")
def runs(refiner):
    """Per fixture frame: the refiner's masks and what it computed on the way (recorded, not recomputed)."""
    seen = {}
    prepare, lowres = refiner.prepare, refiner.lowres_logits

    def record_prepare(image, boxes):
        seen["prepare"] = prepare(image, boxes)
        return seen["prepare"]

    def record_lowres(crops, prompts):
        seen["logits"] = lowres(crops, prompts)
        return seen["logits"]

    refiner.prepare, refiner.lowres_logits = record_prepare, record_lowres
    out = {}
    try:
        for k, fr in enumerate(BOXES["frames"]):
            masks = refiner(frame(k), np.array(fr["boxes_xyxy"]), box_format="xyxy")
            crops, params, prompts = seen["prepare"]
            for j, key in enumerate(fr["mask_keys"]):
                out[key] = dict(box=np.array(fr["boxes_xyxy"][j]), crop=crops[j], params=params[j],
                                prompt=prompts[j].numpy(), logits=seen["logits"][j].numpy(), mask=masks[j],
                                size_wh=(fr["width"], fr["height"]), frame=k)
    finally:
        del refiner.prepare, refiner.lowres_logits
    return out


@pytest.fixture(scope="module")
def inter():
    return load_file(str(FIX / "intermediates.safetensors"))


KEYS = [key for fr in BOXES["frames"] for key in fr["mask_keys"]]


def test_every_fixture_box_was_refined(runs):
    assert sorted(runs) == sorted(KEYS) and len(KEYS) == 18


def test_step2_nominal_crop_parameters(runs, inter):
    for key in KEYS:
        s, t = segmentify_crop_params(runs[key]["box"])
        np.testing.assert_array_equal(np.array([[s, s], t]), inter[key + ".params_initial"], err_msg=key)


def test_step3_crop_rectangle_fill_and_adjusted_parameters(runs, inter):
    for key in KEYS:
        r = runs[key]
        o, i = inter[key + ".crop_rect_out"], inter[key + ".crop_rect_in"]
        mean = inter[key + ".image_mean"]
        img = torch.from_numpy(frame(r["frame"])).permute(2, 0, 1).to(torch.float32)
        np.testing.assert_array_equal(torch.mean(img, dim=(-2, -1)).numpy(), mean, err_msg=key)
        crop = r["crop"].numpy()
        outside = np.ones(crop.shape[1:], dtype=bool)
        outside[o[1]:o[3], o[0]:o[2]] = False
        assert np.all(crop[:, outside] == mean[:, None]), f"{key}: the fill outside the crop rectangle"
        if outside.any() and o[2] < 1024:
            assert np.any(crop[:, :, o[2]] == mean[:, None]), key
        # A float64 sum of 1M float32 values: its rounding depends on the summation order (~1e-15
        # relative); one float32 ulp changed in any crop pixel moves it by more than 1e-13.
        np.testing.assert_allclose(r["crop"].double().sum(dim=(1, 2)).numpy(), inter[key + ".crop_channel_sum"],
                                   rtol=1e-13, atol=0, err_msg=f"{key}: crop content")
        adjusted = np.stack([r["params"].scale, r["params"].translation])
        np.testing.assert_array_equal(adjusted, inter[key + ".params_adjusted"], err_msg=key)
        # ... and they are exactly the ones the fixture's rectangles give.
        s = np.array([o[2] - o[0], o[3] - o[1]], np.float32) / np.array([i[2] - i[0], i[3] - i[1]], np.float32)
        np.testing.assert_array_equal(adjusted[0], s, err_msg=key)
        np.testing.assert_array_equal(adjusted[1], np.array(o[:2], np.float32) - np.array(i[:2], np.float32) * s)


def test_steps4_5_box_prompt(runs, inter):
    for key in KEYS:
        r = runs[key]
        np.testing.assert_array_equal(r["params"].image_to_crop(r["box"]), inter[key + ".box_on_crop_f64"],
                                      err_msg=key)
        np.testing.assert_array_equal(r["prompt"], inter[key + ".box_sam"], err_msg=key)


def test_step6_lowres_masks(runs, inter):
    flipped = {}
    for key in KEYS:
        ours = runs[key]["logits"] > 0
        diff = ours != unpack_lowres(inter[key + ".lowres_mask_packed"])
        assert np.all(np.abs(runs[key]["logits"][diff]) < NEAR_ZERO), f"{key}: a confident low-res pixel differs"
        assert diff.sum() <= 4, f"{key}: {diff.sum()} low-res pixels differ"
        flipped[key] = int(diff.sum())
    print("low-res pixels differing per mask:", flipped)


def test_step7_warp_reproduces_fixture_from_fixture_lowres(runs, inter):
    """The warp alone: the fixture's own low-res masks warp to the fixture's frame masks exactly."""
    masks = load_file(str(FIX / "masks_packed.safetensors"))
    for key in KEYS:
        lowres = torch.from_numpy(unpack_lowres(inter[key + ".lowres_mask_packed"]))
        warped = warp_mask_to_frame(lowres, runs[key]["params"], runs[key]["size_wh"]).numpy()
        assert np.array_equal(warped, fixture_mask(masks, key)), key


def test_frame_masks_match_official(runs, inter):
    masks = load_file(str(FIX / "masks_packed.safetensors"))
    differing = {}
    for key in KEYS:
        r = runs[key]
        expected = fixture_mask(masks, key)
        assert r["mask"].dtype == bool and r["mask"].shape == expected.shape == (180, 320)
        diff = r["mask"] != expected
        flips = (r["logits"] > 0) != unpack_lowres(inter[key + ".lowres_mask_packed"])
        reach = warp_mask_to_frame(torch.from_numpy(flips), r["params"], r["size_wh"]).numpy()
        assert not np.any(diff & ~reach), f"{key}: pixels differ where no low-res pixel flipped"
        if not flips.any():
            assert not diff.any(), key
        differing[key] = int(diff.sum())
    print("frame pixels differing per mask:", differing)


def test_checkpoint_file_round_trip_and_single_box(tmp_path):
    """from_pretrained on a saved tiny SAM: architecture read from the file, a box alone (no batch)
    gives the fixture mask too."""
    path = tiny_sam.save_checkpoint(tmp_path / "sam_tiny.pth")
    refiner = BoxToMask.from_pretrained(path, device="cpu")
    assert refiner.model_type is None and refiner.architecture.embed_dim == 64
    assert refiner.architecture.global_attn_indexes == (1,) and refiner.architecture.num_heads == 2
    fr = BOXES["frames"][0]
    x, y, w, h = fr["boxes_xywh"][2]
    mask = refiner(frame(0), [x, y, w, h])[0]  # xywh, the public default
    expected = fixture_mask(load_file(str(FIX / "masks_packed.safetensors")), fr["mask_keys"][2])
    assert mask.sum() > 0 and (mask != expected).sum() <= 8  # x + w may differ from the stored x2 by an ulp
    assert np.array_equal(refiner(frame(0), np.array([fr["boxes_xyxy"][2]]), box_format="xyxy")[0], expected)


@pytest.mark.parametrize("model_type", ["vit_b", "vit_l", "vit_h"])
def test_model_type_detected_from_tensor_shapes(model_type):
    from segment_anything.build_sam import sam_model_registry

    with torch.device("meta"):
        state = sam_model_registry[model_type]().state_dict()
    arch = detect_architecture(state, "file")
    assert arch.model_type == model_type


def test_bf16_path_runs_on_cpu(refiner):
    """bf16 (the idea of the official "fast" path): masks of the frame's shape, close to fp32.
    Agreement is measured in benchmarks/sam_speed.py; this guards against a broken path."""
    bf16 = tiny_sam.refiner(precision="bf16")
    fr = BOXES["frames"][0]
    mask = bf16(frame(0), np.array(fr["boxes_xyxy"][:1]), box_format="xyxy")[0]
    expected = fixture_mask(load_file(str(FIX / "masks_packed.safetensors")), fr["mask_keys"][0])
    assert mask.dtype == bool and mask.shape == expected.shape
    assert (mask != expected).sum() < 0.05 * expected.sum()


# ------------------------------------------------------------------------------ failures and mistakes

def test_sam_failure_on_a_frame_falls_back_to_the_box(refiner, monkeypatch):
    fr = BOXES["frames"][0]
    boxes = np.array([fr["boxes_xyxy"][0], fr["boxes_xyxy"][2]])
    masks = load_file(str(FIX / "masks_packed.safetensors"))
    expected = [fixture_mask(masks, fr["mask_keys"][0]), fixture_mask(masks, fr["mask_keys"][2])]
    # Out of memory for the batch: each box alone, the masks are the same.
    forward = refiner.sam.image_encoder.forward
    calls = []

    def oom_for_batches(x):
        calls.append(len(x))
        if len(x) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return forward(x)

    monkeypatch.setattr(refiner.sam.image_encoder, "forward", oom_for_batches)
    got = refiner(frame(0), boxes, box_format="xyxy", on_failure="box")
    assert calls == [2, 1, 1] and refiner.last_failures == []
    assert all(np.array_equal(g, e) for g, e in zip(got, expected))
    with pytest.raises(SegmentationError, match="OutOfMemoryError"):
        refiner(frame(0), boxes, box_format="xyxy")
    monkeypatch.undo()
    # NaN logits (a NaN inside SAM): "raise" -> typed error, "box" -> the rasterized box.
    nan_refiner = tiny_sam.refiner()
    with torch.no_grad():
        nan_refiner.sam.mask_decoder.output_hypernetworks_mlps[0].layers[0].weight[0, 0] = float("nan")
    with pytest.raises(SegmentationError, match="NaN"):
        nan_refiner(frame(0), boxes[:1], box_format="xyxy")
    got = nan_refiner(frame(0), boxes[:1], box_format="xyxy", on_failure="box")
    assert np.array_equal(got[0], box_mask(boxes[0], (320, 180))) and got[0][40, 110]
    assert [k for k, _ in nan_refiner.last_failures] == [0] and "NaN" in nan_refiner.last_failures[0][1]


@pytest.mark.slow
def test_typed_results_and_the_tracker_warns_on_a_fallback(refiner, tiny_model):
    """``refine`` gives one MaskResult per box: SAM's mask (the same as ``__call__``'s) or the filled box
    and why; the tracker warns with MaskFallbackWarning naming the target and uses the box."""
    from lorat_tracker.demo import render_sequence

    from lorat_tracker import MaskFallbackWarning
    from lorat_tracker.segmentation import MaskResult, mask_results

    fr = BOXES["frames"][0]
    boxes = np.array(fr["boxes_xyxy"][:2])
    results = refiner.refine(frame(0), boxes, box_format="xyxy")
    assert [type(r) for r in results] == [MaskResult, MaskResult] and [r.fallback for r in results] == [None, None]
    assert all(np.array_equal(r.mask, m) for r, m in zip(results, refiner(frame(0), boxes, box_format="xyxy")))
    ones = np.ones((180, 320), dtype=bool)
    plain = mask_results(lambda image, b, box_format, on_failure: [ones] * len(b), frame(0), boxes, "xyxy")
    assert [r.fallback for r in plain] == [None, None] and plain[0].mask is ones  # any callable refiner
    nan_refiner = tiny_sam.refiner()
    with torch.no_grad():
        nan_refiner.sam.mask_decoder.output_hypernetworks_mlps[0].layers[0].weight[0, 0] = float("nan")
    (result,) = nan_refiner.refine(frame(0), boxes[:1], box_format="xyxy")
    assert result.fallback == "SAM gave NaN or infinite logits"
    assert np.array_equal(result.mask, box_mask(boxes[0], (320, 180)))
    seq = render_sequence(2, (320, 180), num_objects=1, seed=7)
    tracker = tiny_model.tracker(masks=nan_refiner)
    tracker.initialize(seq.frames[0], seq.boxes[0][0])
    with pytest.warns(MaskFallbackWarning, match=r"no mask for target 0 \(SAM gave NaN or infinite logits\)"):
        prediction = tracker.track(seq.frames[1])
    assert np.array_equal(prediction.mask, box_mask(tracker.target.box, (320, 180)))


def test_bad_boxes(refiner):
    img = frame(0)
    for bad, match in [([10, 10, 0, 5], "no area"), ([10, 10, 5, -1], "no area"), ([np.nan, 1, 2, 3], "NaN"),
                       ([[1, 2, 3]], "shape"), ("box", "numbers")]:
        with pytest.raises(InvalidBoxError, match=match):
            refiner(img, bad)
    with pytest.raises(InvalidBoxError, match="no area"):
        refiner(img, [[0, 0, 10, 10], [5, 5, 5, 9]], box_format="xyxy")
    assert refiner(img, np.zeros((0, 4))) == []
    with pytest.raises(ConfigError):
        refiner(img, [0, 0, 10, 10], box_format="cxcywh")


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("sam_files")
    good = tiny_sam.save_checkpoint(tmp_path / "good.pth")
    state = torch.load(good, weights_only=True)
    (tmp_path / "garbage.pth").write_bytes(b"\x80\x02 this is not a checkpoint")
    data = good.read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    nan = dict(state)
    nan["mask_decoder.iou_token.weight"] = torch.full_like(state["mask_decoder.iou_token.weight"], float("nan"))
    torch.save(nan, tmp_path / "nan.pth")
    ints = dict(state)
    ints["image_encoder.pos_embed"] = state["image_encoder.pos_embed"].to(torch.int32)
    torch.save(ints, tmp_path / "int.pth")
    partial = {k: v for k, v in state.items() if not k.startswith("prompt_encoder.")}
    torch.save(partial, tmp_path / "partial.pth")
    torch.save({"patch_embed.proj.weight": torch.zeros(8, 3, 14, 14)}, tmp_path / "dinov2.pth")
    return tmp_path


@pytest.mark.parametrize("case,error,match", [
    ("missing.pth", SamCheckpointNotFoundError, "does not exist"),
    ("garbage.pth", SamCheckpointError, "corrupt"),
    ("truncated.pth", SamCheckpointError, "corrupt or truncated"),
    ("nan.pth", SamCheckpointError, "NaN value"),
    ("int.pth", SamCheckpointError, "int32"),
    ("partial.pth", SamCheckpointError, "lacks"),
    ("dinov2.pth", SamCheckpointError, "not a SAM checkpoint"),
])
def test_bad_checkpoint_files(bad_files, case, error, match):
    with pytest.raises(error, match=match) as info:
        BoxToMask.from_pretrained(bad_files / case, device="cpu")
    assert "\n" not in str(info.value) and "weights_only=False" not in str(info.value)


def test_wrong_size_type_precision_and_missing_package(tmp_path, monkeypatch):
    good = tiny_sam.save_checkpoint(tmp_path / "sam.pth")
    with pytest.raises(SamCheckpointError, match="vit_h was asked"):
        BoxToMask.from_pretrained(good, model_type="vit_h", device="cpu")
    with pytest.raises(ConfigError, match="unknown SAM model type"):
        BoxToMask.from_pretrained(good, model_type="vit_x", device="cpu")
    with pytest.raises(ConfigError, match="fp16 is for CUDA"):
        BoxToMask.from_pretrained(good, precision="fp16", device="cpu")
    with pytest.raises(ConfigError, match="unknown SAM precision"):
        BoxToMask.from_pretrained(good, precision="int8", device="cpu")
    monkeypatch.setitem(sys.modules, "segment_anything", None)
    monkeypatch.setitem(sys.modules, "segment_anything.build_sam", None)
    with pytest.raises(SamNotInstalledError, match=r'pip install "lorat-tracker\[sam\]"'):
        BoxToMask.from_pretrained(good, device="cpu")
    with pytest.raises(ImportError):  # also catchable as what it is
        BoxToMask.from_pretrained(good, device="cpu")


# ----------------------------------------------------------------------------------- in the tracker

def test_tracker_predictions_carry_masks_and_the_box_drives(refiner, tiny_model):
    from lorat_tracker.demo import render_sequence

    from lorat_tracker import LoRATTracker, Prediction
    from lorat_tracker.errors import ConfigError as CE

    seq = render_sequence(2, (320, 180), num_objects=2, seed=7)
    plain = tiny_model.tracker()
    with_masks = tiny_model.tracker(masks=refiner)
    calls = []
    call = refiner.__call__

    class Counting:
        def __call__(self, *a, **k):
            calls.append(len(a[1]))
            return call(*a, **k)

    with_masks.masks = Counting()
    targets = [with_masks.new_target(seq.frames[0], seq.boxes[o][0]) for o in range(2)]
    reference = [plain.new_target(seq.frames[0], seq.boxes[o][0]) for o in range(2)]
    for k in (1,):
        preds = with_masks.step(targets, seq.frames[k])
        ref = plain.step(reference, seq.frames[k])
        assert calls[-1] == 2  # both targets through one refiner call (one encoder forward)
        for p, r, t in zip(preds, ref, targets):
            box, score = p  # unpacking is unchanged
            assert isinstance(p, Prediction) and np.array_equal(box, r.box) and score == r.score
            assert p.mask.dtype == bool and p.mask.shape == (180, 320)
            assert np.array_equal(p.mask, refiner(seq.frames[k], t.box[None], box_format="xyxy")[0])
    single = LoRATTracker(plain.model, device="cpu", masks=refiner)
    single.initialize(seq.frames[0], seq.boxes[0][0])
    assert single.track(seq.frames[1]).mask.shape == (180, 320)
    assert plain.track is not None and ref[0].mask is None
    with pytest.raises(CE, match="refiner"):
        tiny_model.tracker(masks="sam_vit_h.pth")
