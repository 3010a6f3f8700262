"""Foreign layouts -> our model's keys: DINOv2 backbones (Meta, timm, Hugging Face) and LoRAT state dicts.

Meta and timm files go through timm's own ``checkpoint_filter_fn`` (Meta key names and the fused
SwiGLU ``w12``/``w3`` -> timm's packed ``fc1``/``fc2``). A Hugging Face ``Dinov2Model`` file is first
mapped to the Meta layout (``hf_to_meta``), checked against its ``config.json``, and then takes the
same path, so every backbone reaches the model through one converter.
"""
from __future__ import annotations

import os
import re
from typing import Dict, Tuple

import torch

from ..config import VariantConfig
from ..errors import WeightsError
from ..model import resize_pos_embed
from ..spec import literal
from .files import HF_CONFIG_NAME, StateDict
from .formats import HF_PREFIX, META_KEYS, block_indices, is_trainable_name, variant_mismatch


def meta_to_timm_key(k: str) -> str:
    return k.replace(".mlp.w12.", ".mlp.fc1.").replace(".mlp.w3.", ".mlp.fc2.")


def convert_backbone(state: StateDict, cfg: VariantConfig, source: str = "backbone") -> StateDict:
    """A Meta or timm DINOv2 state dict -> our model's backbone keys, pos_embed resized to the grid."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    state = dict(state)
    if "register_tokens" in state or "reg_token" in state:
        raise WeightsError(_registers(source, cfg))
    # Chunked Meta checkpoints (block_chunks > 0) store blocks.<chunk>.<index>.*
    state = {re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", k) if re.match(r"^blocks\.\d+\.\d+\.", k) else k: v
             for k, v in state.items()}
    pos = state.pop("pos_embed", None)
    if pos is None:
        raise WeightsError(f"{source} has no pos_embed: it is not a DINOv2 backbone file - pass "
                           f"{cfg.backbone.meta_file or 'the Meta dinov2_vit*14_pretrain.pth'}")
    patch = state.get("patch_embed.proj.weight")
    if patch is not None and tuple(patch.shape[-2:]) != (cfg.backbone.patch_size,) * 2:
        # before timm's converter, which resizes a patch embedding of another size to the probe's
        raise WeightsError(f"{source} has patch size {tuple(patch.shape[-2:])}, variant {cfg.name} expects "
                           f"{cfg.backbone.patch_size} - LoRAT uses the patch-14 DINOv2 backbones")
    probe = _FilterProbe(cfg)
    # timm's own converter: Meta key names (mask_token dropped, SwiGLU w12/w3 -> packed fc1/fc2).
    state = checkpoint_filter_fn(state, probe)
    out = {k: v for k, v in state.items() if k.startswith(("patch_embed.", "blocks.", "norm."))}
    _check_backbone_shapes(out, pos, cfg, source)
    out["pos_embed"] = resize_pos_embed(pos.float(), cfg.search_grid, cfg.backbone.pretrained_grid)
    return out


class _FilterProbe(torch.nn.Module):
    """The attributes timm's checkpoint_filter_fn looks at, without building a whole ViT."""

    def __init__(self, cfg: VariantConfig):
        super().__init__()
        b = cfg.backbone
        self.patch_embed = torch.nn.Module()
        self.patch_embed.proj = torch.nn.Conv2d(3, b.embed_dim, b.patch_size, b.patch_size, device="meta")
        self.pos_embed = None


def _check_backbone_shapes(out: StateDict, pos: torch.Tensor, cfg: VariantConfig, source: str) -> None:
    b = cfg.backbone
    w = out.get("patch_embed.proj.weight")
    if w is None:
        raise WeightsError(f"{source} has no patch_embed.proj.weight: it is not a DINOv2 backbone file")
    if w.shape[0] != b.embed_dim:
        raise WeightsError.naming(variant_mismatch(source, w.shape[0], cfg))
    depth = len(block_indices(out))
    if depth != b.depth:
        raise WeightsError(f"{source} has {depth} blocks but variant {cfg.name} expects {b.depth} - "
                           "pass the backbone of the variant's size")
    if pos.shape[1] not in (b.pretrained_grid ** 2, b.pretrained_grid ** 2 + 1):
        raise WeightsError(f"{source} pos_embed has {pos.shape[1]} positions, expected the "
                           f"{b.pretrained_grid}x{b.pretrained_grid} DINOv2 grid (+1 cls)")


def _registers(source: str, cfg: VariantConfig) -> str:
    return (f"{source} is a DINOv2 with register tokens; LoRAT v1 uses the plain DINOv2 "
            f"({cfg.backbone.meta_file or 'dinov2_vit*14_pretrain.pth'})")


def fetch_backbone_with_timm(cfg: VariantConfig) -> StateDict:
    """No backbone file given: let timm fetch the DINOv2 weights (needs network; never in tests)."""
    name = cfg.backbone.timm_name
    if not name:
        raise WeightsError.naming(f"variant {literal(cfg.name)} needs a DINOv2 backbone file: pass {{backbone:FILE}}")
    import timm

    try:
        return timm.create_model(name, pretrained=True, num_classes=0).state_dict()
    except Exception as e:  # noqa: BLE001 - no network, no cache, hub errors...
        raise WeightsError.naming(
            f"no backbone file was given and timm could not fetch {literal(name)} ({type(e).__name__}); "
            f"pass {{backbone:FILE}} to {literal(cfg.backbone.meta_file)} (Meta) or the timm file of "
            f"{literal(name)}") from None


def carried_backbone(tensors: StateDict, source: str) -> StateDict:
    """The frozen backbone inside a LoRAT file (full unmerged, merged or export), in our inference keys.

    A training state dict keeps each adapted linear as ``...linear.weight`` and the fused qkv as three
    ``qkv.{q,k,v}.linear`` parts: they are joined back (rows q, k, v) into the plain ViT's tensors.
    """
    out: StateDict = {}
    parts: Dict[str, Dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if is_trainable_name(k) or k in META_KEYS:
            continue
        k = meta_to_timm_key(k)
        m = re.match(r"(.+\.attn\.qkv)\.([qkv])\.linear\.(weight|bias)$", k)
        if m:
            parts.setdefault(f"{m.group(1)}.{m.group(3)}", {})[m.group(2)] = v
        else:
            out[k.replace(".linear.", ".")] = v
    for key, found in parts.items():
        missing = [p for p in "qkv" if p not in found]
        if missing:
            name = key.rsplit(".", 1)
            raise WeightsError(f"{source} lacks {', '.join(f'{name[0]}.{p}.linear.{name[1]}' for p in missing)} "
                               "(the q, k and v parts come together) - the file is incomplete")
        out[key] = torch.cat([found["q"], found["k"], found["v"]], 0)
    return out


# ------------------------------------------------------------------------------ Hugging Face DINOv2

# transformers' Dinov2Config defaults: save_pretrained may leave out a value equal to them.
_HF_DEFAULTS = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                "hidden_act": "gelu", "layer_norm_eps": 1e-6, "image_size": 224, "patch_size": 14,
                "qkv_bias": True, "use_swiglu_ffn": False}
_HF_FIXED = {"embeddings.cls_token": "cls_token", "embeddings.mask_token": "mask_token",
             "embeddings.position_embeddings": "pos_embed",
             "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
             "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
             "layernorm.weight": "norm.weight", "layernorm.bias": "norm.bias"}
# Per layer (encoder.layer.N.<name>): transformers name -> Meta name. Files written by transformers
# (4.x and 5.x save_pretrained, the Hub) use the first names; 5.x modules (a raw state_dict()) the others.
_HF_LAYER = ((r"norm([12])\.(weight|bias)", r"norm\1.\2"),
             (r"layer_scale([12])\.lambda1", r"ls\1.gamma"),
             (r"attention\.(?:output\.dense|o_proj)\.(weight|bias)", r"attn.proj.\1"),
             (r"mlp\.(fc[12])\.(weight|bias)", r"mlp.\1.\2"),
             (r"mlp\.weights_in\.(weight|bias)", r"mlp.w12.\1"),
             (r"mlp\.(?:weights_out|down_proj)\.(weight|bias)", r"mlp.w3.\1"))
# Split linears: their parts are stacked along the output rows into one Meta tensor, in this order.
_HF_PARTS = {"attn.qkv": (("attention.attention.query", "attention.attention.key", "attention.attention.value"),
                          ("attention.q_proj", "attention.k_proj", "attention.v_proj")),
             "mlp.w12": (("mlp.gate_proj", "mlp.up_proj"),)}  # SwiGLU: the gated (first) half is gate_proj


def hf_config_value(config: dict, key: str):
    return config.get(key, _HF_DEFAULTS[key])


def hf_to_meta(state: StateDict, config: dict, source: str) -> StateDict:
    """A transformers ``Dinov2Model`` state dict -> Meta's DINOv2 layout (what ``convert_backbone`` takes).

    ``config`` is the ``config.json`` next to the file; it must describe these tensors (a config of
    another model is refused rather than trusted). Checks the shapes of the parts it joins.
    """
    where = os.path.join(os.path.dirname(source), HF_CONFIG_NAME)
    model_type = config.get("model_type")
    if model_type == "dinov2_with_registers" or any(k.endswith("embeddings.register_tokens") for k in state):
        raise WeightsError(f"{source} is a DINOv2 with register tokens; LoRAT v1 uses the plain DINOv2 "
                           "(facebook/dinov2-base, -large or -giant)")
    if model_type != "dinov2":
        raise WeightsError(f"{where} describes a {model_type or 'untyped'} model (model_type), not a DINOv2 "
                           "Dinov2Model - pass the folder of facebook/dinov2-base, -large or -giant")
    out: StateDict = {}
    parts: Dict[Tuple[int, str, str], Dict[int, torch.Tensor]] = {}
    for key, v in state.items():
        k = key[len(HF_PREFIX):] if key.startswith(HF_PREFIX) else key
        if k.startswith("classifier."):  # Dinov2ForImageClassification's head: not part of the backbone
            continue
        if k in _HF_FIXED:
            out[_HF_FIXED[k]] = v
            continue
        m = re.match(r"encoder\.layer\.(\d+)\.(.+)$", k)
        meta = _hf_layer_name(m.group(2)) if m else None
        if meta is None:
            raise WeightsError(f"{source}: tensor {key} is not part of a transformers Dinov2Model - pass the "
                               "backbone's own folder (config.json + model.safetensors)")
        n = int(m.group(1))
        if isinstance(meta, tuple):  # (Meta name, part index, weight|bias)
            parts.setdefault((n, meta[0], meta[2]), {})[meta[1]] = v
        else:
            out[f"blocks.{n}.{meta}"] = v
    # The width the file itself has (config.json is checked against the tensors after the mapping).
    proj = out.get("patch_embed.proj.weight")
    hidden = proj.shape[0] if proj is not None else _hf_int(config, "hidden_size", where)
    for (n, name, suffix), found in sorted(parts.items()):
        count = len(_HF_PARTS[name][0])
        if sorted(found) != list(range(count)):
            raise WeightsError(f"{source}: layer {n} has {len(found)} of the {count} parts of {name}.{suffix} "
                               "- the file is incomplete; download it again")
        shapes = {tuple(t.shape) for t in found.values()}
        width = hidden if name == "attn.qkv" else None
        if len(shapes) != 1 or (width is not None and next(iter(shapes))[0] != width):
            raise WeightsError(f"{source}: the parts of layer {n}'s {name}.{suffix} have shapes "
                               f"{[tuple(found[i].shape) for i in range(count)]}, expected {count} equal parts"
                               + (f" of {width} rows (the embed dim)" if width is not None else "")
                               + " - the file is damaged or not a Dinov2Model")
        out[f"blocks.{n}.{name}.{suffix}"] = torch.cat([found[i] for i in range(count)], 0)
    _check_hf_config_fits_tensors(out, config, source, where)
    return out


def _hf_layer_name(rest: str):
    """``attention.attention.query.weight`` -> ("attn.qkv", 0, "weight"); ``norm1.bias`` -> "norm1.bias"."""
    name, _, suffix = rest.rpartition(".")
    for meta, layouts in _HF_PARTS.items():
        for layout in layouts:
            if name in layout and suffix in ("weight", "bias"):
                return meta, layout.index(name), suffix
    for pattern, meta in _HF_LAYER:
        if re.fullmatch(pattern, rest):
            return re.sub(pattern, meta, rest)
    return None


def _hf_int(config: dict, key: str, where: str) -> int:
    value = hf_config_value(config, key)
    if isinstance(value, (list, tuple)) and len(value) == 2 and value[0] == value[1]:
        value = value[0]  # image_size / patch_size may be [h, w]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise WeightsError(f"{where}: {key} is {value!r}, expected a positive integer - download it again")
    return value


def _check_hf_config_fits_tensors(meta: StateDict, config: dict, source: str, where: str) -> None:
    """config.json must describe the file's tensors: a config of another model is not trusted."""
    w = meta.get("patch_embed.proj.weight")
    pos = meta.get("pos_embed")
    if w is None or pos is None:
        raise WeightsError(f"{source} lacks the patch or position embedding of a Dinov2Model - the file is "
                           "incomplete; download it again")
    patch = _hf_int(config, "patch_size", where)
    grid = _hf_int(config, "image_size", where) // patch
    swiglu = any(".mlp.w12." in k for k in meta)
    found = {"hidden_size": (_hf_int(config, "hidden_size", where), w.shape[0]),
             "num_hidden_layers": (_hf_int(config, "num_hidden_layers", where), len(block_indices(meta))),
             "patch_size": (patch, w.shape[-1]),
             "image_size": (grid * grid + 1, pos.shape[1]),
             "use_swiglu_ffn": (bool(hf_config_value(config, "use_swiglu_ffn")), swiglu)}
    for key, (said, have) in found.items():
        if said != have:
            what = {"image_size": f"image_size {hf_config_value(config, 'image_size')} ({said} positions)",
                    "use_swiglu_ffn": f"use_swiglu_ffn {said}"}.get(key, f"{key} {said}")
            holds = {"image_size": f"{have} positions", "use_swiglu_ffn": "a SwiGLU FFN" if have else "an MLP FFN",
                     "hidden_size": f"width {have}", "num_hidden_layers": f"{have} layers",
                     "patch_size": f"patch size {have}"}[key]
            raise WeightsError(f"{where} says {what} but {source} holds {holds} - the config.json belongs to "
                               "another model; keep the folder as downloaded (or saved by save_pretrained)")


def check_hf_config(config: dict, cfg: VariantConfig, source: str) -> None:
    """A Hugging Face DINOv2 config.json against the variant: what the tensors alone cannot tell
    (the number of heads, the activation, the norm epsilon) and the architecture they can."""
    where = os.path.join(os.path.dirname(source), HF_CONFIG_NAME)
    b = cfg.backbone
    hidden = _hf_int(config, "hidden_size", where)
    if hidden != b.embed_dim:
        raise WeightsError.naming(variant_mismatch(source, hidden, cfg))
    want = {"num_hidden_layers": b.depth, "num_attention_heads": b.num_heads,
            "use_swiglu_ffn": b.ffn == "swiglu", "qkv_bias": True, "layer_norm_eps": 1e-6}
    if b.ffn != "swiglu":
        want["hidden_act"] = "gelu"  # transformers' "gelu" is the exact (erf) GELU, as timm's nn.GELU
    for key, expected in want.items():
        value = hf_config_value(config, key)
        if value != expected:
            raise WeightsError(f"{where} says {key} {value!r} but variant {cfg.name} has {expected!r} - pass the "
                               "DINOv2 backbone of this variant (or the variant of this backbone)")

