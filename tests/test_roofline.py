"""The GEMM floor (lorat_tracker/roofline.py), the bf16 warning where a CPU has no bf16 units, and
`lorat bench`. Speeds are measured in benchmarks/, not asserted here."""
from __future__ import annotations

import json
import warnings

import pytest
import torch

from conftest import fp32_box_bound
from run_cli import run_lorat

from lorat_tracker import roofline
from lorat_tracker.config import load_config
from lorat_tracker.model import LoRATModel
from lorat_tracker.runtime import SlowPrecisionWarning


@pytest.mark.parametrize("variant", ["tiny-mlp-224", "tiny-swiglu-378"])
def test_frame_flops_are_what_torch_counts(variant):
    """Every matrix product of a real forward, counted by torch's FlopCounterMode, is in frame_flops (the
    math attention path: the counter does not see inside the CPU's fused SDPA kernel)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    cfg = load_config(variant)
    model = LoRATModel(cfg).eval()
    z = torch.zeros(1, 3, cfg.template.size, cfg.template.size)
    x = torch.zeros(1, 3, cfg.search.size, cfg.search.size)
    mask = torch.zeros(1, cfg.template_grid ** 2, dtype=torch.long)
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode(), sdpa_kernel(SDPBackend.MATH):
        model(z, x, mask)
    assert roofline.frame_flops(cfg).total * 1e9 == pytest.approx(counter.get_total_flops(), rel=1e-9)


def test_b224_is_58_gflop_a_frame():
    flops = roofline.frame_flops(load_config("B-224"))
    assert flops.total - flops.embed_and_head == pytest.approx(58.1, abs=0.05)  # the blocks: issue 20's 58
    assert flops.total == pytest.approx(59.6, abs=0.05)
    assert flops.fc1 == flops.fc2 and flops.qkv == 3 * flops.proj
    assert roofline.frame_flops(load_config("B-224"), batch=8).total == pytest.approx(8 * flops.total)


def test_floor_is_the_flops_at_the_measured_rate():
    cfg = load_config("tiny-mlp-224")
    f = roofline.floor(cfg, "fp32", seconds=0.05)
    assert f.rate > 0 and f.ms == pytest.approx(f.gflop / f.rate * 1e3)
    assert f.rate == max(f.rates.values()) and f.rates[f.library] == f.rate and "torch" in f.rates
    assert f.times(2 * f.ms) == pytest.approx(2.0)
    rates = roofline.shape_rate(cfg, seconds=0.05)
    assert set(rates) == {"qkv", "proj", "fc1", "fc2", "attention", "all"} and min(rates.values()) > 0


def test_the_probe_samples_the_floor_of_the_moment_and_frames_pair_with_it():
    cfg = load_config("tiny-mlp-224")
    probe = roofline.FloorProbe.of(cfg, "fp32")
    assert probe.floor.library in probe.floor.rates and probe.floor.precision == "fp32"
    samples = [probe.sample() for _ in range(3)]
    # The same product and FLOPs as the floor: a sample is that floor at the moment's rate (within what a
    # shared host does to one product in a few seconds).
    assert all(probe.floor.ms / 3 < ms < probe.floor.ms * 3 for ms in samples), (samples, probe.floor.ms)
    # Each frame is divided by its own floor sample, then the median: a slow moment slows both.
    assert roofline.x_of_floor([10, 20, 300], [5, 40, 100]) == pytest.approx(2.0)  # ratios 2, 0.5, 3
    # (median / median would say 20 / 40 = 0.5)
    if not roofline.has_int8_units():
        assert roofline.FloorProbe.of(cfg, "int8") is None


def test_bf16_on_a_cpu_without_bf16_units_warns_with_the_cost(monkeypatch, tiny_model):
    monkeypatch.setattr(roofline, "has_bf16_units", lambda: False)
    with pytest.warns(SlowPrecisionWarning, match=r"bf16 on this CPU .* emulated: about 7x slower than fp32"):
        tiny_model.tracker(precision="bf16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny_model.tracker(precision="fp32")
        monkeypatch.setattr(roofline, "has_bf16_units", lambda: True)
        tiny_model.tracker(precision="bf16")


def test_sam_masks_in_bf16_on_a_cpu_without_bf16_units_warn_too(monkeypatch):
    import tiny_sam

    from lorat_tracker.segmentation import BoxToMask

    monkeypatch.setattr(roofline, "has_bf16_units", lambda: False)
    with pytest.warns(SlowPrecisionWarning, match=r"bf16 on this CPU .* emulated"):
        BoxToMask(tiny_sam.build(), device="cpu", precision="bf16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BoxToMask(tiny_sam.build(), device="cpu", precision="fp32")


def test_the_command_line_prints_the_project_warnings_as_one_line(monkeypatch):
    import lorat_tracker.cli as cli

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # restored afterwards
    cli._one_line_warnings()
    cli._one_line_warnings()  # once only: not wrapped twice
    assert warnings.formatwarning(SlowPrecisionWarning("slow here"), SlowPrecisionWarning, "x.py", 1) == \
        "lorat: warning: slow here\n"
    assert "x.py:1: UserWarning: theirs" in warnings.formatwarning(UserWarning("theirs"), UserWarning, "x.py", 1)


@pytest.mark.slow
def test_lorat_bench_times_and_advises(tmp_path):
    out = tmp_path / "bench.json"
    proc = run_lorat("bench", "--variant", "tiny-mlp-224", "--frames", "2", "--backends", "torch",
                     "--json", str(out), timeout=300)  # docs/cli.md's example runs onnxruntime too
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {(r["backend"], r["precision"], r["compile"]): r for r in report["rows"]}
    assert set(rows) == {("torch", "fp32", None), ("torch", "fp32", "onednn"), ("torch", "bf16", None)}
    fp32 = rows[("torch", "fp32", None)]
    assert fp32["ms_per_frame"] > 0 and fp32["x_of_floor"] > 0 and fp32["max_box_dev_px"] == 0
    onednn = rows[("torch", "fp32", "onednn")]
    assert onednn["skipped"] or onednn["exact"], onednn  # fp32 again, summed in another order
    if roofline.has_bf16_units():
        assert rows[("torch", "bf16", None)]["ms_per_frame"] > 0
    else:
        assert "no bf16 units" in rows[("torch", "bf16", None)]["skipped"]
    assert "x of floor" in proc.stdout and "exact boxes" in proc.stdout and "use --backend" in proc.stdout


@pytest.mark.slow
def test_lorat_bench_without_torch_still_compares_with_torch_fp32(tmp_path):
    out = tmp_path / "bench.json"
    proc = run_lorat("bench", "--variant", "tiny-mlp-224", "--frames", "2", "--backends", "onnxruntime",
                     "--json", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["backend"] == "onnxruntime" and row["exact"] and row["max_box_dev_px"] <= 1e-4
    assert "exact (max" in proc.stdout and "use --backend onnxruntime" in proc.stdout


def test_lorat_bench_refuses_an_unknown_backend():
    proc = run_lorat("bench", "--backends", "torch,tensorflow")
    assert proc.returncode == 2 and "tensorflow" in proc.stderr and "Traceback" not in proc.stderr


def test_onednn_linears_agree_with_the_default_fp32_path_to_rounding():
    """compile="onednn" (prepacked oneDNN Linear layers, CPU fp32) on every reference case: the default fp32
    path's boxes to rounding (``conftest.fp32_box_bound``: 1e-4 px, or 16 ulps of the search region), and
    the official pipeline's within the official tolerance."""
    from lorat_tracker import LoRATTracker
    from lorat_tracker.constants import TOLERANCE_PX
    from lorat_tracker.selftest import reference_cases, run_case

    if not torch.backends.mkldnn.is_available():
        pytest.skip("this torch build has no oneDNN")
    trackers = {}
    worst = 0.0
    for case in reference_cases():
        if case.variant not in trackers:
            trackers[case.variant] = [LoRATTracker.from_pretrained(case.variant, weights=case.weights,
                                                                   backbone=case.backbone, device="cpu",
                                                                   precision="fp32", compile=mode)
                                      for mode in (False, "onednn")]
        default, onednn = (run_case(t, case) for t in trackers[case.variant])
        worst = max(worst, float(abs(onednn[0] - default[0]).max()))
        bound = fp32_box_bound(default[0], trackers[case.variant][0].cfg.search.area_factor)  # conftest.py
        assert (abs(onednn[0] - default[0]).max(axis=1) <= bound).all(), (case.variant, worst)
        assert abs(onednn[0] - case.boxes).max() <= TOLERANCE_PX
    assert any(type(m).__name__ == "MkldnnLinear" for m in trackers[case.variant][1]._forward.modules())


def test_onednn_elsewhere_warns_and_runs_eagerly(tiny_model):
    from lorat_tracker.runtime import CompileWarning

    with pytest.warns(CompileWarning, match="compile mode onednn is for fp32 on a CPU"):
        tracker = tiny_model.tracker(precision="bf16", compile="onednn")
    assert tracker._forward is tracker.model
