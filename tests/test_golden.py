"""Equivalence with the official LoRAT pipeline on every fixture model x geometry x sequence."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import FIXTURES
from run_cli import run_lorat
from lorat_tracker import LoRATTracker
from lorat_tracker.cropping import nominal_crop_params, pixel_aligned_crop, search_crop_box, template_mask
from lorat_tracker.selftest import read_rgb, reference_cases, run_case

CASES = list(reference_cases())
IDS = [f"{c.variant}-{c.sequence}" for c in CASES]


@pytest.fixture(scope="module")
def trackers():
    cache = {}

    def get(case):
        if case.variant not in cache:
            cache[case.variant] = LoRATTracker.from_pretrained(case.variant, weights=case.weights,
                                                               backbone=case.backbone, device="cpu")
        return cache[case.variant]
    return get


def test_fixture_set_is_complete():
    assert len(CASES) == 8  # 2 models x 2 geometries x 2 sequences
    assert all(len(c.frames) == 10 for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_boxes_and_scores_match_official(case, trackers):
    boxes, scores = run_case(trackers(case), case)
    assert boxes.shape == case.boxes.shape
    np.testing.assert_allclose(boxes, case.boxes, rtol=0, atol=1e-3)
    np.testing.assert_allclose(scores, case.scores, rtol=0, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_first_frame_intermediates_match(case, trackers):
    """Template crop, mask, search crop, score map and head boxes at frame 1: localises a mismatch."""
    ref = load_file(str(FIXTURES / "intermediates" / f"intermediates-{case.variant}-{case.sequence}.safetensors"))
    tracker = trackers(case)
    cfg = tracker.cfg
    tracker.initialize(read_rgb(case.frames[0]), case.init_box)
    target = tracker.target
    torch.testing.assert_close(target.template.unsqueeze(0), ref["z"], rtol=0, atol=1e-6)
    assert torch.equal(target.mask.unsqueeze(0), ref["z_feat_mask"])

    frame = read_rgb(case.frames[1])
    size = cfg.search.size
    s, t = nominal_crop_params(search_crop_box(target.box, cfg.tracking.min_object_size),
                               cfg.search.area_factor, (size, size))
    crop, _ = pixel_aligned_crop(frame, s, t, (size, size), target.fill)
    x = tracker._normalize(crop.unsqueeze(0))
    torch.testing.assert_close(x, ref["x"], rtol=0, atol=1e-6)

    with torch.inference_mode():
        score_map, boxes = tracker.model(ref["z"], ref["x"], ref["z_feat_mask"])
    torch.testing.assert_close(score_map, ref["out_score_map"], rtol=0, atol=1e-5)
    torch.testing.assert_close(boxes, ref["out_boxes"], rtol=0, atol=1e-6)


def test_crop_worked_example_interior():
    """Reference spec 3.3 worked example: 640x480 image, template crop A = 2 to 112 px."""
    image = np.zeros((480, 640, 3), np.uint8)
    box = (100.3, 50.7, 180.9, 130.2)
    s, t = nominal_crop_params(box, 2.0, (112, 112))
    assert s == pytest.approx(0.6995669, abs=1e-7)
    np.testing.assert_allclose(t, [-42.3591, -7.2758], atol=1e-4)
    _, p = pixel_aligned_crop(image, s, t, (112, 112), torch.zeros(3))
    np.testing.assert_allclose(p.scale, [112 / 161, 112 / 161], rtol=1e-6)
    np.testing.assert_allclose(p.translation, [-41.739132, -6.956522], atol=1e-5)
    mask = template_mask(box, p, 112, 8)
    ys, xs = np.nonzero(mask)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (2, 2, 7, 6)


def test_crop_worked_example_border_is_anisotropic_and_padded():
    image = np.full((480, 640, 3), 200, np.uint8)
    s, t = nominal_crop_params((5, 5, 25, 15), 4.0, (224, 224))
    assert s == pytest.approx(3.7463642, abs=1e-7)
    np.testing.assert_allclose(t, [55.8045, 74.5364], atol=1e-4)
    crop, p = pixel_aligned_crop(image, s, t, (224, 224), torch.tensor([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(p.scale, [3.7555556, 3.75], rtol=1e-6)
    np.testing.assert_allclose(p.translation, [55.0, 74.0], atol=1e-6)
    # Output rectangle O = (55, 74, 224, 224): padding outside it, image inside.
    assert torch.equal(crop[:, :74, :], torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1).expand(3, 74, 224))
    assert torch.equal(crop[:, 74:, :55], torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1).expand(3, 150, 55))
    # Inside O the (constant) image: bilinear weights are not exact in every torch kernel (the
    # single-thread path gives 199.99998), so compare to float precision, not bit for bit.
    torch.testing.assert_close(crop[:, 74:, 55:], torch.full((3, 150, 169), 200.0), rtol=0, atol=1e-3)


def test_selftest_command_passes():
    out = run_lorat("selftest", timeout=300)
    assert out.returncode == 0, out.stderr
    assert "largest deviation from the official pipeline" in out.stdout
    assert "PASS" in out.stdout
    # It says what it measured on, and does not claim bit-exactness (deviations depend on the CPU).
    import torch

    assert out.stdout.startswith("measured on CPU ") and f"torch {torch.__version__}" in out.stdout.splitlines()[0]
    assert "not bit-exact" in out.stdout and "tolerance 0.001 px" in out.stdout


@pytest.mark.slow
def test_selftest_fails_when_tolerance_is_impossible():
    # Exit code means something: a negative tolerance can never be met.
    out = run_lorat("selftest", "--tolerance", "-1", timeout=300)
    assert out.returncode == 1
    assert "FAIL" in out.stdout
