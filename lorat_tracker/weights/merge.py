"""LoRA merge: fold LoRA pairs into the frozen weights (W + (B @ A) * scaling, in float32), so the model
is a plain ViT. The same code merges released files and the training model (``TrainingModel.merged_model``).
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

from ..config import VariantConfig
from ..errors import WeightsError
from .files import StateDict

# Per block: LoRA-adapted linear layers, named as in our (timm) model -> names used in LoRAT files.
_MLP_LINEARS = {"mlp.fc1": ("mlp.fc1", "mlp.w12"), "mlp.fc2": ("mlp.fc2", "mlp.w3")}


def lora_delta(a: torch.Tensor, b: torch.Tensor, scaling: float) -> torch.Tensor:
    """(B @ A) * scaling in float32, the official merge arithmetic."""
    return (b.float() @ a.float()) * scaling


def merge_lora(base: StateDict, lora: StateDict, cfg: VariantConfig, source: str) -> Tuple[StateDict, set]:
    """Fold LoRA pairs of ``lora`` into the backbone tensors of ``base`` (our key names).

    ``lora`` uses LoRAT key names: ``blocks.N.attn.qkv.{q,k,v}.lora.{A,B}``,
    ``blocks.N.attn.proj.lora.*``, ``blocks.N.mlp.{fc1,fc2 | w12,w3}.lora.*``; a full unmerged dict
    also carries ``...linear.weight/bias``, which replace the base weights. Returns the merged dict
    and the set of ``lora`` keys used.
    """
    out = dict(base)
    used = set()
    alpha_t, rslora_t = lora.get("lora_alpha"), lora.get("use_rslora")
    for k in ("lora_alpha", "use_rslora"):
        if k in lora:
            used.add(k)
    # Without the meta tensors (newer checkpoints), use the variant's alpha / rsLoRA. The official
    # loader falls back to scaling 1.0 there, which equals this for every released config (alpha = r).
    alpha = float(alpha_t.item()) if alpha_t is not None else float(cfg.lora.alpha)
    use_rslora = bool(rslora_t.item()) if rslora_t is not None else bool(cfg.lora.use_rslora)

    def take(key):
        used.add(key)
        return lora[key]

    def base_linear(prefix_ours: str, prefix_file: str, part: Optional[slice]):
        w_key, b_key = f"{prefix_ours}.weight", f"{prefix_ours}.bias"
        weight = bias = None
        for cand in (f"{prefix_file}.linear.weight", f"{prefix_file}.weight"):
            if cand in lora:
                weight = take(cand)
                break
        for cand in (f"{prefix_file}.linear.bias", f"{prefix_file}.bias"):
            if cand in lora:
                bias = take(cand)
                break
        if weight is None:
            if w_key not in out:
                raise WeightsError(f"{source}: no base weight for {prefix_file} - pass the DINOv2 backbone")
            weight = out[w_key] if part is None else out[w_key][part]
        if bias is None and b_key in out:
            bias = out[b_key] if part is None else out[b_key][part]
        return weight, bias

    def merged(prefix_file: str, weight: torch.Tensor) -> torch.Tensor:
        a_key, b_key = f"{prefix_file}.lora.A", f"{prefix_file}.lora.B"
        if a_key not in lora and b_key not in lora:
            return weight
        if a_key not in lora or b_key not in lora:
            raise WeightsError(f"{source}: {a_key if a_key not in lora else b_key} is missing "
                               "(LoRA A and B come in pairs) - the file is incomplete")
        a, b = take(a_key), take(b_key)
        r = a.shape[0]
        if b.shape[1] != r or a.shape[1] != weight.shape[1] or b.shape[0] != weight.shape[0]:
            raise WeightsError(f"{source}: LoRA {prefix_file} has A {tuple(a.shape)} and B {tuple(b.shape)}, "
                               f"which do not fit the weight {tuple(weight.shape)} of variant {cfg.name}")
        scaling = alpha / math.sqrt(r) if use_rslora else alpha / r
        return (weight.float() + lora_delta(a, b, scaling)).to(weight.dtype)

    d = cfg.backbone.embed_dim
    for n in range(cfg.backbone.depth):
        p = f"blocks.{n}"
        # Fused qkv: q, k, v rows merged separately, then concatenated in that order.
        if any(k.startswith(f"{p}.attn.qkv.") and k not in (f"{p}.attn.qkv.weight", f"{p}.attn.qkv.bias")
               for k in lora):
            weights, biases = [], []
            for i, part in enumerate("qkv"):
                rows = slice(i * d, (i + 1) * d)
                w, bias = base_linear(f"{p}.attn.qkv", f"{p}.attn.qkv.{part}", rows)
                weights.append(merged(f"{p}.attn.qkv.{part}", w))
                biases.append(bias)
            out[f"{p}.attn.qkv.weight"] = torch.cat(weights, 0)
            if all(bias is not None for bias in biases):
                out[f"{p}.attn.qkv.bias"] = torch.cat(biases, 0)
        linears = {"attn.proj": ("attn.proj",), **_MLP_LINEARS}
        for ours, file_names in linears.items():
            for file_name in file_names:
                prefix_file = f"{p}.{file_name}"
                if any(k.startswith(prefix_file + ".") for k in lora):
                    w, bias = base_linear(f"{p}.{ours}", prefix_file, None)
                    out[f"{p}.{ours}.weight"] = merged(prefix_file, w)
                    if bias is not None:
                        out[f"{p}.{ours}.bias"] = bias
    return out, used
