"""Tracker API: bad input (typed errors, tracker stays usable), several targets, configs."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from lorat_tracker.demo import render_sequence
from lorat_tracker import (ConfigError, FrameSizeWarning, InvalidBoxError, InvalidImageError, LoRATError,
                           LoRATTracker, NotInitializedError, Prediction, available_variants, load_config)


@pytest.fixture(scope="module")
def seq():
    return render_sequence(num_frames=6, num_objects=2, seed=3)


@pytest.fixture()
def tracker(tiny_model):
    return tiny_model.tracker()


def test_prediction_types(tracker, seq):
    tracker.initialize(seq.frames[0], seq.boxes[0, 0])
    pred = tracker.track(seq.frames[1])
    assert isinstance(pred, Prediction)
    box, score = pred
    assert box.dtype == np.float64 and box.shape == (4,) and isinstance(score, float)
    assert 0.0 <= score <= 1.0
    w, h = seq.size_wh
    assert box[0] >= 0 and box[1] >= 0 and box[0] + box[2] <= w and box[1] + box[3] <= h


def test_track_before_initialize(tracker, seq):
    with pytest.raises(NotInitializedError, match="initialize"):
        tracker.track(seq.frames[0])


@pytest.mark.parametrize("image,match", [
    ([[1, 2], [3, 4]], "numpy array"),
    (np.zeros((240, 320, 3), np.float32), "uint8"),
    (np.zeros((240, 320, 2), np.uint8), "shape"),
    (np.zeros((2, 240, 320, 3), np.uint8), "shape"),
    (np.zeros((0, 320, 3), np.uint8), "empty"),
])
def test_bad_images_are_refused_and_tracker_stays_usable(tracker, seq, image, match):
    tracker.initialize(seq.frames[0], seq.boxes[0, 0])
    with pytest.raises(InvalidImageError, match=match):
        tracker.track(image)
    with pytest.raises(InvalidImageError, match=match):
        tracker.initialize(image, seq.boxes[0, 0])
    box, _ = tracker.track(seq.frames[1])        # still tracking the first initialisation
    assert np.all(np.isfinite(box))


def test_pil_image_gets_a_hint(tracker):
    from PIL import Image

    with pytest.raises(InvalidImageError, match="np.asarray"):
        tracker.initialize(Image.new("RGB", (32, 32)), [1, 1, 5, 5])


@pytest.mark.parametrize("box,match", [
    ([np.nan, 10, 20, 20], "NaN"),
    ([10, 10, np.inf, 20], "NaN or infinity"),
    ([10, 10, 0, 20], "width or height"),
    ([10, 10, 20, -3], "width or height"),
    ([400, 10, 20, 20], "outside"),
    ([-50, -50, 20, 20], "outside"),
    ([1, 2, 3], "4 numbers"),
    ("a box", "4 numbers"),
])
def test_bad_boxes(tracker, seq, box, match):
    with pytest.raises(InvalidBoxError, match=match):
        tracker.initialize(seq.frames[0], box)
    assert tracker.target is None


def test_errors_share_a_base_class_and_builtin_types():
    assert issubclass(InvalidBoxError, LoRATError) and issubclass(InvalidBoxError, ValueError)
    assert issubclass(NotInitializedError, RuntimeError)


def test_box_partly_outside_is_valid(tracker, seq):
    w, h = seq.size_wh
    tracker.initialize(seq.frames[0], [w - 10, h - 10, 40, 40])
    box, _ = tracker.track(seq.frames[1])
    assert box[0] + box[2] <= w + 1e-9 and box[1] + box[3] <= h + 1e-9


def test_gray_and_rgba_are_converted(tracker, seq):
    rgb = seq.frames[0]
    gray = rgb[:, :, 1].copy()
    tracker.initialize(np.dstack([gray] * 3), seq.boxes[0, 0])
    expected = tracker.track(np.dstack([seq.frames[1][:, :, 1]] * 3)).box
    tracker.initialize(gray, seq.boxes[0, 0])
    np.testing.assert_array_equal(tracker.track(seq.frames[1][:, :, 1]).box, expected)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    tracker.initialize(rgba, seq.boxes[0, 0])
    rgba_box = tracker.track(np.dstack([seq.frames[1], np.zeros(rgb.shape[:2], np.uint8)])).box
    tracker.initialize(rgb, seq.boxes[0, 0])
    np.testing.assert_array_equal(tracker.track(seq.frames[1]).box, rgba_box)


def test_frame_size_change_warns_once_and_keeps_pixel_coordinates(tracker, seq):
    tracker.initialize(seq.frames[0], seq.boxes[0, 0])
    small = np.ascontiguousarray(seq.frames[1][:200, :300])
    with pytest.warns(FrameSizeWarning, match="300x200 differs from the first frame's 320x240"):
        box, _ = tracker.track(small)
    assert box[0] + box[2] <= 300 and box[1] + box[3] <= 200
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tracker.track(small)  # warned once only


def test_initialize_restarts_cleanly(tracker, seq):
    tracker.initialize(seq.frames[0], seq.boxes[0, 0])
    first = [tracker.track(f).box for f in seq.frames[1:4]]
    tracker.initialize(seq.frames[0], seq.boxes[0, 0])
    again = [tracker.track(f).box for f in seq.frames[1:4]]
    np.testing.assert_array_equal(first, again)


def test_several_targets_in_one_image_match_single_target_runs(tracker, seq):
    """One batched forward per frame for all targets; each behaves as if tracked alone."""
    singles = []
    for k in range(2):
        tracker.initialize(seq.frames[0], seq.boxes[k, 0])
        singles.append([tracker.track(f) for f in seq.frames[1:]])
    targets = [tracker.new_target(seq.frames[0], seq.boxes[k, 0]) for k in range(2)]
    batched = [tracker.step(targets, f) for f in seq.frames[1:]]
    for t, preds in enumerate(batched):
        for k in range(2):
            np.testing.assert_allclose(preds[k].box, singles[k][t].box, rtol=0, atol=1e-4)
            assert preds[k].score == pytest.approx(singles[k][t].score, abs=1e-5)


def test_step_with_one_image_per_target(tracker, seq):
    a = tracker.new_target(seq.frames[0], seq.boxes[0, 0])
    b = tracker.new_target(seq.frames[2], seq.boxes[1, 2])
    preds = tracker.step([a, b], [seq.frames[1], seq.frames[3]])
    assert len(preds) == 2
    with pytest.raises(InvalidImageError, match="2 targets"):
        tracker.step([a, b], [seq.frames[1]])
    assert tracker.step([], seq.frames[1]) == []


def test_unknown_variant_lists_the_choices(tiny_model):
    with pytest.raises(ConfigError, match="unknown variant 'B-999'.*B-224"):
        LoRATTracker.from_pretrained("B-999", weights=tiny_model.weights, backbone=tiny_model.backbone)


@pytest.mark.parametrize("device,precision,match", [
    ("tpu", "fp32", "unknown device"), ("cpu", "fp64", "unknown precision")])
def test_bad_device_or_precision(tiny_model, device, precision, match):
    with pytest.raises(ConfigError, match=match):
        tiny_model.tracker(device=device, precision=precision)


def test_bundled_configs():
    names = available_variants()
    for name in ("B-224", "B-378", "L-224", "L-378", "g-224", "g-378"):
        assert name in names
    cfg = load_config("L-378")
    assert (cfg.backbone.embed_dim, cfg.backbone.depth, cfg.template.size, cfg.search.size) == (1024, 24, 196, 378)
    assert (cfg.template_grid, cfg.search_grid, cfg.search.area_factor) == (14, 27, 5.0)
    g = load_config("g-224")
    assert g.backbone.ffn == "swiglu" and g.backbone.ffn_hidden == 4096
    assert load_config("B-224").lora.scaling == 1.0


def test_custom_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nbackbone: {embed_dim: 96, depth: 1, num_heads: 5}\n"
                   "template: {size: 112, area_factor: 2}\nsearch: {size: 220, area_factor: 4}\n")
    with pytest.raises(ConfigError, match="not divisible by num_heads.*220 is not a multiple"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_search_input_and_network_outputs_are_what_step_runs(tracker, seq):
    """The public seams the benchmarks time and compare the network through: the search input of a box
    is the crop step() feeds the network, and network_outputs is its forward."""
    import torch

    tracker.initialize(seq.frames[0], seq.boxes[0, 0])
    target = tracker.target
    before = target.box.copy()
    seen = []
    with tracker.recording_network_inputs(lambda z, x, m: seen.append((z.clone(), x.clone(), m.clone()))):
        tracker.track(seq.frames[1])
    (z, x, mask), = seen
    assert torch.equal(x, tracker.search_input(seq.frames[1], before, target))
    assert torch.equal(z, target.template[None]) and torch.equal(mask, target.mask[None])
    score_map, boxes = tracker.network_outputs(z, x, mask)
    assert score_map.shape[0] == 1 and boxes.shape[-1] == 4 and boxes.shape[0] == 1
    assert not torch.is_inference_mode_enabled()
