"""``inspect_weights``: what a weights file is, for ``lorat info`` and for error messages."""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Optional

from .convert import hf_to_meta
from .export import export_config
from .files import WeightsFile, read_hf_config, read_weights_file
from .formats import BACKBONE_NAMES, VARIANT_LETTER, WeightsFormat, block_indices, classify

_FORMAT_NOTES = {WeightsFormat.BACKBONE_HF: "Hugging Face transformers Dinov2Model with its config.json"}


@dataclasses.dataclass
class WeightsInfo:
    """What a weights file is, for ``lorat info`` and for error messages."""
    path: str
    kind: WeightsFormat           # a str enum: compares equal to its value, e.g. "lorat-lora"
    container: str
    num_tensors: int
    num_parameters: int
    embed_dim: Optional[int]
    depth: Optional[int]
    search_grid: Optional[int]
    ffn: Optional[str]
    lora_rank: Optional[int]
    lora_alpha: Optional[float]
    use_rslora: Optional[bool]
    needs_backbone: bool
    variant: Optional[str]        # best guess, e.g. "B-224", "L-*" when the grid is unknown

    def describe(self) -> str:
        note = _FORMAT_NOTES.get(self.kind)
        lines = [f"file:            {self.path}",
                 f"format:          {self.kind} ({self.container}{', ' + note if note else ''})",
                 f"variant:         {self.variant or 'unknown'}",
                 f"backbone:        {BACKBONE_NAMES.get(self.embed_dim, '?')} (embed dim {self.embed_dim}, "
                 f"depth {self.depth}, {self.ffn or '?'} FFN)",
                 f"tensors:         {self.num_tensors}",
                 f"parameters:      {self.num_parameters:,}"]
        if self.search_grid:
            lines.append(f"search grid:     {self.search_grid}x{self.search_grid}")
        if self.lora_rank is not None:
            alpha = "not stored (the variant's alpha is used)" if self.lora_alpha is None else f"{self.lora_alpha:g}"
            lines.append(f"LoRA:            rank {self.lora_rank}, alpha {alpha}, rsLoRA {bool(self.use_rslora)}")
        lines.append(f"needs backbone:  {'yes (pass the DINOv2 file with --backbone)' if self.needs_backbone else 'no'}")
        return "\n".join(lines)


def inspect_weights(path) -> WeightsInfo:
    """Read ``path`` (a file, or a Hugging Face folder) and say what it is; damaged files are refused."""
    return inspect(read_weights_file(path))


def inspect(wf: WeightsFile) -> WeightsInfo:
    kind = classify(wf)
    t = wf.tensors
    if kind is WeightsFormat.BACKBONE_HF:
        # Described in the Meta layout; the mapping also checks that config.json fits the tensors.
        t = hf_to_meta(t, read_hf_config(wf.path), wf.path)
    embed_dim = None
    for key in ("token_type_embed", "patch_embed.proj.weight", "norm.weight"):
        if key in t:
            embed_dim = t[key].shape[-1] if key == "token_type_embed" else t[key].shape[0]
            break
    blocks = block_indices(t.keys())
    depth = blocks[-1] + 1 if blocks else None
    ffn = None
    if any(".mlp.w12." in k for k in t):
        ffn = "swiglu"
    elif any(".mlp.fc1." in k for k in t):
        # timm packs SwiGLU into fc1/fc2: then fc2's input is half of fc1's output.
        fc1 = next((v for k, v in t.items() if re.match(r"blocks\.\d+\.mlp\.fc1\.(linear\.)?weight$", k)), None)
        fc2 = next((v for k, v in t.items() if re.match(r"blocks\.\d+\.mlp\.fc2\.(linear\.)?weight$", k)), None)
        ffn = "swiglu" if fc1 is not None and fc2 is not None and fc1.shape[0] == 2 * fc2.shape[1] else "mlp"
    grid = None
    stored = export_config(wf) if kind is WeightsFormat.MERGED_EXPORT else None
    if stored is not None:
        grid = stored.search_grid
    elif "pos_embed" in t and kind.is_lorat:
        grid = int(round(math.sqrt(t["pos_embed"].shape[1])))
    rank = next((v.shape[0] for k, v in t.items() if k.endswith(".lora.A")), None)
    alpha = float(t["lora_alpha"].item()) if "lora_alpha" in t else None
    rslora = bool(t["use_rslora"].item()) if "use_rslora" in t else None
    variant = None
    if stored is not None:
        variant = stored.name
    elif embed_dim in VARIANT_LETTER and kind.is_lorat:
        geometry = {16: "224", 27: "378"}.get(grid, "224 or 378 (the file does not say; the file name usually does)")
        variant = f"{VARIANT_LETTER[embed_dim]}-{geometry}"
    elif embed_dim in VARIANT_LETTER:
        variant = f"{VARIANT_LETTER[embed_dim]}-224 or {VARIANT_LETTER[embed_dim]}-378 (a DINOv2 backbone)"
    params = sum(v.numel() for k, v in wf.tensors.items() if k not in ("lora_alpha", "use_rslora"))
    return WeightsInfo(path=wf.path, kind=kind, container=wf.container, num_tensors=len(wf.tensors),
                       num_parameters=params, embed_dim=embed_dim, depth=depth, search_grid=grid, ffn=ffn,
                       lora_rank=rank, lora_alpha=alpha, use_rslora=rslora,
                       needs_backbone=kind.needs_backbone, variant=variant)
