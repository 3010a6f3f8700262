"""Hugging Face transformers DINOv2 backbones (``Dinov2Model`` folders) against transformers itself.

The fixture backbones are Meta files. Each test here builds the same network in transformers,
loads the Meta tensors into it by a mapping written in this file (the inverse direction of
``weights.convert.hf_to_meta``, in transformers' module names), and checks transformers' own
forward against our model: the mapping under test is checked against transformers, not against
itself. ``save_pretrained`` then writes the file layout the Hub uses (which differs from the module
names), and tracking with it must give the Meta file's boxes exactly.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from lorat_tracker import LoRATTracker, WeightsError, build_model, inspect_weights, load_config
from lorat_tracker.model import LoRATModel
from lorat_tracker.selftest import DATA_DIR, reference_cases, run_case
from lorat_tracker.training import build_training_model
from lorat_tracker.weights import WeightsFormat, resolve

transformers = pytest.importorskip("transformers")

# (fixture model, variant): both FFNs, both geometries.
MODELS = [("tiny-mlp", "tiny-mlp-224"), ("tiny-swiglu", "tiny-swiglu-378")]


def _hf_config(variant: str, **changes):
    b = load_config(variant).backbone
    values = dict(hidden_size=b.embed_dim, num_hidden_layers=b.depth, num_attention_heads=b.num_heads,
                  image_size=b.pretrained_grid * b.patch_size, patch_size=b.patch_size,
                  use_swiglu_ffn=b.ffn == "swiglu", layer_norm_eps=1e-6, hidden_act="gelu")
    return transformers.Dinov2Config(**{**values, **changes})


def _meta_to_hf_modules(meta, depth: int, dim: int):
    """Meta DINOv2 keys -> transformers 5 ``Dinov2Model`` module names, written out by hand."""
    out = {"embeddings.cls_token": meta["cls_token"], "embeddings.mask_token": meta["mask_token"],
           "embeddings.position_embeddings": meta["pos_embed"],
           "embeddings.patch_embeddings.projection.weight": meta["patch_embed.proj.weight"],
           "embeddings.patch_embeddings.projection.bias": meta["patch_embed.proj.bias"],
           "layernorm.weight": meta["norm.weight"], "layernorm.bias": meta["norm.bias"]}
    for n in range(depth):
        src, dst = f"blocks.{n}", f"encoder.layer.{n}"
        for s in ("weight", "bias"):
            out[f"{dst}.norm1.{s}"] = meta[f"{src}.norm1.{s}"]
            out[f"{dst}.norm2.{s}"] = meta[f"{src}.norm2.{s}"]
            q, k, v = meta[f"{src}.attn.qkv.{s}"].split(dim, 0)
            out[f"{dst}.attention.q_proj.{s}"], out[f"{dst}.attention.k_proj.{s}"] = q, k
            out[f"{dst}.attention.v_proj.{s}"] = v
            out[f"{dst}.attention.o_proj.{s}"] = meta[f"{src}.attn.proj.{s}"]
            if f"{src}.mlp.w12.{s}" in meta:  # SwiGLU: silu(first half) * second half
                gate, up = meta[f"{src}.mlp.w12.{s}"].chunk(2, 0)
                out[f"{dst}.mlp.gate_proj.{s}"], out[f"{dst}.mlp.up_proj.{s}"] = gate, up
                out[f"{dst}.mlp.down_proj.{s}"] = meta[f"{src}.mlp.w3.{s}"]
            else:
                out[f"{dst}.mlp.fc1.{s}"] = meta[f"{src}.mlp.fc1.{s}"]
                out[f"{dst}.mlp.fc2.{s}"] = meta[f"{src}.mlp.fc2.{s}"]
        out[f"{dst}.layer_scale1.lambda1"] = meta[f"{src}.ls1.gamma"]
        out[f"{dst}.layer_scale2.lambda1"] = meta[f"{src}.ls2.gamma"]
    return out


def _hf_model(model: str, variant: str):
    meta = torch.load(DATA_DIR / model / "backbone.pth", weights_only=True)
    b = load_config(variant).backbone
    hf = transformers.Dinov2Model(_hf_config(variant)).eval()
    hf.load_state_dict(_meta_to_hf_modules(meta, b.depth, b.embed_dim), strict=True)
    return hf


@pytest.fixture(scope="module", params=MODELS, ids=[m for m, _ in MODELS])
def hf_folder(request, tmp_path_factory):
    """(fixture model, variant, transformers model, save_pretrained folder)."""
    model, variant = request.param
    hf = _hf_model(model, variant)
    folder = tmp_path_factory.mktemp(f"hf-{model}")
    hf.save_pretrained(folder)
    return model, variant, hf, folder


def _same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ------------------------------------------------------------------------- against transformers

def test_converted_backbone_computes_what_transformers_computes(hf_folder):
    model, variant, hf, folder = hf_folder
    cfg = load_config(variant)
    res = resolve(variant, weights=DATA_DIR / model / "lorat.bin", backbone=folder)
    ours = LoRATModel(cfg).eval()
    missing, unexpected = ours.load_state_dict(res.base, strict=False)  # the backbone only, LoRA not merged
    assert not unexpected and all(k == "token_type_embed" or k.startswith("head.") for k in missing)
    torch.manual_seed(0)
    pixels = torch.randn(2, 3, cfg.search.size, cfg.search.size)
    tokens = torch.randn(2, cfg.template_grid ** 2 + cfg.search_grid ** 2, cfg.backbone.embed_dim)
    with torch.no_grad():
        # Patch embedding, then every block and the final norm on the same joint token sequence.
        torch.testing.assert_close(ours.patch_embed(pixels), hf.embeddings.patch_embeddings(pixels),
                                   rtol=0, atol=1e-5)
        theirs = hf.layernorm(hf.encoder(tokens).last_hidden_state)
        mine = ours.norm(ours.forward_blocks(tokens))
    torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-6)  # measured: 0 (the same SDPA and GEMMs)
    # The blocks do change the tokens (the comparison is not of two near-identities).
    assert (ours.forward_blocks(tokens) - tokens).abs().max() > 0.1


def test_save_pretrained_folder_tracks_with_the_meta_boxes(hf_folder):
    model, variant, _, folder = hf_folder
    weights, meta = DATA_DIR / model / "lorat.bin", DATA_DIR / model / "backbone.pth"
    # save_pretrained writes the Hub's names (attention.attention.query, mlp.weights_in), not the modules'.
    keys = load_file(str(folder / "model.safetensors")).keys()
    assert "encoder.layer.0.attention.attention.query.weight" in keys
    assert ("encoder.layer.0.mlp.weights_in.weight" in keys) == model.endswith("swiglu")
    reference = LoRATTracker.from_pretrained(variant, weights=weights, backbone=meta, device="cpu", precision="fp32")
    for backbone in (folder, folder / "model.safetensors"):
        tracker = LoRATTracker.from_pretrained(variant, weights=weights, backbone=backbone, device="cpu",
                                               precision="fp32")
        _same_state(tracker.model.state_dict(), reference.model.state_dict())
        for case in (c for c in reference_cases() if c.variant == variant):
            boxes, scores = run_case(tracker, case)
            expected, expected_scores = run_case(reference, case)
            np.testing.assert_array_equal(boxes, expected)
            np.testing.assert_array_equal(scores, expected_scores)
            np.testing.assert_allclose(boxes, case.boxes, rtol=0, atol=1e-3)  # and the official boxes


def test_other_transformers_layouts_load(hf_folder, tmp_path):
    """pytorch_model.bin (transformers 4 default) and a raw 5.x state_dict() (q_proj/gate_proj names)."""
    model, variant, hf, folder = hf_folder
    weights, meta = DATA_DIR / model / "lorat.bin", DATA_DIR / model / "backbone.pth"
    reference = build_model(variant, weights, meta).state_dict()
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(folder / "config.json", old)
    torch.save(load_file(str(folder / "model.safetensors")), old / "pytorch_model.bin")
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(folder / "config.json", raw)
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, str(raw / "model.safetensors"))
    assert "encoder.layer.0.attention.q_proj.weight" in load_file(str(raw / "model.safetensors"))
    for backbone in (old, raw):
        _same_state(build_model(variant, weights, backbone).state_dict(), reference)


def test_training_build_takes_the_folder_too(hf_folder):
    model, variant, _, folder = hf_folder
    weights, meta = DATA_DIR / model / "lorat.bin", DATA_DIR / model / "backbone.pth"
    _same_state(build_training_model(variant, backbone=folder, weights=weights).state_dict(),
                build_training_model(variant, backbone=meta, weights=weights).state_dict())
    res = resolve(variant, weights, folder, training=True)
    assert res.backbone_format is WeightsFormat.BACKBONE_HF and res.merged is None
    assert res.weights_format is WeightsFormat.LORAT_LORA and res.backbone_source == str(folder / "model.safetensors")


def test_info_describes_the_folder(hf_folder, capsys):
    from lorat_tracker.cli import main as lorat_main

    model, variant, _, folder = hf_folder
    b = load_config(variant).backbone
    info = inspect_weights(folder)
    assert info.kind == "backbone-hf" and info.kind is WeightsFormat.BACKBONE_HF
    assert (info.embed_dim, info.depth, info.ffn, info.needs_backbone) == (b.embed_dim, b.depth, b.ffn, False)
    meta = inspect_weights(DATA_DIR / model / "backbone.pth")
    assert info.num_parameters == meta.num_parameters  # the same network, named otherwise
    assert lorat_main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "backbone-hf (safetensors, Hugging Face transformers Dinov2Model" in out
    assert "pass it with --backbone" in out and f"depth {b.depth}, {b.ffn} FFN" in out
    assert lorat_main(["info", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "backbone-hf"


# ------------------------------------------------------------------------------------ bad files

@pytest.fixture(scope="module")
def saved_mlp(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf-saved-mlp")
    _hf_model("tiny-mlp", "tiny-mlp-224").save_pretrained(folder)
    return folder


@pytest.fixture()
def mlp_folder(saved_mlp, tmp_path):
    """A writable copy of the tiny-mlp save_pretrained folder."""
    copy = tmp_path / "dinov2"
    shutil.copytree(saved_mlp, copy)
    return copy


def _edit_config(folder, **changes):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


WEIGHTS = DATA_DIR / "tiny-mlp" / "lorat.bin"


@pytest.mark.parametrize("changes,message", [
    # what the tensors cannot tell: the config must agree with the variant
    (dict(num_attention_heads=4), r"config.json says num_attention_heads 4 but variant tiny-mlp-224 has 3"),
    (dict(hidden_act="gelu_new"), r"says hidden_act 'gelu_new' but variant tiny-mlp-224 has 'gelu'"),
    (dict(layer_norm_eps=1e-5), r"says layer_norm_eps 1e-05"),
    # a config of another model than the tensors
    (dict(hidden_size=768), r"config.json says hidden_size 768 but .* holds width 96 - the config.json belongs"),
    (dict(num_hidden_layers=12), r"says num_hidden_layers 12 but .* holds 3 layers"),
    (dict(use_swiglu_ffn=True), r"says use_swiglu_ffn True but .* holds an MLP FFN"),
    (dict(image_size=224), r"says image_size 224 \(257 positions\) but .* holds 1370 positions"),
    (dict(model_type="vit"), r"describes a vit model \(model_type\), not a DINOv2"),
    (dict(model_type="dinov2_with_registers"), "register tokens"),
])
def test_config_that_disagrees_is_refused(mlp_folder, changes, message):
    _edit_config(mlp_folder, **changes)
    with pytest.raises(WeightsError, match=message):
        build_model("tiny-mlp-224", WEIGHTS, mlp_folder)


def test_folder_of_another_variant_is_refused(saved_mlp, tmp_path):
    with pytest.raises(WeightsError, match=r"embed dim 96 .* B-224 expects 768"):
        build_model("B-224", DATA_DIR / "tiny-mlp" / "lorat.bin", saved_mlp)
    with pytest.raises(WeightsError, match="num_hidden_layers 3 but variant tiny-swiglu-224 has 2"):
        build_model("tiny-swiglu-224", DATA_DIR / "tiny-swiglu" / "lorat.bin", saved_mlp)
    # A 2-layer MLP backbone for the 2-layer SwiGLU variant: only the FFN differs.
    two = tmp_path / "two-layers"
    transformers.Dinov2Model(_hf_config("tiny-swiglu-224", use_swiglu_ffn=False)).save_pretrained(two)
    with pytest.raises(WeightsError, match="use_swiglu_ffn False but variant tiny-swiglu-224 has True"):
        build_model("tiny-swiglu-224", DATA_DIR / "tiny-swiglu" / "lorat.bin", two)


def test_missing_or_broken_config_json(mlp_folder, tmp_path):
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(mlp_folder / "model.safetensors", alone)
    with pytest.raises(WeightsError, match=r"holds Hugging Face transformers DINOv2 weights but there is no config.json"):
        build_model("tiny-mlp-224", WEIGHTS, alone / "model.safetensors")
    with pytest.raises(WeightsError, match="is a directory"):  # a folder without config.json is no HF folder
        build_model("tiny-mlp-224", WEIGHTS, alone)
    with pytest.raises(WeightsError, match="no config.json"):
        inspect_weights(alone / "model.safetensors")          # `lorat info` says so too
    (mlp_folder / "config.json").write_text('{"model_type": "dinov2", ')
    with pytest.raises(WeightsError, match="config.json is not valid JSON"):
        build_model("tiny-mlp-224", WEIGHTS, mlp_folder)


@pytest.mark.parametrize("cut", [4, 100, 5000, 200_000])
def test_truncated_model_file(mlp_folder, cut):
    path = mlp_folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(WeightsError, match="truncated|corrupt"):
        build_model("tiny-mlp-224", WEIGHTS, mlp_folder)


def test_missing_extra_and_misshapen_tensors(mlp_folder):
    path = mlp_folder / "model.safetensors"
    good = load_file(str(path))
    cases = [
        (lambda s: s.pop("encoder.layer.1.attention.attention.key.weight"),
         r"layer 1 has 2 of the 3 parts of attn.qkv.weight"),
        (lambda s: s.__setitem__("encoder.layer.0.attention.extra.weight", torch.zeros(2)),
         r"tensor encoder.layer.0.attention.extra.weight is not part of a transformers Dinov2Model"),
        (lambda s: s.__setitem__("encoder.layer.2.attention.attention.value.weight", torch.zeros(64, 96)),
         r"the parts of layer 2's attn.qkv.weight have shapes \[\(96, 96\), \(96, 96\), \(64, 96\)\]"),
        (lambda s: s.pop("encoder.layer.2.layer_scale2.lambda1"), r"lacks 1 tensors .*blocks.2.ls2.gamma"),
    ]
    for edit, message in cases:
        state = dict(good)
        edit(state)
        save_file(state, str(path))
        with pytest.raises(WeightsError, match=message):
            build_model("tiny-mlp-224", WEIGHTS, mlp_folder)


def test_folder_passed_as_weights(mlp_folder):
    with pytest.raises(WeightsError, match="is a DINOv2 backbone, not LoRAT weights"):
        build_model("tiny-mlp-224", mlp_folder, DATA_DIR / "tiny-mlp" / "backbone.pth")


def test_sharded_checkpoint_is_refused_with_advice(mlp_folder):
    (mlp_folder / "model.safetensors").rename(mlp_folder / "model-00001-of-00001.safetensors")
    (mlp_folder / "model.safetensors.index.json").write_text('{"weight_map": {}}')
    with pytest.raises(WeightsError, match="sharded Hugging Face checkpoint"):
        build_model("tiny-mlp-224", WEIGHTS, mlp_folder)


@pytest.mark.slow
def test_the_folder_is_taken_at_the_command_line_as_docs_weights_md_says(saved_mlp, tmp_path):
    """`lorat track --backbone FOLDER` was refused by the file check ("is a directory") and `lorat train`
    said such a folder "does not exist"."""
    from lorat_tracker import demo as sd
    from run_cli import run_lorat

    sd.write_folder(tmp_path / "videos", count=2, frames=6, seed=3)
    weights = DATA_DIR / "tiny-mlp" / "lorat.bin"
    seq = tmp_path / "videos" / "video_0"
    common = ["--variant", "tiny-mlp-224", "--weights", weights, "--device", "cpu"]
    meta = run_lorat("track", seq, "--box", seq / "groundtruth.txt", *common, "--backbone",
                     DATA_DIR / "tiny-mlp" / "backbone.pth", "--no-progress")
    hf = run_lorat("track", seq, "--box", seq / "groundtruth.txt", *common, "--backbone", saved_mlp, "--no-progress")
    assert hf.returncode == 0, hf.stderr
    assert hf.stdout == meta.stdout and len(hf.stdout.splitlines()) == 6
    proc = run_lorat("train", *common, "--backbone", saved_mlp, "--data", f"folder={tmp_path / 'videos'}",
                     "--out", tmp_path / "run", "--epochs", "1", "--pairs-per-epoch", "8", "--batch-size", "8",
                     "--workers", "0", "--no-progress", timeout=300)
    assert proc.returncode == 0, proc.stderr
    plain = tmp_path / "plain"
    plain.mkdir()
    proc = run_lorat("track", seq, "--box", "1,1,20,20", *common, "--backbone", plain)
    assert proc.returncode == 2 and "is a directory" in proc.stderr
