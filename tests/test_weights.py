"""Weight loading: LoRA merge math, file layouts, export round trip, and every mismatch error."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from timm.layers import SwiGLUPacked
from timm.models.vision_transformer import VisionTransformer

from lorat_tracker import (LoRATTracker, WeightsError, WeightsNotFoundError, build_model, export_merged,
                           inspect_weights, load_config)
from lorat_tracker.errors import ConfigError
from lorat_tracker.model import LoRATModel
from lorat_tracker.selftest import DATA_DIR, reference_cases, run_case
from lorat_tracker.weights import export_digest, lora_delta, merge_lora

MLP = DATA_DIR / "tiny-mlp"
SWIGLU = DATA_DIR / "tiny-swiglu"


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def mlp_model():
    return build_model("tiny-mlp-224", MLP / "lorat.bin", MLP / "backbone.pth")


# ------------------------------------------------------------------------------------ merge math

def test_merge_equals_w_plus_ba_times_alpha_over_r(mlp_model):
    """Fixture tiny-mlp: r = 8, alpha = 16, so scaling 2.0; checked by hand on every adapted linear."""
    lora = load_file(str(MLP / "lorat.bin"))
    backbone = torch.load(MLP / "backbone.pth", weights_only=True)
    assert int(lora["lora_alpha"]) == 16 and lora["blocks.0.mlp.fc1.lora.A"].shape[0] == 8
    merged = mlp_model.state_dict()
    d = 96
    for n in range(3):
        for i, part in enumerate("qkv"):
            w = backbone[f"blocks.{n}.attn.qkv.weight"][i * d:(i + 1) * d]
            a, b = lora[f"blocks.{n}.attn.qkv.{part}.lora.A"], lora[f"blocks.{n}.attn.qkv.{part}.lora.B"]
            expected = w + 2.0 * (b @ a)
            torch.testing.assert_close(merged[f"blocks.{n}.attn.qkv.weight"][i * d:(i + 1) * d], expected,
                                       rtol=0, atol=1e-6)
        for name in ("attn.proj", "mlp.fc1", "mlp.fc2"):
            w = backbone[f"blocks.{n}.{name}.weight"]
            expected = w + 2.0 * (lora[f"blocks.{n}.{name}.lora.B"] @ lora[f"blocks.{n}.{name}.lora.A"])
            torch.testing.assert_close(merged[f"blocks.{n}.{name}.weight"], expected, rtol=0, atol=1e-6)
            assert torch.equal(merged[f"blocks.{n}.{name}.bias"], backbone[f"blocks.{n}.{name}.bias"])
    assert torch.equal(merged["token_type_embed"], lora["token_type_embed"])


def test_rslora_scaling_is_alpha_over_sqrt_r():
    cfg = load_config("tiny-mlp-224")
    a = torch.randn(4, 96)
    b = torch.randn(96, 4)
    base = {"blocks.0.attn.proj.weight": torch.zeros(96, 96), "blocks.0.attn.proj.bias": torch.zeros(96)}
    lora = {"blocks.0.attn.proj.lora.A": a, "blocks.0.attn.proj.lora.B": b,
            "lora_alpha": torch.tensor(16), "use_rslora": torch.tensor(True)}
    out, used = merge_lora(base, lora, cfg, "test")
    torch.testing.assert_close(out["blocks.0.attn.proj.weight"], (b @ a) * (16 / math.sqrt(4)))
    assert used == set(lora)
    lora["use_rslora"] = torch.tensor(False)
    out, _ = merge_lora(base, lora, cfg, "test")
    torch.testing.assert_close(out["blocks.0.attn.proj.weight"], (b @ a) * (16 / 4))


def test_lora_delta_is_float32_even_for_half_inputs():
    a, b = torch.randn(2, 3).half(), torch.randn(3, 2).half()
    assert lora_delta(a, b, 1.0).dtype == torch.float32


def test_checkpoint_without_meta_tensors_uses_variant_alpha(tmp_path, mlp_model):
    """Newer training checkpoints (model.safetensors) carry no lora_alpha: the config's alpha applies."""
    lora = load_file(str(MLP / "lorat.bin"))
    del lora["lora_alpha"], lora["use_rslora"]
    path = tmp_path / "model.safetensors"
    save_file(lora, str(path))
    # configs/tiny-mlp-224.yaml says alpha 16, r 8 -> same merge as with the meta tensors.
    _assert_same_state(build_model("tiny-mlp-224", path, MLP / "backbone.pth").state_dict(), mlp_model.state_dict())
    info = inspect_weights(path)
    assert info.lora_alpha is None and info.lora_rank == 8 and info.needs_backbone


def test_meta_alpha_overrides_config(tmp_path, mlp_model):
    lora = load_file(str(MLP / "lorat.bin"))
    lora["lora_alpha"] = torch.tensor(8)  # scaling 1.0 instead of 2.0
    path = tmp_path / "alpha8.bin"
    save_file(lora, str(path))
    other = build_model("tiny-mlp-224", path, MLP / "backbone.pth").state_dict()
    assert not torch.equal(other["blocks.0.attn.proj.weight"], mlp_model.state_dict()["blocks.0.attn.proj.weight"])
    assert torch.equal(other["blocks.0.norm1.weight"], mlp_model.state_dict()["blocks.0.norm1.weight"])


# ------------------------------------------------------------------------------------ layouts

def _timm_layout(meta_state):
    """Meta DINOv2 keys -> timm keys, written out by hand (independent of the code under test)."""
    out = {}
    for k, v in meta_state.items():
        if k == "mask_token":
            continue
        out[k.replace(".mlp.w12.", ".mlp.fc1.").replace(".mlp.w3.", ".mlp.fc2.")] = v
    return out


@pytest.mark.parametrize("model_dir,variant", [(MLP, "tiny-mlp-224"), (SWIGLU, "tiny-swiglu-378")])
def test_timm_backbone_file_equals_meta_file(tmp_path, model_dir, variant):
    meta = torch.load(model_dir / "backbone.pth", weights_only=True)
    timm_file = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in _timm_layout(meta).items()}, str(timm_file))
    a = build_model(variant, model_dir / "lorat.bin", model_dir / "backbone.pth").state_dict()
    b = build_model(variant, model_dir / "lorat.bin", timm_file).state_dict()
    _assert_same_state(a, b)


def test_genuine_timm_swiglu_vit_keys_load(tmp_path):
    """A state dict of timm's own DINOv2-g architecture (packed SwiGLU) at test size loads 1:1."""
    vit = VisionTransformer(img_size=518, patch_size=14, embed_dim=96, depth=2, num_heads=3, init_values=1e-5,
                            mlp_ratio=2.66667 * 2, mlp_layer=SwiGLUPacked, act_layer=torch.nn.SiLU,
                            num_classes=0, global_pool="token")
    state = vit.state_dict()
    lora = load_file(str(SWIGLU / "lorat.bin"))
    path = tmp_path / "timm-vit.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    model = build_model("tiny-swiglu-224", SWIGLU / "lorat.bin", path).state_dict()
    # Unadapted tensors are copied; fc1 (= w12) is merged with its LoRA.
    assert torch.equal(model["blocks.1.norm2.weight"], state["blocks.1.norm2.weight"])
    expected = state["blocks.1.mlp.fc1.weight"] + (lora["blocks.1.mlp.w12.lora.B"] @ lora["blocks.1.mlp.w12.lora.A"])
    torch.testing.assert_close(model["blocks.1.mlp.fc1.weight"], expected, rtol=0, atol=1e-6)


def test_full_unmerged_state_dict_equals_bin_plus_backbone(tmp_path, mlp_model):
    """The training build's full state_dict (...linear.weight + lora.A/B, qkv split) needs no backbone."""
    meta = torch.load(MLP / "backbone.pth", weights_only=True)
    lora = load_file(str(MLP / "lorat.bin"))
    full = dict(lora)
    full["pos_embed"] = mlp_model.state_dict()["pos_embed"]
    full["patch_embed.proj.weight"], full["patch_embed.proj.bias"] = meta["patch_embed.proj.weight"], meta["patch_embed.proj.bias"]
    full["norm.weight"], full["norm.bias"] = meta["norm.weight"], meta["norm.bias"]
    for n in range(3):
        p = f"blocks.{n}"
        for k in ("norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias", "ls1.gamma", "ls2.gamma"):
            full[f"{p}.{k}"] = meta[f"{p}.{k}"]
        for i, part in enumerate("qkv"):
            full[f"{p}.attn.qkv.{part}.linear.weight"] = meta[f"{p}.attn.qkv.weight"][i * 96:(i + 1) * 96]
            full[f"{p}.attn.qkv.{part}.linear.bias"] = meta[f"{p}.attn.qkv.bias"][i * 96:(i + 1) * 96]
        for name in ("attn.proj", "mlp.fc1", "mlp.fc2"):
            full[f"{p}.{name}.linear.weight"] = meta[f"{p}.{name}.weight"]
            full[f"{p}.{name}.linear.bias"] = meta[f"{p}.{name}.bias"]
    path = tmp_path / "full.pth"
    torch.save(full, path)
    info = inspect_weights(path)
    assert info.kind == "lorat-full-unmerged" and not info.needs_backbone
    _assert_same_state(build_model("tiny-mlp-224", path).state_dict(), mlp_model.state_dict())


def test_official_merged_state_dict_loads(tmp_path, mlp_model):
    state = {k: v.contiguous() for k, v in mlp_model.state_dict().items()}
    path = tmp_path / "merged.safetensors"
    save_file(state, str(path))
    assert inspect_weights(path).kind == "lorat-merged"
    _assert_same_state(build_model("tiny-mlp-224", path).state_dict(), mlp_model.state_dict())


def test_export_round_trip_gives_identical_boxes(tmp_path, mlp_model):
    path = tmp_path / "tiny.safetensors"
    export_merged(mlp_model, path)
    info = inspect_weights(path)
    assert info.kind == "merged-export" and info.variant == "tiny-mlp-224" and not info.needs_backbone
    case = next(c for c in reference_cases() if c.variant == "tiny-mlp-224")
    exported = LoRATTracker.from_pretrained(None, weights=path, device="cpu")   # no backbone, no variant
    assert exported.cfg == mlp_model.cfg
    boxes, scores = run_case(exported, case)
    np.testing.assert_array_equal(boxes, run_case(LoRATTracker(mlp_model, "cpu"), case)[0])
    np.testing.assert_allclose(boxes, case.boxes, atol=1e-3, rtol=0)
    with pytest.raises(WeightsError, match="exported for variant tiny-mlp-224.*tiny-swiglu-224"):
        build_model("tiny-swiglu-224", path)


# ------------------------------------------------------------------------------------ parameter counts

@pytest.mark.parametrize("variant,count", [
    ("B-224", 88_091_909), ("B-378", 88_455_173), ("L-224", 307_432_453), ("L-378", 307_916_805),
    ("g-224", 1_144_222_213), ("g-378", 1_144_948_741)])
def test_merged_parameter_counts_match_reference(variant, count):
    with torch.device("meta"):
        model = LoRATModel(load_config(variant))
    assert sum(p.numel() for p in model.parameters()) == count
    assert not any("lora" in k for k in model.state_dict())


# ------------------------------------------------------------------------------------ errors

def test_missing_path():
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        build_model("tiny-mlp-224", "/nonexistent/lorat.bin", MLP / "backbone.pth")


def test_missing_backbone_path():
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        build_model("tiny-mlp-224", MLP / "lorat.bin", "/nonexistent/backbone.pth")


@pytest.mark.parametrize("cut", [4, 100, 5000])
def test_truncated_files(tmp_path, cut):
    for src in (MLP / "lorat.bin", MLP / "backbone.pth"):
        bad = tmp_path / src.name
        bad.write_bytes(src.read_bytes()[:cut])
        with pytest.raises(WeightsError, match="truncated|corrupt"):
            inspect_weights(bad)


def test_garbage_file(tmp_path):
    bad = tmp_path / "weights.bin"
    bad.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(WeightsError):
        build_model("tiny-mlp-224", bad, MLP / "backbone.pth")


def test_safetensors_whose_first_byte_is_a_pickles_is_read_as_safetensors(tmp_path):
    """A safetensors file starts with its header length, little-endian; in one valid file of 32 the low byte
    is 0x80, a legacy pickle's first byte. It must still be read as safetensors, metadata included."""
    from lorat_tracker.weights.files import read_weights_file

    tensors = load_file(str(MLP / "lorat.bin"))
    for pad in range(0, 264, 8):  # the header is padded to a multiple of 8 bytes
        path = tmp_path / "lorat.bin"
        save_file(tensors, str(path), metadata={"note": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no padding gave a header length with low byte 0x80")
    wf = read_weights_file(path)
    assert wf.container == "safetensors" and wf.metadata["note"] == "x" * pad
    assert wf.tensors.keys() == tensors.keys()


def test_directory_as_weights(tmp_path):
    with pytest.raises(WeightsError, match="directory"):
        build_model("tiny-mlp-224", tmp_path, MLP / "backbone.pth")


def test_wrong_variant_embed_dim():
    with pytest.raises(WeightsError, match=r"embed dim 96 .* B-224 expects 768"):
        build_model("B-224", MLP / "lorat.bin", MLP / "backbone.pth")


def test_wrong_variant_depth():
    # tiny-swiglu has 2 blocks; a config of the same width with the MLP FFN and 3 blocks must refuse it.
    with pytest.raises(WeightsError, match="blocks|tensors"):
        build_model("tiny-mlp-224", SWIGLU / "lorat.bin", SWIGLU / "backbone.pth")


def test_wrong_geometry_for_merged_file(tmp_path, mlp_model):
    path = tmp_path / "merged-224.safetensors"
    save_file({k: v.contiguous() for k, v in mlp_model.state_dict().items()}, str(path))
    with pytest.raises(WeightsError, match=r"16x16 search grid .*224 variant.*tiny-mlp-378 uses 27x27"):
        build_model("tiny-mlp-378", path)


def test_lora_for_fewer_blocks_than_the_variant(tmp_path):
    lora = {k: v for k, v in load_file(str(MLP / "lorat.bin")).items() if not k.startswith("blocks.2.")}
    path = tmp_path / "shallow.bin"
    save_file(lora, str(path))
    with pytest.raises(WeightsError, match="LoRA for 2 blocks but variant tiny-mlp-224 has 3"):
        build_model("tiny-mlp-224", path, MLP / "backbone.pth")


def test_missing_tensor(tmp_path):
    lora = load_file(str(MLP / "lorat.bin"))
    del lora["head.reg_mlp.layers.2.bias"]
    path = tmp_path / "partial.bin"
    save_file(lora, str(path))
    with pytest.raises(WeightsError, match=r"lacks 1 tensors.*head.reg_mlp.layers.2.bias"):
        build_model("tiny-mlp-224", path, MLP / "backbone.pth")


def test_missing_lora_half(tmp_path):
    lora = load_file(str(MLP / "lorat.bin"))
    del lora["blocks.1.mlp.fc2.lora.B"]
    path = tmp_path / "half.bin"
    save_file(lora, str(path))
    with pytest.raises(WeightsError, match="blocks.1.mlp.fc2.lora.B is missing"):
        build_model("tiny-mlp-224", path, MLP / "backbone.pth")


def test_unexpected_tensor(tmp_path):
    lora = load_file(str(MLP / "lorat.bin"))
    lora["blocks.0.mlp.fc3.lora.A"] = torch.zeros(8, 96)
    path = tmp_path / "extra.bin"
    save_file(lora, str(path))
    with pytest.raises(WeightsError, match="does not have.*blocks.0.mlp.fc3.lora.A"):
        build_model("tiny-mlp-224", path, MLP / "backbone.pth")
    lora = load_file(str(MLP / "lorat.bin"))
    lora["blocks.7.attn.proj.lora.A"] = torch.zeros(8, 96)
    save_file(lora, str(path))
    with pytest.raises(WeightsError, match="LoRA for 4 blocks but variant tiny-mlp-224 has 3"):
        build_model("tiny-mlp-224", path, MLP / "backbone.pth")


def test_files_swapped():
    with pytest.raises(WeightsError, match="is a DINOv2 backbone, not LoRAT weights"):
        build_model("tiny-mlp-224", MLP / "backbone.pth", MLP / "lorat.bin")
    with pytest.raises(WeightsError, match="not a DINOv2 backbone"):
        build_model("tiny-mlp-224", MLP / "lorat.bin", MLP / "lorat.bin")


def test_no_weights_and_no_variant():
    with pytest.raises(WeightsError, match="needs LoRAT weights"):
        build_model("tiny-mlp-224")
    with pytest.raises(WeightsError, match="pass a variant"):
        build_model(None, MLP / "lorat.bin", MLP / "backbone.pth")


def test_no_backbone_and_no_timm_name_says_what_to_pass():
    # Test configs name no timm model, so nothing is fetched: the error tells what to pass.
    with pytest.raises(WeightsError, match="pass backbone=PATH"):
        build_model("tiny-mlp-224", MLP / "lorat.bin")


def test_register_token_backbone_is_refused(tmp_path):
    meta = torch.load(MLP / "backbone.pth", weights_only=True)
    meta["register_tokens"] = torch.zeros(1, 4, 96)
    path = tmp_path / "reg4.pth"
    torch.save(meta, path)
    with pytest.raises(WeightsError, match="register tokens"):
        build_model("tiny-mlp-224", MLP / "lorat.bin", path)


def test_inspect_reports_variant_guess_for_base_size(tmp_path):
    lora = {"token_type_embed": torch.zeros(3, 768), "blocks.0.attn.proj.lora.A": torch.zeros(64, 768),
            "blocks.0.attn.proj.lora.B": torch.zeros(768, 64), "lora_alpha": torch.tensor(64),
            "use_rslora": torch.tensor(False), "head.cls_mlp.layers.0.weight": torch.zeros(768, 768)}
    path = tmp_path / "base.bin"
    save_file(lora, str(path))
    info = inspect_weights(path)
    assert info.variant.startswith("B-") and info.lora_rank == 64 and info.lora_alpha == 64
    assert "ViT-B" in info.describe() and "needs backbone:  yes" in info.describe()


# ------------------------------------------------------------------------------------ no silent garbage
# Every bad file below is built from the bundled tiny model: it loaded (and tracked NaN boxes, or other
# boxes) before weights.check_tensors / export_config existed.

def _save_lora(tmp_path, edit, name="edited.bin"):
    lora = load_file(str(MLP / "lorat.bin"))
    edit(lora)
    path = tmp_path / name
    save_file(lora, str(path))
    return path


def _poke(key, value):
    def edit(state):
        t = state[key].clone()
        t.view(-1)[1] = value
        state[key] = t
    return edit


@pytest.mark.parametrize("key,value,what", [
    ("head.cls_mlp.layers.0.weight", float("nan"), "1 NaN"),
    ("head.reg_mlp.layers.2.bias", float("inf"), "1 infinite"),
    ("blocks.1.attn.qkv.k.lora.B", float("nan"), "1 NaN"),
    ("blocks.2.mlp.fc1.lora.A", float("-inf"), "1 infinite"),
    ("token_type_embed", float("nan"), "1 NaN")])
def test_non_finite_tensor_is_refused_with_its_name(tmp_path, key, value, what):
    path = _save_lora(tmp_path, _poke(key, value))
    with pytest.raises(WeightsError, match=rf"{path}: tensor {key} holds {what}"):
        build_model("tiny-mlp-224", path, MLP / "backbone.pth")
    with pytest.raises(WeightsError, match=key):
        inspect_weights(path)  # `lorat info` refuses it too


def test_non_finite_backbone_tensor_is_refused(tmp_path):
    meta = torch.load(MLP / "backbone.pth", weights_only=True)
    meta["blocks.1.norm1.weight"] = meta["blocks.1.norm1.weight"].clone()
    meta["blocks.1.norm1.weight"][3] = float("nan")
    path = tmp_path / "backbone.pth"
    torch.save(meta, path)
    with pytest.raises(WeightsError, match=rf"{path}: tensor blocks.1.norm1.weight holds 1 NaN"):
        build_model("tiny-mlp-224", MLP / "lorat.bin", path)


@pytest.mark.parametrize("alpha", [float("nan"), float("inf"), 0.0, -16.0])
def test_bad_lora_alpha_is_refused(tmp_path, alpha):
    path = _save_lora(tmp_path, lambda s: s.__setitem__("lora_alpha", torch.tensor(alpha)))
    with pytest.raises(WeightsError, match="tensor lora_alpha must be one positive finite number"):
        build_model("tiny-mlp-224", path, MLP / "backbone.pth")


@pytest.mark.parametrize("key,dtype", [("head.cls_mlp.layers.0.weight", torch.int32),
                                       ("blocks.0.attn.proj.lora.A", torch.int64),
                                       ("token_type_embed", torch.bool),
                                       ("head.reg_mlp.layers.1.bias", torch.uint8)])
def test_non_float_tensor_is_refused_with_its_name(tmp_path, key, dtype):
    path = _save_lora(tmp_path, lambda s: s.__setitem__(key, s[key].to(dtype)))
    name = str(dtype).replace("torch.", "")
    with pytest.raises(WeightsError, match=rf"{path}: tensor {key} has dtype {name}.*floating point"):
        build_model("tiny-mlp-224", path, MLP / "backbone.pth")


def test_float8_tensor_is_refused_with_its_name(tmp_path):
    key = "head.cls_mlp.layers.0.weight"
    path = _save_lora(tmp_path, lambda s: s.__setitem__(key, s[key].to(torch.float8_e4m3fn)))
    with pytest.raises(WeightsError, match=rf"{path}: tensor {key} has dtype float8_e4m3fn, which LoRAT weights "
                                           r"never have"):
        build_model("tiny-mlp-224", path, MLP / "backbone.pth")


@pytest.mark.parametrize("edit,message", [
    (lambda s: s.__setitem__(7, s.pop("token_type_embed")), r"has a key of type int \(7\)"),
    (lambda s: s.__setitem__("token_type_embed", s["token_type_embed"].to_sparse()),
     r"tensor token_type_embed is a sparse_coo tensor"),
    (lambda s: s.__setitem__("token_type_embed", torch.empty(3, 8, device="meta")),
     r"tensor token_type_embed is a meta tensor, which holds no values"),
    (lambda s: s.__setitem__("token_type_embed",
                             torch.quantize_per_tensor(s["token_type_embed"], 0.1, 0, torch.qint8)),
     r"tensor token_type_embed has dtype qint8"),
    (lambda s: s.__setitem__("head", {"w": torch.zeros(2)}), r"does not hold a state dict of tensors"),
], ids=["int-key", "sparse", "meta", "quantized", "nested"])
def test_malformed_state_dict_containers_are_refused_in_one_line(tmp_path, edit, message):
    """Each of these escaped as AttributeError / NotImplementedError / RuntimeError from inside torch."""
    state = load_file(MLP / "lorat.bin")
    edit(state)
    path = tmp_path / "edited.bin"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=message):
        build_model("tiny-mlp-224", path, MLP / "backbone.pth")
    with pytest.raises(WeightsError, match=message):
        inspect_weights(path)


def test_a_fifo_is_refused_instead_of_blocking(tmp_path):
    import os

    fifo = tmp_path / "weights.bin"
    os.mkfifo(fifo)
    with pytest.raises(WeightsError, match="is not a regular file"):
        inspect_weights(fifo)


def test_backbone_of_another_patch_size_is_refused(tmp_path):
    """A patch-16 ViT (DINOv3, say) is refused by its patch size; timm's converter alone would resize the
    patch embedding to 14x14 and the file would load."""
    meta = torch.load(MLP / "backbone.pth", weights_only=True)
    meta["patch_embed.proj.weight"] = torch.nn.functional.interpolate(meta["patch_embed.proj.weight"], size=(16, 16))
    torch.save(meta, tmp_path / "patch16.pth")
    with pytest.raises(WeightsError, match=r"patch16.pth has patch size \(16, 16\), variant tiny-mlp-224 expects 14"):
        build_model("tiny-mlp-224", MLP / "lorat.bin", tmp_path / "patch16.pth")


def test_integer_backbone_tensor_is_refused(tmp_path):
    meta = torch.load(MLP / "backbone.pth", weights_only=True)
    meta["patch_embed.proj.bias"] = meta["patch_embed.proj.bias"].to(torch.int64)
    path = tmp_path / "backbone.pth"
    torch.save(meta, path)
    with pytest.raises(WeightsError, match="tensor patch_embed.proj.bias has dtype int64"):
        build_model("tiny-mlp-224", MLP / "lorat.bin", path)


def test_half_precision_files_still_load(tmp_path, mlp_model):
    """fp16/bf16 files are legitimate (training checkpoints): only non-float dtypes are refused."""
    path = _save_lora(tmp_path, lambda s: s.update({k: v.half() for k, v in s.items() if v.is_floating_point()}))
    build_model("tiny-mlp-224", path, MLP / "backbone.pth")


def test_wrong_size_token_type_embed_names_the_wrong_dimension(tmp_path):
    path = _save_lora(tmp_path, lambda s: s.__setitem__("token_type_embed", torch.zeros(4, 96)))
    with pytest.raises(WeightsError) as e:
        build_model("tiny-mlp-224", path, MLP / "backbone.pth")
    msg = str(e.value)
    assert "4 token types (shape (4, 96))" in msg and "LoRAT has 3" in msg and "(3, 96)" in msg
    assert "embed dim" not in msg  # the embed dim (96) is right; it used to say "has embed dim 96 ... expects 96"
    path = _save_lora(tmp_path, lambda s: s.__setitem__("token_type_embed", torch.zeros(3, 64)), "narrow.bin")
    with pytest.raises(WeightsError, match="embed dim 64 .* expects 96"):
        build_model("tiny-mlp-224", path, MLP / "backbone.pth")


@pytest.mark.parametrize("payload", [b"PK\x03\x04" + bytes(range(256)) * 8, b"\x80\x02garbage" * 50])
def test_unreadable_torch_file_never_advises_weights_only_false(tmp_path, payload):
    path = tmp_path / "random.pth"
    path.write_bytes(payload)
    with pytest.raises(WeightsError) as e:
        inspect_weights(path)
    msg = str(e.value)
    # our words only: not torch's multi-line text (its advice to re-run with weights_only=False, miniz...)
    assert "cannot read" in msg and "weights_only" not in msg and "miniz" not in msg and "\n" not in msg, msg


class _NotATensor:  # module level so that torch.save can pickle it
    pass


def test_pickle_with_objects_is_refused_without_running_it(tmp_path):
    path = tmp_path / "objects.pth"
    torch.save({"w": torch.zeros(2), "obj": _NotATensor()}, path)
    with pytest.raises(WeightsError) as e:
        inspect_weights(path)
    assert "a pickle holding Python objects besides tensors" in str(e.value) and "weights_only" not in str(e.value)


def test_text_file_is_not_a_weights_file(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# lorat-tracker\n\nLoRAT visual object tracker: track videos, run benchmarks.\n" * 4)
    with pytest.raises(WeightsError) as e:
        inspect_weights(readme)
    assert "is not a weights file (a text file)" in str(e.value) and "download" not in str(e.value)


# ------------------------------------------------------------------------------------ merged-export header

@pytest.fixture(scope="module")
def export_file(tmp_path_factory, mlp_model):
    path = tmp_path_factory.mktemp("export") / "tiny.safetensors"
    export_merged(mlp_model, path)
    return path


def _rewrite_header(src, dst, edit_config=None, edit_metadata=None):
    """Copy an export with its header edited (the tensors untouched), as a user with a hex editor would."""
    with safe_open(str(src), framework="pt") as f:
        metadata = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if edit_config is not None:
        config = json.loads(metadata["config"])
        edit_config(config)
        metadata["config"] = json.dumps(config)
    if edit_metadata is not None:
        edit_metadata(metadata)
    save_file(tensors, str(dst), metadata=metadata)
    return dst


def test_export_carries_a_digest_of_config_and_layout(export_file, mlp_model):
    with safe_open(str(export_file), framework="pt") as f:
        metadata = f.metadata()
    assert metadata["digest"] == export_digest(mlp_model.cfg, mlp_model.state_dict())
    assert metadata["digest"].startswith("sha256:") and len(metadata["digest"]) == 7 + 64
    # Reformatting the JSON (same values) is not an edit.
    reformatted = _rewrite_header(export_file, export_file.parent / "pretty.safetensors",
                                  edit_metadata=lambda m: m.update(config=json.dumps(json.loads(m["config"]),
                                                                                     indent=2)))
    assert build_model(None, reformatted).cfg == mlp_model.cfg


# Edits that pass the validator: only the digest can tell (they used to load with other boxes).
@pytest.mark.parametrize("edit", [
    lambda c: c["backbone"].update(num_heads=4),                 # 96 / 4 = 24: a valid head dim
    lambda c: c["tracking"].update(window_penalty=0.2),
    lambda c: c["search"].update(area_factor=3.0),
    lambda c: c.update(name="B-224")])
def test_edited_export_config_is_detected(tmp_path, export_file, edit):
    path = _rewrite_header(export_file, tmp_path / "edited.safetensors", edit)
    with pytest.raises(WeightsError, match="the export's configuration was edited: .* re-export it with lorat export"):
        build_model(None, path)
    with pytest.raises(WeightsError, match="was edited"):
        inspect_weights(path)


def test_export_without_digest_is_refused(tmp_path, export_file):
    path = _rewrite_header(export_file, tmp_path / "old.safetensors", edit_metadata=lambda m: m.pop("digest"))
    with pytest.raises(WeightsError, match="carries no digest.*re-export it with lorat export"):
        build_model(None, path)


# (edit, expected message) - the same validator refuses them in a YAML variant and in an export header.
INVALID_CONFIGS = [
    (lambda c: c["backbone"].update(num_heads=5), "embed_dim 96 is not divisible by num_heads 5"),
    (lambda c: c["tracking"].update(window_penalty=float("nan")), "tracking.window_penalty is nan, expected a finite"),
    (lambda c: c["tracking"].update(window_penalty=1.5),
     "tracking.window_penalty is 1.5, expected a number >= 0 and <= 1"),
    (lambda c: c["normalization"].update(std=[0.229, 0.0, 0.225]),
     r"normalization.std \(G\) is 0.0, expected a number > 0"),
    (lambda c: c["normalization"].update(mean=[0.5, 0.5]), "normalization.mean has 2 values, expected 3"),
    (lambda c: c["search"].update(size="224"), "search.size is '224', expected an integer"),
    (lambda c: c["template"].update(area_factor=float("inf")), "template.area_factor is inf"),
    (lambda c: c["lora"].update(alpha=0), "lora.alpha is 0, expected a number > 0"),
    (lambda c: c["backbone"].update(depth=True), "backbone.depth is True, expected an integer"),
]


@pytest.mark.parametrize("edit,message", INVALID_CONFIGS)
def test_invalid_config_is_refused_in_yaml_and_in_export(tmp_path, export_file, edit, message):
    data = load_config("tiny-mlp-224").to_dict()
    edit(data)
    yaml_path = tmp_path / "bad.yaml"
    yaml_path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message):
        load_config(yaml_path)
    path = _rewrite_header(export_file, tmp_path / "bad.safetensors", edit)
    with pytest.raises(WeightsError, match=rf"invalid variant config in the header of {path}: .*{message}.*re-export"):
        build_model(None, path)


def test_export_header_that_is_not_json_is_a_weights_error(tmp_path, export_file):
    path = _rewrite_header(export_file, tmp_path / "broken.safetensors",
                           edit_metadata=lambda m: m.update(config=m["config"][:-7]))
    for load in (lambda: build_model(None, path), lambda: inspect_weights(path)):
        with pytest.raises(WeightsError, match="configuration is not valid JSON .* re-export it with lorat export"):
            load()
