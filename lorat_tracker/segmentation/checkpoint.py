"""Meta's SAM checkpoints: reading and checking one, its image-encoder size, building ``Sam`` from it.

``segment-anything`` (the ``sam`` extra) is imported only when a model is built
(``import_segment_anything``); reading and checking a file needs only torch.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Dict, Optional, Tuple

import torch

from ..errors import ConfigError, LoRATError, WeightsError, WeightsNotFoundError
from .geometry import SAM_INPUT_SIZE

INSTALL_HINT = 'pip install "lorat-tracker[sam]"'

# Meta's released SAM image encoders (segment_anything/build_sam.py): embed dim, depth, heads, global blocks.
MODEL_TYPES: Dict[str, Tuple[int, int, int, Tuple[int, ...]]] = {
    "vit_b": (768, 12, 12, (2, 5, 8, 11)),
    "vit_l": (1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": (1280, 32, 16, (7, 15, 23, 31)),
}
CHECKPOINT_NAMES = {"vit_b": "sam_vit_b_01ec64.pth", "vit_l": "sam_vit_l_0b3195.pth", "vit_h": "sam_vit_h_4b8939.pth"}


class SamNotInstalledError(LoRATError, ImportError):
    """Masks were asked for but the ``segment-anything`` package is missing."""


class SamCheckpointError(WeightsError):
    """A SAM checkpoint that is corrupt, not a SAM file, or another SAM size than asked."""


class SamCheckpointNotFoundError(SamCheckpointError, WeightsNotFoundError):
    """A SAM checkpoint path that does not exist."""


def import_segment_anything():
    import importlib

    try:
        # Not `import segment_anything.build_sam as m`: the package exports a function named build_sam.
        build_sam = importlib.import_module("segment_anything.build_sam")
    except ImportError as e:
        raise SamNotInstalledError(f"masks need the segment-anything package ({e}) - install it with: "
                                   f"{INSTALL_HINT}") from None
    return build_sam



@dataclasses.dataclass(frozen=True)
class SamArchitecture:
    """What a ``Sam`` module's size is (``sam_shim.build_empty_sam``), read from a checkpoint's image-encoder
    tensors."""
    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: Tuple[int, ...]

    @property
    def model_type(self) -> Optional[str]:
        """"vit_b" / "vit_l" / "vit_h" for Meta's released sizes, else None."""
        for name, spec in MODEL_TYPES.items():
            if spec == (self.embed_dim, self.depth, self.num_heads, self.global_attn_indexes):
                return name
        return None

    def describe(self) -> str:
        kind = self.model_type
        size = f"ViT-{kind[-1].upper()}" if kind else "a non-standard SAM"
        return f"{size} (image encoder embed dim {self.embed_dim}, depth {self.depth})"


def _normalize_model_type(model_type: Optional[str]) -> Optional[str]:
    if model_type is None:
        return None
    key = str(model_type).strip().lower().replace("-", "_")
    key = {"b": "vit_b", "l": "vit_l", "h": "vit_h", "vitb": "vit_b", "vitl": "vit_l", "vith": "vit_h"}.get(key, key)
    if key not in MODEL_TYPES:
        raise ConfigError(f"unknown SAM model type {model_type!r}: use vit_b, vit_l or vit_h "
                          "(or leave it out: the type is read from the checkpoint)")
    return key


def detect_architecture(state: Dict[str, torch.Tensor], source: str) -> SamArchitecture:
    """The image encoder's size from its tensors (Meta key names)."""
    patch = state.get("image_encoder.patch_embed.proj.weight")
    if patch is None and "image_encoder.trunk.patch_embed.proj.weight" in state:
        from ..spec import literal

        raise SamCheckpointError.naming(f"{literal(source)} is a SAM 2 checkpoint, not SAM v1 - use {{masks:sam2}} for "
                                        f"it, or pass Meta's SAM file, e.g. {CHECKPOINT_NAMES['vit_h']}")
    if patch is None or patch.ndim != 4 or not any(k.startswith("mask_decoder.") for k in state):
        raise SamCheckpointError(f"{source} is not a SAM checkpoint (no image_encoder / mask_decoder tensors) - pass "
                                 f"Meta's file, e.g. {CHECKPOINT_NAMES['vit_h']}")
    embed_dim = int(patch.shape[0])
    blocks = sorted({int(m.group(1)) for k in state for m in [re.match(r"image_encoder\.blocks\.(\d+)\.", k)] if m})
    if not blocks or blocks != list(range(len(blocks))):
        raise SamCheckpointError(f"{source}: the image encoder blocks are missing or not numbered 0..N-1 - the file "
                                 "is incomplete; download it again")
    rel = [state.get(f"image_encoder.blocks.{b}.attn.rel_pos_h") for b in blocks]
    if any(r is None or r.ndim != 2 for r in rel):
        raise SamCheckpointError(f"{source}: image encoder blocks without relative position tensors - not a SAM "
                                 "checkpoint of segment-anything, or incomplete")
    head_dim = int(rel[0].shape[1])
    if head_dim <= 0 or embed_dim % head_dim:
        raise SamCheckpointError(f"{source}: inconsistent head size {head_dim} for embed dim {embed_dim}")
    grid = SAM_INPUT_SIZE // 16
    global_idx = tuple(b for b, r in zip(blocks, rel) if int(r.shape[0]) == 2 * grid - 1)
    return SamArchitecture(embed_dim, len(blocks), embed_dim // head_dim, global_idx)


def read_sam_checkpoint(path) -> Tuple[Dict[str, torch.Tensor], SamArchitecture]:
    """Meta's ``sam_vit_*.pth`` (or a safetensors copy): validated state dict and architecture.

    Read by the project's one weights reader (``torch.load(weights_only=True)`` or safetensors: no
    pickled code runs), which refuses non-float and non-finite tensors: a NaN in a SAM weight would
    only show as empty masks.
    """
    from ..weights import read_weights_file

    path = os.fspath(path)
    if not os.path.exists(path):
        raise SamCheckpointNotFoundError(f"SAM checkpoint {path} does not exist - download Meta's file, e.g. "
                                         f"{CHECKPOINT_NAMES['vit_h']}, and pass its path")
    try:
        wf = read_weights_file(path)  # also refuses non-float and non-finite tensors, naming each
    except WeightsError as e:
        raise SamCheckpointError(f"SAM checkpoint: {e}") from None
    state = wf.tensors
    arch = detect_architecture(state, path)
    return state, arch


def check_state_matches(state: Dict[str, torch.Tensor], expected: Dict[str, torch.Tensor], source: str,
                        described: str, otherwise: str) -> None:
    """``state`` holds exactly the tensors of ``expected`` (a built model's state dict), each of its shape,
    or SamCheckpointError naming the first difference (``otherwise``: what else the file may be)."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        what = (f"lacks {len(missing)} tensors ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})"
                if missing else f"has unexpected tensors ({', '.join(unexpected[:3])})")
        raise SamCheckpointError(f"{source} {what} of {described} - the file is incomplete or {otherwise}; "
                                 "download it again")
    for k, ref in expected.items():
        if tuple(state[k].shape) != tuple(ref.shape):
            raise SamCheckpointError(f"{source}: tensor {k} has shape {tuple(state[k].shape)}, {described} "
                                     f"expects {tuple(ref.shape)} - the file is corrupt")


def build_sam_from_state(state: Dict[str, torch.Tensor], arch: SamArchitecture, source: str) -> torch.nn.Module:
    """Meta's ``Sam`` module of ``arch`` holding exactly ``state`` (float32, CPU), or SamCheckpointError."""
    from .sam_shim import build_empty_sam

    with torch.device("meta"):  # no random init of hundreds of millions of weights that are replaced anyway
        sam = build_empty_sam(arch.embed_dim, arch.depth, arch.num_heads, arch.global_attn_indexes)
    check_state_matches(state, sam.state_dict(), source, arch.describe(), "not from segment-anything")
    sam.load_state_dict({k: v.to(torch.float32).contiguous() for k, v in state.items()}, strict=True, assign=True)
    # pixel_mean / pixel_std are not in the state dict: built on the CPU with the module (segment-anything's
    # Sam registers them from constants).
    leftovers = [n for n, t in list(sam.named_parameters()) + list(sam.named_buffers()) if t.is_meta]
    if leftovers:  # never half-loaded
        raise SamCheckpointError(f"{source}: {len(leftovers)} SAM tensors were not loaded ({leftovers[0]})")
    return sam.eval()
