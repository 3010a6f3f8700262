"""What a weights file is (``WeightsFormat``), told by its tensor names, plus the key-name rules behind it."""
from __future__ import annotations

import enum
import re
from typing import Iterable, List

from ..config import VariantConfig
from .export import EXPORT_FORMAT
from .files import WeightsFile

# The released files' 0-d meta tensors (LoRA alpha and the rsLoRA switch): no weights.
META_KEYS = ("lora_alpha", "use_rslora")
BACKBONE_NAMES = {384: "ViT-S", 768: "ViT-B", 1024: "ViT-L", 1536: "ViT-g"}
VARIANT_LETTER = {768: "B", 1024: "L", 1536: "g"}
# A transformers Dinov2Model's patch embedding (prefixed "dinov2." inside Dinov2ForImageClassification).
HF_PATCH_KEY = "embeddings.patch_embeddings.projection.weight"
HF_PREFIX = "dinov2."


class WeightsFormat(str, enum.Enum):
    """The kinds of weights file LoRAT users have; the value is what ``lorat info`` prints.

    A str enum, so ``fmt == "lorat-lora"`` and JSON output keep working for callers that had strings.
    """
    # LoRA A/B (qkv split into q/k/v), head and token types: the released .bin (with the lora_alpha /
    # use_rslora meta tensors) and the newer training model.safetensors (same keys, no meta tensors).
    LORAT_LORA = "lorat-lora"
    # A training state dict: the frozen ...linear.weight/bias tensors besides the LoRA, head and token types.
    LORAT_FULL_UNMERGED = "lorat-full-unmerged"
    LORAT_MERGED = "lorat-merged"            # an official merged state dict: a plain ViT plus the head
    LORAT_HEAD_ONLY = "lorat-head-only"      # head (+ token types) without LoRA: needs a backbone
    MERGED_EXPORT = "merged-export"          # ours (lorat export): merged, the variant config in the header
    BACKBONE_META = "backbone-meta"          # Meta's dinov2_vit*14_pretrain.pth
    BACKBONE_TIMM = "backbone-timm"          # timm's vit_*_patch14_dinov2 (safetensors or .pth)
    BACKBONE_HF = "backbone-hf"              # Hugging Face transformers Dinov2Model + its config.json
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def is_backbone(self) -> bool:
        return self in (WeightsFormat.BACKBONE_META, WeightsFormat.BACKBONE_TIMM, WeightsFormat.BACKBONE_HF)

    @property
    def is_lorat(self) -> bool:
        """LoRAT weights of any layout (what ``weights=`` takes)."""
        return self.value.startswith("lorat") or self is WeightsFormat.MERGED_EXPORT

    @property
    def needs_backbone(self) -> bool:
        """LoRAT weights without the frozen backbone tensors: a DINOv2 file completes them."""
        return self in (WeightsFormat.LORAT_LORA, WeightsFormat.LORAT_HEAD_ONLY)

    @property
    def is_merged(self) -> bool:
        return self in (WeightsFormat.LORAT_MERGED, WeightsFormat.MERGED_EXPORT)

    @property
    def has_lora(self) -> bool:
        return self in (WeightsFormat.LORAT_LORA, WeightsFormat.LORAT_FULL_UNMERGED)


def classify(wf: WeightsFile) -> WeightsFormat:
    """The format of a file read by ``read_weights_file``, by its header and tensor names."""
    keys = wf.tensors.keys()
    if wf.metadata.get("format") == EXPORT_FORMAT:
        return WeightsFormat.MERGED_EXPORT
    has_lora = any(".lora." in k for k in keys)
    has_base = "patch_embed.proj.weight" in keys
    has_head = any(k.startswith("head.cls_mlp") for k in keys)
    if has_lora:
        return WeightsFormat.LORAT_FULL_UNMERGED if has_base else WeightsFormat.LORAT_LORA
    if has_head:
        return WeightsFormat.LORAT_MERGED if has_base else WeightsFormat.LORAT_HEAD_ONLY
    if HF_PATCH_KEY in keys or HF_PREFIX + HF_PATCH_KEY in keys:
        return WeightsFormat.BACKBONE_HF
    if "mask_token" in keys or any(".mlp.w12." in k for k in keys):
        return WeightsFormat.BACKBONE_META
    if has_base:
        return WeightsFormat.BACKBONE_TIMM
    return WeightsFormat.UNKNOWN


def is_trainable_name(name: str) -> bool:
    """Official trainable set (reference 2.5): LoRA A/B, the head and the token-type embedding."""
    return name == "token_type_embed" or name.startswith("head.") or ".lora." in name


def block_indices(keys: Iterable[str]) -> List[int]:
    found = set()
    for k in keys:
        m = re.match(r"blocks\.(\d+)\.", k)
        if m:
            found.add(int(m.group(1)))
    return sorted(found)


def variant_mismatch(source: str, embed_dim: int, cfg: VariantConfig) -> str:
    """The message template (``LoRATError.naming``) for a file of another width than the variant,
    naming the variant that fits."""
    from ..spec import literal

    have = BACKBONE_NAMES.get(embed_dim, "unknown size")
    msg = (f"{literal(source)} has embed dim {embed_dim} ({have}) but variant {literal(cfg.name)} expects "
           f"{cfg.backbone.embed_dim}")
    letter = VARIANT_LETTER.get(embed_dim)
    geometry = cfg.name.split("-")[-1] if "-" in cfg.name else "224"
    if letter:
        return msg + f" - pass {{variant:{letter}-{literal(geometry)}}} (or the weights of {literal(cfg.name)})"
    return msg + " - pass the weights that belong to this variant"
