"""The tiny random SAM of the segmentify fixture, rebuilt from its seed (never downloaded).

``torch.manual_seed(seed)`` + ``segment_anything.build_sam._build_sam(...)`` with the arguments in
``fixtures/segmentify/sam_tiny.json`` gives the exact weights the fixture masks were made with;
``build()`` checks that against the recorded SHA-256 of the state dict.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "segmentify"
CONFIG = json.loads((FIXTURE / "sam_tiny.json").read_text())


def state_dict_sha256(state) -> str:
    """The recipe of sam_tiny.json: sorted keys, each key, shape, dtype and raw bytes."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k]
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def build() -> torch.nn.Module:
    from segment_anything.build_sam import _build_sam

    torch.manual_seed(CONFIG["seed"])
    sam = _build_sam(CONFIG["encoder_embed_dim"], CONFIG["encoder_depth"], CONFIG["encoder_num_heads"],
                     CONFIG["encoder_global_attn_indexes"], checkpoint=None).eval()
    digest = state_dict_sha256(sam.state_dict())
    assert digest == CONFIG["state_dict_sha256"], f"the tiny SAM did not rebuild bit for bit ({digest})"
    return sam


def refiner(**kwargs):
    from lorat_tracker.segmentation import BoxToMask

    kwargs.setdefault("device", "cpu")
    return BoxToMask(build(), **kwargs)


def save_checkpoint(path) -> Path:
    """A checkpoint file in Meta's layout (torch.save of the state dict), for the CLI and VOT tests."""
    path = Path(path)
    torch.save(build().state_dict(), path)
    return path
