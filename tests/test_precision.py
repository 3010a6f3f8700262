"""Low-precision paths: bf16 weights stored once = plain autocast, fp32 untouched, boxes close to fp32;
the opt-in compile path falls back cleanly without CUDA."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from lorat_tracker import LoRATTracker
from lorat_tracker.cropping import nominal_crop_params, pixel_aligned_crop, search_crop_box
from lorat_tracker.errors import ConfigError
from lorat_tracker.demo import render_sequence
from lorat_tracker.runtime import CompileWarning, CudaGraphForward


@pytest.fixture(scope="module")
def fp32(tiny_model):
    return tiny_model.tracker(precision="fp32")


def _inputs(tracker, seq, frames=range(1, 6)):
    """Templates, masks and search crops exactly as step() builds them (from the ground-truth boxes)."""
    cfg = tracker.cfg
    size = cfg.search.size
    target = tracker.new_target(seq.frames[0], seq.boxes[0, 0])
    xs = []
    for t in frames:
        box = np.array([*seq.boxes[0, t, :2], *(seq.boxes[0, t, :2] + seq.boxes[0, t, 2:])])
        s, tr = nominal_crop_params(search_crop_box(box, cfg.tracking.min_object_size), cfg.search.area_factor,
                                    (size, size))
        xs.append(pixel_aligned_crop(seq.frames[t], s, tr, (size, size), target.fill)[0])
    n = len(xs)
    x = tracker._normalize(torch.stack(xs))
    return target.template.expand(n, -1, -1, -1), x, target.mask.expand(n, -1, -1)


def _iou(a, b):
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda v: (v[..., 2:] - v[..., :2]).prod(-1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_stored_low_precision_weights_equal_plain_autocast(fp32, precision):
    low = LoRATTracker(fp32.model, device="cpu", precision=precision)
    dtype = low.autocast_dtype
    assert low.model.blocks[0].attn.qkv.weight.dtype == dtype
    assert low.model.blocks[0].norm1.weight.dtype == torch.float32  # norms stay fp32 as autocast wants
    assert low.model.pos_embed is fp32.model.pos_embed  # shared, not copied
    # The source model is untouched: fp32 trackers built on it still run in fp32.
    assert all(p.dtype == torch.float32 for p in fp32.model.parameters())
    z, x, mask = _inputs(fp32, render_sequence(6, seed=2))
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype):
        expected = fp32.model(z, x, mask)  # fp32 weights, cast by autocast on every call
        got = low.model(z, x, mask)
    for e, g in zip(expected, got):
        assert torch.equal(e, g)


def test_bf16_outputs_close_to_fp32(fp32):
    """Per-cell boxes of bf16 vs fp32 on the same crops: mean IoU >= 0.98.

    Tracking IoU with the tiny model is not meaningful: its random weights do not track (fp32 vs the
    truth is ~0.14 IoU) and its score map is nearly flat, so bf16 rounding flips the argmax and the
    two runs wander apart (mean IoU ~0.5 measured). What rounding can be held to is the network's
    output: every cell's box, and the score logits, on identical inputs.
    """
    bf16 = LoRATTracker(fp32.model, device="cpu", precision="bf16")
    z, x, mask = _inputs(fp32, render_sequence(8, seed=5), frames=range(1, 8))
    with torch.inference_mode():
        s32, b32 = fp32.model(z, x, mask)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            s16, b16 = bf16.model(z, x, mask)
    assert s16.dtype == torch.float32 and b16.dtype == torch.float32
    cell_iou = _iou(b32, b16)
    assert cell_iou.mean() >= 0.98 and cell_iou.min() >= 0.9
    assert (torch.sigmoid(s32) - torch.sigmoid(s16)).abs().max() < 0.02
    # ... and bf16 is really in use (outputs differ from fp32).
    assert not torch.equal(b32, b16)


def test_bf16_tracks_through_the_public_api(fp32):
    seq = render_sequence(6, seed=3)
    bf16 = LoRATTracker(fp32.model, device="cpu", precision="bf16")
    bf16.initialize(seq.frames[0], seq.boxes[0, 0])
    for frame in seq.frames[1:]:
        pred = bf16.track(frame)
        assert np.all(np.isfinite(pred.box)) and pred.box[2] > 0 and 0 <= pred.score <= 1


def test_fp32_is_unaffected_by_a_low_precision_sibling(fp32, tiny_model):
    seq = render_sequence(5, seed=4)

    def boxes(tr):
        tr.initialize(seq.frames[0], seq.boxes[0, 0])
        return np.array([tr.track(f).box for f in seq.frames[1:]])

    before = boxes(fp32)
    LoRATTracker(fp32.model, device="cpu", precision="bf16")
    np.testing.assert_array_equal(boxes(fp32), before)
    np.testing.assert_array_equal(boxes(tiny_model.tracker(precision="fp32")), before)


@pytest.mark.parametrize("mode", [True, "cudagraph", "inductor"])
def test_compile_without_cuda_warns_and_runs_eagerly(fp32, tiny_model, mode):
    seq = render_sequence(4, seed=6)
    with pytest.warns(CompileWarning, match="needs a CUDA device"):
        compiled = tiny_model.tracker(precision="fp32", compile=mode)
    for tr in (fp32, compiled):
        tr.initialize(seq.frames[0], seq.boxes[0, 0])
    for frame in seq.frames[1:]:
        a, b = fp32.track(frame), compiled.track(frame)
        np.testing.assert_array_equal(a.box, b.box)


def test_unknown_compile_mode_is_a_config_error(tiny_model):
    with pytest.raises(ConfigError, match="compile mode"):
        tiny_model.tracker(compile="fast")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny_model.tracker(compile=False)  # the default never warns


def test_cuda_graph_capture_failure_falls_back_to_eager(fp32):
    """Where a graph cannot be captured (here: CPU tensors) the forward warns once and stays exact."""
    graphed = CudaGraphForward(fp32.model)
    z, x, mask = _inputs(fp32, render_sequence(3, seed=8), frames=range(1, 3))
    with torch.inference_mode():
        expected = fp32.model(z, x, mask)
        with pytest.warns(CompileWarning, match="capture failed"):
            first = graphed(z, x, mask)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            second = graphed(z, x, mask)
    for e, a, b in zip(expected, first, second):
        assert torch.equal(e, a) and torch.equal(e, b)
