"""Training core (issue 10): the training model, the criterion and the optimisation step against the
official trainer's numbers (tests/fixtures/training-step, tests/fixtures/training-loss), the
released weight format, the schedule, and bad input.
"""
from __future__ import annotations

import hashlib
import json
import math
import os

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from conftest import FIXTURES
from lorat_tracker.boxes import rasterize
from lorat_tracker.errors import ConfigError, LoRATError, WeightsError
from lorat_tracker.selftest import DATA_DIR
from lorat_tracker.training import (LoRATCriterion, TrainStep, build_optimizer, build_scheduler,
                                    build_training_model, reduce_num_pos, save_lorat_bin)
from lorat_tracker.training.model import LinearWithLoRA, subset_drop_residual

STEP_DIR = FIXTURES / "training-step"
LOSS_DIR = FIXTURES / "training-loss"
STEP_SETS = {"tiny-mlp-224": "tiny-mlp", "tiny-swiglu-378": "tiny-swiglu"}
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _files(model: str):
    return DATA_DIR / model / "backbone.pth", DATA_DIR / model / "lorat.bin"


def _build(variant: str, **kwargs):
    backbone, weights = _files(STEP_SETS.get(variant, variant.rsplit("-", 1)[0]))
    kwargs.setdefault("weights", weights)
    return build_training_model(variant, backbone=backbone, **kwargs)


def _batch(fixture: str):
    """The fixture's batch as the training data pipeline delivers it (the official float inputs)."""
    inp = load_file(STEP_DIR / fixture / "inputs.safetensors")
    z = (inp["z_u8"].float() / 255 - MEAN) / STD
    x = (inp["x_u8"].float() / 255 - MEAN) / STD
    n, grid = x.shape[0], x.shape[-1] // 14
    mask = torch.zeros(n, grid * grid, dtype=torch.bool)
    mask[inp["label_positive_sample_batch_dim_indices"], inp["label_positive_sample_map_dim_indices"]] = True
    return {"z": z, "x": x, "z_feat_mask": inp["z_feat_mask"], "positive_mask": mask.view(n, grid, grid),
            "label_boxes": inp["label_boxes"]}


def _step_json(fixture: str) -> dict:
    return json.loads((STEP_DIR / fixture / "step.json").read_text())


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


# ------------------------------------------------------------------------------------ model layout

@pytest.mark.parametrize("fixture", sorted(STEP_SETS))
def test_bundled_models_are_the_fixture_models(fixture):
    """The step fixtures were made with these exact backbone.pth / lorat.bin files."""
    expected = _step_json(fixture)["model_files_sha256"]
    for name, digest in expected.items():
        path = DATA_DIR / STEP_SETS[fixture] / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, path


@pytest.mark.parametrize("fixture", sorted(STEP_SETS))
def test_training_model_holds_the_official_trainable_set(fixture):
    model = _build(fixture)
    info = _step_json(fixture)
    released = load_file(_files(STEP_SETS[fixture])[1])
    trainable = model.trainable_state_dict()
    # Same names (official, incl. ViT-g's w12/w3), shapes and values as the released file.
    assert set(trainable) == set(released) - {"lora_alpha", "use_rslora"}
    for k, v in trainable.items():
        assert torch.equal(v, released[k]), k
        assert list(v.shape) == info["params"][k]["shape"], k
    # Only those are trained; the backbone (incl. the split q/k/v and every .linear) is frozen.
    for name, p in model.named_parameters():
        assert p.requires_grad == (name == "token_type_embed" or name.startswith("head.") or ".lora." in name), name
    expected_count = {"tiny-mlp-224": 79_493, "tiny-swiglu-378": 65_669}[fixture]
    assert sum(p.numel() for _, p in model.named_trainable_parameters()) == expected_count
    # Training-build state dict layout (reference 2.6a, B-224: 380 = 4 + 12 x 30 + 2 + 12 + the 2 meta keys,
    # which we keep out of the module state and write only into lorat.bin).
    depth = model.cfg.backbone.depth
    keys = list(model.state_dict())
    assert len(keys) == 4 + 30 * depth + 2 + 12
    assert "blocks.0.attn.qkv.q.linear.weight" in keys and "blocks.0.attn.qkv.weight" not in keys
    assert model.blocks[0].attn.qkv.q.lora.scaling == released["lora_alpha"].item() / 8


def test_lora_adapter_equals_peft():
    """Our hand-written adapter computes what peft's LoRA layer computes on the same A and B."""
    import copy

    from peft import LoraConfig, inject_adapter_in_model

    torch.manual_seed(0)
    for rslora in (False, True):
        base = torch.nn.Linear(24, 40)
        ours = LinearWithLoRA(copy.deepcopy(base), r=4, alpha=8, use_rslora=rslora)
        torch.nn.init.normal_(ours.lora.A, std=0.1)
        torch.nn.init.normal_(ours.lora.B, std=0.1)
        holder = torch.nn.Module()
        holder.layer = copy.deepcopy(base)
        inject_adapter_in_model(LoraConfig(r=4, lora_alpha=8, use_rslora=rslora, target_modules=["layer"]), holder)
        with torch.no_grad():
            holder.layer.lora_A["default"].weight.copy_(ours.lora.A)
            holder.layer.lora_B["default"].weight.copy_(ours.lora.B)
        x = torch.randn(3, 7, 24)
        torch.testing.assert_close(ours(x), holder.layer(x), rtol=0, atol=1e-6)
        assert (ours(x) - base(x)).abs().max() > 1e-3          # the adapter contributes


# ------------------------------------------------------------------------------ the official step

@pytest.mark.parametrize("fixture", sorted(STEP_SETS))
def test_training_step_equals_official(fixture):
    """Forward in training mode, loss, gradients, grad norm, clipping and two AdamW steps, as the
    official trainer (tolerances of tests/fixtures/training-step/README.md)."""
    d = STEP_DIR / fixture
    info = _step_json(fixture)
    batch = _batch(fixture)
    model = _build(fixture)
    criterion = LoRATCriterion()

    # Step 1 in pieces: outputs, loss, gradients.
    model.train()
    score_map, boxes = model(batch["z"], batch["x"], batch["z_feat_mask"])
    out = load_file(d / "outputs-step1.safetensors")
    torch.testing.assert_close(score_map, out["step1_score_map"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(boxes, out["step1_boxes"], rtol=1e-5, atol=1e-6)
    loss, metrics = criterion(score_map, boxes, batch["positive_mask"], batch["label_boxes"])
    for k, v in info["steps"][0]["metrics"].items():
        assert _rel(metrics[k], v) < 1e-5, (k, metrics[k], v)
    loss.backward()
    grads = load_file(d / "grads-step1.safetensors")
    named = dict(model.named_trainable_parameters())
    assert set(named) == set(grads)
    for k, g in grads.items():
        assert (named[k].grad - g).abs().max() <= 1e-4 * g.abs().max(), k
    model.zero_grad(set_to_none=True)

    # The parameter groups hold exactly the official names, in optimizer order.
    optimizer = build_optimizer(model, lr=1e-4, weight_decay=0.1)
    assert [g["param_names"] for g in optimizer.param_groups] == [g["params"] for g in info["optimizer"]["groups"]]
    official_groups = info["optimizer"]["groups"]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [g["weight_decay"] for g in official_groups]
    assert sum((g["param_names"] for g in optimizer.param_groups), []) == info["param_order"]

    # Two whole steps through TrainStep (clip 1.0, AdamW, zero_grad(set_to_none)).
    step = TrainStep(model, criterion, optimizer, precision="fp32", device="cpu")
    for k in (1, 2):
        result = step(batch)
        ref = info["steps"][k - 1]
        assert _rel(result["loss"], ref["loss"]) < 1e-5
        assert _rel(result["Loss/bce"], ref["metrics"]["Loss/bce"]) < 1e-5
        assert _rel(result["Loss/iou"], ref["metrics"]["Loss/iou"]) < 1e-5
        assert _rel(result["grad_norm"], ref["grad_norm_before_clip"]) < 1e-5
        assert result["num_pos"] == info["num_positive_samples"]
        expected = load_file(d / f"params-step{k}.safetensors")
        params = model.trainable_state_dict()
        for name, v in expected.items():
            assert (params[name] - v).abs().max() <= 2e-6, (k, name)
        assert all(p.grad is None for p in model.parameters())


def test_gradient_accumulation_equals_the_whole_batch():
    """Two micro-batches normalised by the whole batch's positive count = one step on the batch."""
    batch = _batch("tiny-mlp-224")
    results, params = [], []
    for accumulation in (1, 2):
        model = _build("tiny-mlp-224")
        step = TrainStep(model, LoRATCriterion(), build_optimizer(model), accumulation=accumulation)
        results.append(step(batch))
        params.append(model.trainable_state_dict())
    for k in ("loss", "Loss/bce", "Loss/iou", "grad_norm"):
        assert _rel(results[1][k], results[0][k]) < 1e-5, k
    for name in params[0]:
        assert (params[1][name] - params[0][name]).abs().max() <= 2e-6, name
    with pytest.raises(ConfigError, match="accumulation"):
        TrainStep(model, LoRATCriterion(), build_optimizer(model), accumulation=5)(batch)


def test_bf16_autocast_step_on_cpu_and_fp16_needs_a_gpu():
    batch = _batch("tiny-mlp-224")
    model = _build("tiny-mlp-224")
    before = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    result = TrainStep(model, LoRATCriterion(), build_optimizer(model), precision="bf16")(batch)
    ref = _step_json("tiny-mlp-224")["steps"][0]
    assert _rel(result["loss"], ref["loss"]) < 2e-2          # bf16 has 8 mantissa bits
    assert _rel(result["grad_norm"], ref["grad_norm_before_clip"]) < 5e-2
    assert all(p.dtype == torch.float32 for _, p in model.named_trainable_parameters())  # fp32 master weights
    moved = max((v - before[k]).abs().max().item() for k, v in model.trainable_state_dict().items())
    assert 5e-5 < moved < 2e-4                              # one AdamW step of lr 1e-4
    with pytest.raises(ConfigError, match="fp16"):
        TrainStep(model, LoRATCriterion(), build_optimizer(model), precision="fp16", device="cpu")
    with pytest.raises(ConfigError, match="precision"):
        TrainStep(model, LoRATCriterion(), build_optimizer(model), precision="fp8")


def test_fp16_grad_scaler_path_unscales_clips_and_skips_overflow():
    """The official CUDA recipe (fp16 autocast + GradScaler), run on CPU as a stand-in (no GPU in CI):
    gradients are unscaled before clipping, and an overflowing step is skipped with the scale halved."""
    batch = _batch("tiny-mlp-224")
    model = _build("tiny-mlp-224")
    step = TrainStep(model, LoRATCriterion(), build_optimizer(model))
    step.autocast_dtype = torch.float16                      # what precision="fp16" selects on CUDA
    # (torch's default initial scale 65536 overflows on this batch: a skipped first step, as on GPU)
    step.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    ref = _step_json("tiny-mlp-224")["steps"][0]
    before = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    result = step(batch)
    assert result["skipped"] == 0 and result["loss_scale"] == 1024.0
    assert _rel(result["loss"], ref["loss"]) < 1e-3
    assert _rel(result["grad_norm"], ref["grad_norm_before_clip"]) < 1e-2   # unscaled before clipping
    expected = load_file(STEP_DIR / "tiny-mlp-224" / "params-step1.safetensors")
    after = model.trainable_state_dict()
    # Adam moves every entry by ~lr = 1e-4 whatever its gradient's size, so entries with tiny gradients
    # may move differently under fp16; nearly all must land where the fp32 official step put them.
    dev = torch.cat([(after[k] - expected[k]).abs().flatten() for k in expected])
    assert (dev < 1e-5).float().mean() > 0.99 and dev.max() <= 2.5e-4
    step.scaler.update(new_scale=2.0 ** 40)                  # fp16 activations' gradients overflow
    frozen = {k: v.clone() for k, v in after.items()}
    result = step(batch)
    assert result["skipped"] == 1 and result["loss_scale"] == 2.0 ** 39
    assert all(torch.equal(v, frozen[k]) for k, v in model.trainable_state_dict().items())
    assert step.state_dict()["scaler"]["scale"] == 2.0 ** 39
    assert any(not torch.equal(frozen[k], before[k]) for k in before)


def test_gradient_checkpointing_and_drop_path():
    batch = _batch("tiny-swiglu-378")
    grads = []
    for ckpt in (False, True):   # with ViT-g's subset drop path: the recomputation replays the same draws
        model = _build("tiny-swiglu-378", grad_checkpointing=ckpt, drop_path=0.4)
        model.train()
        torch.manual_seed(1)
        score_map, boxes = model(batch["z"], batch["x"], batch["z_feat_mask"])
        LoRATCriterion()(score_map, boxes, batch["positive_mask"], batch["label_boxes"])[0].backward()
        grads.append({k: p.grad.clone() for k, p in model.named_trainable_parameters()})
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=0, atol=1e-7)

    # Variant rates (official: B 0, L 0.1, g 0.4); DINOv2's subset rule above 0.1.
    from lorat_tracker.config import load_config
    assert [load_config(v).backbone.drop_path for v in ("B-224", "L-378", "g-224")] == [0.0, 0.1, 0.4]
    x = torch.zeros(5, 3, 2)
    out = subset_drop_residual(x, lambda t: torch.ones_like(t), rate=0.4)
    per_sample = out[:, 0, 0]
    assert sorted(per_sample.tolist()) == pytest.approx([0, 0, 5 / 3, 5 / 3, 5 / 3])  # 3 of 5 kept, x5/3
    assert torch.all(out == per_sample.view(5, 1, 1))
    # Only in train mode: an eval forward with drop path 0.4 equals the model without it.
    plain = _build("tiny-swiglu-378").eval()
    dropping = _build("tiny-swiglu-378", drop_path=0.4)
    args = (batch["z"], batch["x"], batch["z_feat_mask"])
    with torch.no_grad():
        torch.testing.assert_close(dropping.eval()(*args)[0], plain(*args)[0], rtol=0, atol=0)
        torch.manual_seed(0)
        assert not torch.allclose(dropping.train()(*args)[0], plain(*args)[0])


# ----------------------------------------------------------------------------------------- criterion

@pytest.mark.parametrize("geometry", ["224", "378"])
def test_criterion_equals_official_loss(geometry):
    golden = json.loads((LOSS_DIR / "loss-golden.json").read_text())[geometry]
    inputs = load_file(LOSS_DIR / f"loss-inputs-{geometry}.safetensors")
    gw, gh = golden["grid_wh"]
    sw, sh = golden["search_size_wh"]
    gt = np.asarray(golden["gt_boxes_xyxy_crop_px"], dtype=np.float64)
    # Positive cells: every cell the box touches (scaled by grid / size in float64, rasterized).
    mask = np.zeros((len(gt), gh, gw), dtype=bool)
    for n, box in enumerate(gt):
        x1, y1, x2, y2 = rasterize(box * np.array([gw / sw, gh / sh, gw / sw, gh / sh]))
        mask[n, y1:y2, x1:x2] = True
    assert [np.flatnonzero(m).tolist() for m in mask] == golden["positive_cells"]
    label_boxes = torch.from_numpy(gt / np.array([sw, sh, sw, sh])).float()
    loss, metrics = LoRATCriterion()(inputs["score_map"], inputs["pred_boxes"], torch.from_numpy(mask), label_boxes)
    assert _rel(loss.item(), golden["loss_total"]) < 1e-5
    assert _rel(metrics["loss"], golden["loss_total"]) < 1e-5
    for k, v in golden["metrics"].items():
        assert _rel(metrics[k], v) < 1e-5, k


def test_num_pos_is_the_mean_over_ranks(monkeypatch):
    """Under torch.distributed each rank divides by the all-reduced mean count (clamped >= 1)."""
    other_rank = {"count": 30.0}

    def fake_all_reduce(t, op=None):
        t += other_rank["count"]

    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "all_reduce", fake_all_reduce)
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[0, :2, :2] = True
    mask[1, 1:4, 1:3] = True                                    # 4 + 6 = 10 local positives
    assert reduce_num_pos(mask).item() == 20.0                  # (10 + 30) / 2
    other_rank["count"] = 0.0
    assert reduce_num_pos(torch.zeros(1, 4, 4, dtype=torch.bool)).item() == 1.0   # clamped
    # The criterion uses the reduced count: twice the local count halves the loss.
    other_rank["count"] = 30.0                                  # mean 20 = twice the local count
    torch.manual_seed(0)
    score_map, boxes = torch.randn(2, 4, 4), torch.rand(2, 4, 4, 4)
    labels = torch.tensor([[0.1, 0.1, 0.5, 0.5], [0.3, 0.3, 0.7, 0.8]])
    reduced = LoRATCriterion()(score_map, boxes, mask, labels)[0]
    other_rank["count"] = 10.0                                  # mean = local count
    local = LoRATCriterion()(score_map, boxes, mask, labels)[0]
    torch.testing.assert_close(reduced * 2, local)


# ------------------------------------------------------------------------------------------ schedule

def _official_lr(t: int) -> float:
    """Closed form of the official run (reference 4.7) for scheduler index t."""
    if t < 2048:
        return 1e-7 + t * (1e-4 - 1e-7) / 2048
    return 1e-6 + 0.5 * (1e-4 - 1e-6) * (1 + math.cos(math.pi * (t - 2048) / 174_080))


def test_lr_schedule_is_the_official_run():
    from timm.scheduler import CosineLRScheduler

    ours_opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    ref_opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    sched = build_scheduler(ours_opt, epochs=170, iters_per_epoch=1024)
    ref = CosineLRScheduler(ref_opt, t_initial=170 * 1024, lr_min=1e-6, warmup_t=2 * 1024, warmup_lr_init=1e-7,
                            warmup_prefix=True, t_in_epochs=False)
    lr = lambda opt: opt.param_groups[0]["lr"]  # noqa: E731
    assert lr(ours_opt) == 1e-7                      # step 0
    sched.step_update(0)
    assert lr(ours_opt) == 1e-7                      # step 1 (stepped with the index of the step just taken)
    for t in (1, 1000, 2047, 2048, 2049, 50_000, 100_000, 174_078):
        sched.step_update(t)
        ref.step_update(t)
        assert lr(ours_opt) == lr(ref_opt), t
        assert lr(ours_opt) == pytest.approx(_official_lr(t), rel=1e-12, abs=1e-18), t
    assert lr(ours_opt) == pytest.approx(1.034e-6, rel=1e-3)   # the last step (174,079) of the run
    with pytest.raises(ConfigError):
        build_scheduler(ours_opt, epochs=0, iters_per_epoch=1024)


# ----------------------------------------------------------------------------------- released format

def test_save_lorat_bin_is_the_released_format_and_loads_for_tracking(tmp_path):
    from lorat_tracker import LoRATTracker
    from lorat_tracker.model import LoRATModel
    from lorat_tracker.weights import convert_backbone, read_weights_file
    from lorat_tracker.selftest import reference_cases, run_case

    backbone, released = _files("tiny-mlp")
    model = _build("tiny-mlp-224")
    TrainStep(model, LoRATCriterion(), build_optimizer(model))(_batch("tiny-mlp-224"))  # now differs from `released`
    out = tmp_path / "run" / "lorat.bin"
    old_umask = os.umask(0o027)
    try:
        save_lorat_bin(model, out)
    finally:
        os.umask(old_umask)
    assert os.stat(out).st_mode & 0o777 == 0o640                   # 0o666 & ~umask, not mkstemp's 0600
    assert os.listdir(out.parent) == ["lorat.bin"]                 # no temporary file left behind

    # Same keys, dtypes, shapes and meta tensors as a released file; no metadata header.
    with safe_open(out, "pt") as f, safe_open(released, "pt") as g:
        assert f.metadata() == g.metadata()
        assert sorted(f.keys()) == sorted(g.keys())
        for k in g.keys():
            a, b = f.get_tensor(k), g.get_tensor(k)
            assert (a.dtype, a.shape) == (b.dtype, b.shape), k
        assert f.get_tensor("lora_alpha").item() == 16 and f.get_tensor("use_rslora").item() is False
        saved = {k: f.get_tensor(k) for k in f.keys()}
    for k, v in model.trainable_state_dict().items():
        assert torch.equal(saved[k], v), k

    # Loaded by from_pretrained == LoRA merged by hand (W + B A * alpha / r, q/k/v rows of qkv).
    cfg = model.cfg
    state = convert_backbone(read_weights_file(backbone).tensors, cfg)
    d, scaling = cfg.backbone.embed_dim, 16 / 8
    for n in range(cfg.backbone.depth):
        p = f"blocks.{n}"
        qkv = state[f"{p}.attn.qkv.weight"].clone()
        for i, part in enumerate("qkv"):
            a, b = saved[f"{p}.attn.qkv.{part}.lora.A"], saved[f"{p}.attn.qkv.{part}.lora.B"]
            qkv[i * d:(i + 1) * d] += b @ a * scaling
        state[f"{p}.attn.qkv.weight"] = qkv
        for name in ("attn.proj", "mlp.fc1", "mlp.fc2"):
            state[f"{p}.{name}.weight"] = (state[f"{p}.{name}.weight"]
                                          + saved[f"{p}.{name}.lora.B"] @ saved[f"{p}.{name}.lora.A"] * scaling)
    state.update({k: v for k, v in saved.items() if k == "token_type_embed" or k.startswith("head.")})
    by_hand = LoRATModel(cfg)
    by_hand.load_state_dict(state)
    by_hand.head.reset_buffers()
    case = next(c for c in reference_cases() if c.variant == "tiny-mlp-224")
    boxes_hand, _ = run_case(LoRATTracker(by_hand.eval(), device="cpu", precision="fp32"), case)
    tracker = LoRATTracker.from_pretrained("tiny-mlp-224", weights=out, backbone=backbone, device="cpu",
                                           precision="fp32")
    boxes_loaded, _ = run_case(tracker, case)
    np.testing.assert_allclose(boxes_loaded, boxes_hand, rtol=0, atol=1e-3)
    # And the training model's own merge (weights.merge_lora) gives the unmerged forward's outputs.
    batch = _batch("tiny-mlp-224")
    args = (batch["z"], batch["x"], batch["z_feat_mask"])
    merged = model.merged_model()
    with torch.no_grad():
        merged_out, unmerged_out = merged(*args), model.eval()(*args)
        for a, b in zip(merged_out, unmerged_out):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)    # float32 rounding (measured 1.5e-7)
        model.head.cls_mlp.layers[2].bias += 1.0                   # training goes on ...
        assert torch.equal(merged(*args)[0], merged_out[0])        # ... the merged snapshot does not change


def test_released_file_round_trips_and_full_unmerged_loads(tmp_path):
    model = _build("tiny-swiglu-378")
    save_lorat_bin(model, tmp_path / "lorat.bin")
    released = load_file(_files("tiny-swiglu")[1])
    again = load_file(tmp_path / "lorat.bin")
    assert set(again) == set(released)
    for k in released:
        assert again[k].dtype == released[k].dtype and torch.equal(again[k], released[k]), k
    # A full unmerged state dict (official names + meta) needs no backbone file.
    full = {model.official_name(k): v.contiguous() for k, v in model.state_dict().items()}
    full.update(model.lora_meta())
    save_file(full, str(tmp_path / "full.safetensors"))
    rebuilt = build_training_model("tiny-swiglu-378", weights=tmp_path / "full.safetensors")
    for (k, a), (k2, b) in zip(model.state_dict().items(), rebuilt.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k


def test_load_trainable_state_dict_in_place():
    """Resume: trained tensors go into the live parameters (the optimizer keeps them); a file of
    another variant or LoRA setting is refused and leaves the model as it was."""
    model = _build("tiny-mlp-224", weights=None, seed=0)
    optimizer = build_optimizer(model)
    released = load_file(_files("tiny-mlp")[1])
    model.load_trainable_state_dict(released, source="lorat.bin")
    for k, v in model.trainable_state_dict().items():
        assert torch.equal(v, released[k]), k
    assert optimizer.param_groups[2]["params"][0] is model.token_type_embed
    before = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    wrong_alpha = dict(released, lora_alpha=torch.tensor(8))
    with pytest.raises(WeightsError, match="lora_alpha"):
        model.load_trainable_state_dict(wrong_alpha)
    with pytest.raises(WeightsError, match="missing"):
        other = load_file(_files("tiny-swiglu")[1])
        model.load_trainable_state_dict({k: v for k, v in other.items() if k not in ("lora_alpha", "use_rslora")})
    assert all(torch.equal(v, before[k]) for k, v in model.trainable_state_dict().items())


def test_official_initialisation_without_weights():
    a = _build("tiny-mlp-224", weights=None, seed=3)
    b = _build("tiny-mlp-224", weights=None, seed=3)
    c = _build("tiny-mlp-224", weights=None, seed=4)
    sa, sb, sc = a.trainable_state_dict(), b.trainable_state_dict(), c.trainable_state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["blocks.0.attn.qkv.q.lora.A"], sc["blocks.0.attn.qkv.q.lora.A"])
    lora_a = torch.cat([v.flatten() for k, v in sa.items() if k.endswith(".lora.A")])
    lora_b = torch.cat([v.flatten() for k, v in sa.items() if k.endswith(".lora.B")])
    for values in (lora_a, lora_b, sa["head.reg_mlp.layers.0.weight"].flatten()):
        # trunc-normal std 0.02 with absolute bounds +-2 (timm/torch defaults: effectively a plain normal)
        assert abs(values.std().item() - 0.02) < 2e-3 and abs(values.mean().item()) < 2e-3
    assert all(torch.count_nonzero(v) == 0 for k, v in sa.items() if k.startswith("head.") and k.endswith(".bias"))
    assert a.cfg.lora.r == 8 and a.cfg.lora.alpha == 16          # the variant's LoRA without a weights file
    r4 = _build("tiny-mlp-224", weights=None, rank=4, alpha=4, rslora=True)
    assert r4.trainable_state_dict()["blocks.0.mlp.fc1.lora.A"].shape == (4, 96)
    assert r4.blocks[0].mlp.fc1.lora.scaling == 4 / 2              # rsLoRA: alpha / sqrt(r)
    assert r4.lora_meta()["use_rslora"].item() is True


# --------------------------------------------------------------------------------------- bad input

def test_bad_weights_raise_typed_errors(tmp_path):
    mlp_backbone, mlp_lora = _files("tiny-mlp")
    swiglu_backbone, swiglu_lora = _files("tiny-swiglu")
    cases = [
        (dict(variant="tiny-mlp-224", backbone=mlp_backbone, weights=swiglu_lora), "LoRA for 2 blocks"),
        (dict(variant="B-224", backbone=mlp_backbone, weights=mlp_lora), "embed dim 96"),
        (dict(variant="tiny-mlp-224", backbone=swiglu_backbone, weights=mlp_lora), "blocks"),  # depth 2 vs 3
        (dict(variant="tiny-mlp-224", backbone=mlp_lora, weights=mlp_lora), "not a DINOv2 backbone"),
        (dict(variant="tiny-mlp-224", backbone=mlp_backbone, weights=mlp_backbone), "is a DINOv2 backbone"),
        (dict(variant="tiny-mlp-224", backbone=mlp_backbone, weights=mlp_lora, rank=4), "--lora-rank"),
        (dict(variant="tiny-mlp-224", backbone=mlp_backbone, weights=mlp_lora, alpha=8), "--lora-alpha"),
        (dict(variant="tiny-mlp-224", backbone=mlp_backbone, weights=tmp_path / "missing.bin"), "does not exist"),
    ]
    two_blocks = {k: v for k, v in load_file(mlp_lora).items() if not k.startswith("blocks.2.")}
    save_file(two_blocks, str(tmp_path / "mlp-2-blocks.bin"))     # right depth, MLP FFN for a SwiGLU variant
    cases.append((dict(variant="tiny-swiglu-224", backbone=swiglu_backbone, weights=tmp_path / "mlp-2-blocks.bin"),
                  "lacks 8 trainable tensors .*w12"))
    bad = load_file(mlp_lora)
    bad["blocks.1.mlp.fc2.lora.B"][0, 0] = float("nan")
    save_file(bad, str(tmp_path / "nan.bin"))
    cases.append((dict(variant="tiny-mlp-224", backbone=mlp_backbone, weights=tmp_path / "nan.bin"), "NaN"))
    from lorat_tracker.weights import build_model, export_merged
    export_merged(build_model("tiny-mlp-224", weights=mlp_lora, backbone=mlp_backbone), tmp_path / "merged.safetensors")
    cases.append((dict(variant="tiny-mlp-224", backbone=mlp_backbone, weights=tmp_path / "merged.safetensors"),
                  "merged weights"))
    for kwargs, message in cases:
        variant = kwargs.pop("variant")
        with pytest.raises(WeightsError, match=message) as info:
            build_training_model(variant, **kwargs)
        assert isinstance(info.value, LoRATError)
