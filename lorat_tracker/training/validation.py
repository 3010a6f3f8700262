"""Validation during training: the loss over fixed validation pairs, and the tracking evaluation.

The tracking evaluation is a part the caller passes in (``Trainer(cfg, evaluator=...)``): the core
does not know which toolkit scores it. ``lorat train`` passes the GOT-10k toolkit's AO / success
rates (``integrations/got10k/training.py``). An evaluator is a callable

    evaluator(sequences, weights=PATH, device=DEVICE) -> {"AO", "SR0.50", "SR0.75", "sequences", "frames", ...}

(or None when no sequence has two frames to track), called on rank 0 with the weights of the moment
in the released format. ``EvaluatorUnavailable(note)`` stands for one whose packages are missing:
the run trains on and logs the note at each evaluation.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Protocol

import torch

from .loader import make_loader


class Evaluator(Protocol):
    def __call__(self, sequences: List[Any], weights: str, device: torch.device) -> Optional[Dict[str, Any]]:
        ...


@dataclasses.dataclass
class EvaluatorUnavailable:
    """No tracking evaluation, and why (``note`` is logged each time one would run)."""
    note: str


@torch.no_grad()
def validation_loss(model, criterion, dataset, batch_size: int, *, rank: int, world: int, workers: int, device,
                    autocast: Callable) -> float:
    """Mean loss of ``model`` (not its DDP wrapper: nothing to synchronise) over ``dataset``, the fixed
    validation pairs (the same transform as training, as the official run): whole global batches,
    averaged over all ranks' batches. Leaves the model in training mode."""
    from .optim import BATCH_KEYS

    steps = range(len(dataset) // batch_size)
    loader = make_loader(dataset, steps, batch_size, rank, world, workers)
    model.eval()
    total, count = 0.0, 0
    for batch in loader:
        batch = {k: batch[k].to(device, non_blocking=True) for k in BATCH_KEYS}
        with autocast():
            score_map, boxes = model(batch["z"], batch["x"], batch["z_feat_mask"])
        loss, _ = criterion(score_map.float(), boxes.float(), batch["positive_mask"], batch["label_boxes"])
        total += float(loss)
        count += 1
    model.train()
    t = torch.tensor([total, count], dtype=torch.float64)
    if world > 1:
        t = t.to(device if device.type == "cuda" else "cpu")
        torch.distributed.all_reduce(t)
    return float(t[0] / t[1])


def print_tracking_table(table: Dict[str, Any], title: str, log: Callable[[str], None]) -> None:
    log(f"{title} ({table['sequences']} sequences, {table['frames']} frames)")
    log("  ".join(c.rjust(7) for c in ("AO", "SR0.50", "SR0.75")))
    log("  ".join(f"{table[c]:.3f}".rjust(7) for c in ("AO", "SR0.50", "SR0.75")))
