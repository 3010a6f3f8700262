"""The one place that uses segment-anything's private API (checked against segment-anything 1.0).

``segment_anything.build_sam`` exposes ``build_sam_vit_b/l/h(checkpoint)``, each a fixed size that loads
the file itself with ``torch.load``. The project reads and checks checkpoints on its own
(checkpoint.py: no pickle code runs, every tensor validated) and needs a ``Sam`` module of the size the
file holds, empty, to load into: that is ``build_sam._build_sam(encoder_embed_dim, encoder_depth,
encoder_num_heads, encoder_global_attn_indexes, checkpoint)``, private. If a release drops or changes
it, this module says so in one line instead of a TypeError deep in a build.
"""
from __future__ import annotations

import inspect
from typing import Sequence


CHECKED_WITH = "1.0"
_PARAMETERS = ["encoder_embed_dim", "encoder_depth", "encoder_num_heads", "encoder_global_attn_indexes",
               "checkpoint"]


def build_empty_sam(embed_dim: int, depth: int, num_heads: int, global_attn_indexes: Sequence[int]):
    """Meta's ``Sam`` module of this image-encoder size, built by segment-anything's own code (without
    weights: call it under ``torch.device("meta")`` to skip the random init)."""
    from .checkpoint import SamNotInstalledError, import_segment_anything

    build_sam = import_segment_anything()
    private = getattr(build_sam, "_build_sam", None)
    if private is None or list(inspect.signature(private).parameters) != _PARAMETERS:
        raise SamNotInstalledError(
            "this segment-anything has no _build_sam(encoder_embed_dim, encoder_depth, encoder_num_heads, "
            f"encoder_global_attn_indexes, checkpoint) as version {CHECKED_WITH} has - install that version: "
            'pip install "lorat-tracker[sam]"')
    return private(embed_dim, depth, num_heads, list(global_attn_indexes), checkpoint=None)
