"""The official LoRAT criterion (``box_with_score_map``): IoU-aware BCE + GIoU, weights 1 and 1.

Reference section 4.6 and ``tests/fixtures/training-step/README.md`` (Loss):

- num_pos = positive cells of the batch, averaged over ranks when torch.distributed is initialised,
  clamped >= 1 (each rank divides by the mean, DDP averages the gradients: together the sum over
  every rank's cells divided by the global positive count);
- classification: BCE-with-logits summed over *every* cell (negatives too) against a target that is
  0 everywhere and, at each positive cell, the IoU of the ground truth with that cell's predicted box
  (no gradient) - divided by num_pos;
- regression: sum over positive cells of 1 - GIoU(pred, gt) / num_pos.

The IoU / GIoU are written out rather than taken from ``torchvision.ops``: torchvision adds 1e-7 to
the union and the enclosing area, while the official code (mmdet's ``bbox_overlaps``) clamps both at
1e-6 - other numbers for small or degenerate boxes, which occur with random predictions.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import distributed


def aligned_box_iou(boxes1: Tensor, boxes2: Tensor, *, giou: bool = False, eps: float = 1e-6) -> Tensor:
    """IoU (or GIoU) of each row pair of x1y1x2y2 boxes; union and enclosing area clamped at ``eps``."""
    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (boxes1[..., 3] - boxes1[..., 1])
    area2 = (boxes2[..., 2] - boxes2[..., 0]) * (boxes2[..., 3] - boxes2[..., 1])
    lt = torch.max(boxes1[..., :2], boxes2[..., :2])
    rb = torch.min(boxes1[..., 2:], boxes2[..., 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[..., 0] * wh[..., 1]
    eps_t = boxes1.new_tensor([eps])
    union = torch.max(area1 + area2 - overlap, eps_t)
    iou = overlap / union
    if not giou:
        return iou
    enclose_rb = torch.max(boxes1[..., 2:], boxes2[..., 2:])
    enclose_wh = (enclose_rb - torch.min(boxes1[..., :2], boxes2[..., :2])).clamp(min=0)
    enclose = torch.max(enclose_wh[..., 0] * enclose_wh[..., 1], eps_t)
    return iou - (enclose - union) / enclose


def reduce_num_pos(positive_mask: Tensor) -> Tensor:
    """Positive cells of the local batch, mean over ranks (torch.distributed), clamped >= 1; float32 0-d."""
    num_pos = positive_mask.sum().to(torch.float32)
    if distributed.is_initialized():
        # SUM then divide: gloo has no ReduceOp.AVG.
        torch.distributed.all_reduce(num_pos, op=torch.distributed.ReduceOp.SUM)
        num_pos = num_pos / torch.distributed.get_world_size()
    return num_pos.clamp(min=1.0)


class LoRATCriterion(nn.Module):
    """``forward(score_map, boxes, positive_mask, label_boxes) -> (loss, {"loss", "Loss/bce", "Loss/iou"})``.

    score_map (N,H,W) logits, boxes (N,H,W,4) normalised x1y1x2y2 (the model outputs), positive_mask
    (N,H,W) bool, label_boxes (N,4) normalised x1y1x2y2. ``num_pos`` may be given (gradient
    accumulation: the count of the whole accumulated batch, already reduced over ranks).
    """

    def __init__(self, cls_weight: float = 1.0, reg_weight: float = 1.0):
        super().__init__()
        self.cls_weight = cls_weight
        self.reg_weight = reg_weight

    def forward(self, score_map: Tensor, boxes: Tensor, positive_mask: Tensor, label_boxes: Tensor,
                num_pos: Optional[Tensor] = None) -> Tuple[Tensor, Dict[str, float]]:
        score_map = score_map.float()
        boxes = boxes.float()
        n, h, w = score_map.shape
        if positive_mask.shape != (n, h, w):
            raise ValueError(f"positive_mask has shape {tuple(positive_mask.shape)}, expected {(n, h, w)} "
                             "(one flag per score-map cell)")
        if num_pos is None:
            num_pos = reduce_num_pos(positive_mask)
        # Sample by sample, row-major within a sample (the official label order).
        batch_idx, cell_idx = positive_mask.reshape(n, h * w).nonzero(as_tuple=True)
        pred = boxes.view(n, h * w, 4)[batch_idx, cell_idx]
        gt = label_boxes.to(torch.float32)[batch_idx]
        with torch.no_grad():
            target = torch.zeros((n, h * w), dtype=torch.float32, device=score_map.device)
            target.index_put_((batch_idx, cell_idx), aligned_box_iou(gt, pred))
        cls_loss = F.binary_cross_entropy_with_logits(score_map.view(n, -1), target, reduction="none").sum() / num_pos
        if batch_idx.numel() > 0:
            reg_loss = (1 - aligned_box_iou(pred, gt, giou=True)).sum() / num_pos
        else:
            reg_loss = boxes.mean() * 0
        if self.cls_weight != 1.0:
            cls_loss = cls_loss * self.cls_weight
        if self.reg_weight != 1.0:
            reg_loss = reg_loss * self.reg_weight
        loss = cls_loss + reg_loss
        values = torch.stack((loss, cls_loss, reg_loss)).detach().tolist()  # one device sync
        metrics = dict(zip(("loss", "Loss/bce", "Loss/iou"), values))
        return loss, metrics


__all__ = ["LoRATCriterion", "aligned_box_iou", "reduce_num_pos"]
