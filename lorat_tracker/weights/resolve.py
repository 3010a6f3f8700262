"""``resolve``: the files a user passed -> everything a build needs; ``build_model``: the inference build.

One resolver serves both builds, so the inference model (``build_model``) and the training model
(``training.model.build_training_model``) accept the same files, refuse the same mistakes with the
same messages, and start from the same frozen backbone tensors.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import torch

from ..config import VariantConfig, load_config
from ..errors import WeightsError
from ..model import LoRATModel
from ..spec import literal
from .convert import (carried_backbone, check_hf_config, convert_backbone, fetch_backbone_with_timm, hf_to_meta,
                      meta_to_timm_key)
from .export import export_config
from .files import StateDict, WeightsFile, check_tensors, read_hf_config, read_weights_file
from .formats import META_KEYS, WeightsFormat, block_indices, classify, is_trainable_name, variant_mismatch
from .merge import merge_lora


@dataclasses.dataclass(frozen=True)
class ResolvedWeights:
    """What ``resolve`` found: the variant, the frozen backbone and the LoRAT tensors, from checked files."""
    cfg: VariantConfig
    weights_format: Optional[WeightsFormat]    # None: no weights file (training from the official init)
    backbone_format: Optional[WeightsFormat]   # the backbone file's; None when the weights carry the backbone
    weights_source: Optional[str]              # the LoRAT weights file read
    backbone_source: str                       # where the frozen backbone came from: a file or timm's model name
    base: StateDict       # the frozen backbone in our inference keys (a backbone file's pos_embed resized to
                          # the search grid; one carried in the weights file already is); no LoRA folded in
    trained: StateDict    # the file's trained tensors (official names: LoRA A/B, head, token types) + meta tensors
    merged: Optional[StateDict]  # the complete inference state (LoRA folded in); None when resolved for training


def resolve(variant, weights=None, backbone=None, *, training: bool = False) -> ResolvedWeights:
    """Read, check and convert the files of a model build.

    ``variant``: a bundled name ("B-224"), a YAML path or a ``VariantConfig``; may be None when
    ``weights`` is a merged export (its config is stored inside). ``weights``: any LoRAT file (the
    released ``.bin``, a training ``model.safetensors``, a full unmerged state dict, a merged state
    dict or export). ``backbone``: the DINOv2 file or Hugging Face folder, needed unless ``weights``
    holds the backbone; when omitted, timm may fetch it. ``training``: resolve for fine-tuning:
    no weights is fine (the official init follows), merged weights are refused, nothing is merged.
    """
    wf = read_weights_file(weights) if weights is not None else None
    fmt = classify(wf) if wf is not None else None
    cfg = _variant_config(variant, wf, fmt)
    if wf is None and not training:
        raise WeightsError.naming(f"variant {literal(cfg.name)} needs LoRAT weights (the released .bin, a training "
                                  "model.safetensors or a merged export) - pass {weights:FILE}")
    if wf is not None:
        _check_weights(wf, fmt, cfg, training)
    if wf is not None and not fmt.needs_backbone:
        # The file carries the backbone (full unmerged / merged / export): a backbone argument is ignored.
        base, backbone_format, backbone_source = carried_backbone(wf.tensors, wf.path), None, wf.path
    else:
        base, backbone_format, backbone_source = _read_backbone(backbone, cfg)
    tensors = wf.tensors if wf is not None else {}
    trained = {k: v for k, v in tensors.items() if is_trainable_name(k) or k in META_KEYS}
    merged = None if training else _merge(wf, fmt, base, cfg)
    return ResolvedWeights(cfg=cfg, weights_format=fmt, backbone_format=backbone_format,
                           weights_source=wf.path if wf is not None else None, backbone_source=backbone_source,
                           base=base, trained=trained, merged=merged)


def build_model(variant, weights=None, backbone=None, device="cpu") -> LoRATModel:
    """The one entry point: a merged, ready-to-run ``LoRATModel`` in eval mode (see ``resolve``)."""
    res = resolve(variant, weights, backbone)
    return instantiate(res.cfg, res.merged, res.weights_source, device).eval()


def instantiate(cfg: VariantConfig, state: StateDict, source: str, device="cpu",
                model_class: Callable[[VariantConfig], LoRATModel] = LoRATModel):
    """``model_class(cfg)`` holding exactly ``state`` (float32): every tensor present with its shape.

    Built on the meta device and loaded by assignment, so no memory goes to a random init.
    """
    with torch.device("meta"):
        model = model_class(cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        raise WeightsError.naming(f"{literal(source)} lacks {len(missing)} tensors of variant {literal(cfg.name)} "
                                  f"({literal(', '.join(missing[:4]))}{', ...' if len(missing) > 4 else ''}) - "
                                  "the file is incomplete, or a backbone file is needed (pass {backbone:FILE})")
    if unexpected:
        raise WeightsError(f"{source} has tensors that variant {cfg.name} does not have "
                           f"({', '.join(unexpected[:4])}) - check the variant")
    for k, ref in expected.items():
        if tuple(state[k].shape) != tuple(ref.shape):
            if k == "pos_embed":
                have = int(round(math.sqrt(state[k].shape[1])))
                hint = {16: "a 224 variant", 27: "a 378 variant"}.get(have, "another geometry")
                raise WeightsError(f"{source} has a {have}x{have} search grid ({hint}) but variant {cfg.name} "
                                   f"uses {cfg.search_grid}x{cfg.search_grid} - pass the matching variant")
            raise WeightsError.naming(_shape_mismatch(source, k, tuple(state[k].shape), tuple(ref.shape), cfg))
    state = {k: v.to(torch.float32).contiguous() for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.pos_embed.requires_grad_(False)
    model.head.reset_buffers()
    return model.to(device)


# ----------------------------------------------------------------------------------------- steps

def _variant_config(variant, wf: Optional[WeightsFile], fmt: Optional[WeightsFormat]) -> VariantConfig:
    if fmt is WeightsFormat.MERGED_EXPORT:
        stored = export_config(wf)
        cfg = stored if variant is None else load_config(variant)
        if variant is not None and _arch(stored) != _arch(cfg):
            raise WeightsError.naming(f"{literal(wf.path)} was exported for variant {literal(stored.name)} but "
                                      f"{literal(cfg.name)} was asked - pass {{variant:{literal(stored.name)}}} "
                                      "(or no variant)")
        return cfg
    if variant is None:
        raise WeightsError("pass a variant (e.g. B-224): only a merged export made by "
                           "`lorat export` carries its own")
    return load_config(variant)


def _check_weights(wf: WeightsFile, fmt: WeightsFormat, cfg: VariantConfig, training: bool) -> None:
    """The weights file is LoRAT weights of this variant (and, for training, unmerged LoRA)."""
    if fmt.is_backbone:
        raise WeightsError.naming(f"{literal(wf.path)} is a DINOv2 backbone, not LoRAT weights - pass it as "
                                  "{backbone:FILE} and the LoRAT .bin as {weights:FILE}")
    if fmt is WeightsFormat.UNKNOWN:
        raise WeightsError(f"{wf.path} holds none of the tensors of a LoRAT model "
                           f"(first keys: {', '.join(list(wf.tensors)[:5])})")
    if training and fmt.is_merged:
        raise WeightsError(f"{wf.path} holds merged weights (LoRA already folded into the backbone), which "
                           "cannot be fine-tuned as LoRA - pass the unmerged LoRAT file (the released .bin, "
                           "a training model.safetensors or a previous run's lorat.bin)")
    if training and not fmt.has_lora:
        raise WeightsError(f"{wf.path} holds no LoRA tensors of a LoRAT model (it is {fmt}) - pass the "
                           f"released LoRAT .bin of variant {cfg.name}")
    tensors = wf.tensors
    if training and fmt.needs_backbone:
        # Inference lets a LoRA file replace a base weight (merge_lora); a fine-tuning start takes none.
        frozen = sorted(k for k in tensors if not is_trainable_name(k) and k not in META_KEYS)
        if frozen:
            raise WeightsError.naming(f"{literal(wf.path)} has {len(frozen)} tensors besides LoRA, head and token "
                                      f"types ({literal(', '.join(frozen[:4]))}) that a LoRA file of variant "
                                      f"{literal(cfg.name)} does not have - check the variant ({{variant}})")
    if "token_type_embed" in tensors and tensors["token_type_embed"].shape[-1] != cfg.backbone.embed_dim:
        raise WeightsError.naming(variant_mismatch(wf.path, tensors["token_type_embed"].shape[-1], cfg))
    lora_blocks = block_indices(k for k in tensors if ".lora." in k)
    if lora_blocks and lora_blocks != list(range(cfg.backbone.depth)):
        raise WeightsError.naming(f"{literal(wf.path)} has LoRA for {len(lora_blocks)} blocks but variant "
                                  f"{literal(cfg.name)} has {cfg.backbone.depth} - it belongs to another variant; "
                                  "check the variant ({variant})")


def _read_backbone(backbone, cfg: VariantConfig):
    """(frozen backbone in our keys, its file format or None, its source) from a file, folder or timm."""
    if backbone is None:
        name = cfg.backbone.timm_name
        tensors = fetch_backbone_with_timm(cfg)
        check_tensors(tensors, name)
        return convert_backbone(tensors, cfg, source=name), None, name
    bf = read_weights_file(backbone)
    fmt = classify(bf)
    if fmt.is_lorat:
        raise WeightsError.naming(f"{literal(bf.path)} is a LoRAT weights file, not a DINOv2 backbone - pass "
                                  f"{literal(cfg.backbone.meta_file or 'the DINOv2 file')} as {{backbone:FILE}} and "
                                  "the LoRAT file as {weights:FILE}")
    tensors = bf.tensors
    if fmt is WeightsFormat.BACKBONE_HF:
        config = read_hf_config(bf.path)
        tensors = hf_to_meta(tensors, config, bf.path)
        check_hf_config(config, cfg, bf.path)
    return convert_backbone(tensors, cfg, source=bf.path), fmt, bf.path


def _merge(wf: WeightsFile, fmt: WeightsFormat, base: StateDict, cfg: VariantConfig) -> StateDict:
    """The inference state: LoRA folded into ``base``, head and token types added; nothing left over."""
    tensors = wf.tensors
    merged, used = merge_lora(base, tensors, cfg, wf.path)
    for k in ("token_type_embed",) + tuple(k for k in tensors if k.startswith("head.")):
        if k in tensors:
            merged[k] = tensors[k]
            used.add(k)
    if fmt.needs_backbone:
        unexpected = sorted(set(tensors) - used)
    else:
        unexpected = sorted(k for k in set(tensors) - used if meta_to_timm_key(k) not in merged)
    if unexpected:
        raise WeightsError.naming(f"{literal(wf.path)} has {len(unexpected)} tensors that variant {literal(cfg.name)} "
                                  f"does not have ({literal(', '.join(unexpected[:4]))}"
                                  f"{', ...' if len(unexpected) > 4 else ''}) - it was made for another "
                                  "architecture; check the variant ({variant})")
    return merged


def _shape_mismatch(source: str, key: str, have: tuple, want: tuple, cfg: VariantConfig) -> str:
    """Say which dimension of ``key`` is wrong, and blame the variant only if it is the embed dim (a
    ``LoRATError.naming`` template)."""
    embed_axis = {"patch_embed.proj.weight": 0, "token_type_embed": -1}.get(key)
    if embed_axis is not None and len(have) == len(want) and have[embed_axis] != want[embed_axis]:
        return variant_mismatch(source, have[embed_axis], cfg)
    if key == "token_type_embed" and len(have) == 2 and have[-1] == want[-1]:
        return (f"{literal(source)}: tensor token_type_embed has {have[0]} token types (shape {have}), but LoRAT "
                f"has {want[0]} (template background, template foreground, search region; shape {want}) - the "
                "file is damaged or is not LoRAT weights")
    return (f"{literal(source)}: tensor {literal(key)} has shape {have} but variant {literal(cfg.name)} expects "
            f"{want} - the file belongs to another architecture (check the variant) or is damaged")


def _arch(cfg: VariantConfig):
    return (cfg.backbone.embed_dim, cfg.backbone.depth, cfg.backbone.num_heads, cfg.backbone.ffn,
            cfg.backbone.patch_size, cfg.template.size, cfg.search.size)
