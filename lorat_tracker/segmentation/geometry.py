"""The geometry of the official "segmentify" post-processor: the crop around a box, SAM's box prompt,
the low-resolution mask warped back onto the frame, and the box as a mask (the fallback).

Written by hand because no library does this crop / warp pair; each function reproduces the
official operation op for op (reference: tests/fixtures/segmentify/README.md).
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..boxes import clip_box, rasterize
from ..cropping import CropParams

SAM_INPUT_SIZE = 1024      # the crop SAM sees (search_region_size of the segmentify configs)
SAM_LOWRES_SIZE = 256      # SAM's low-resolution mask logits
AREA_FACTOR = 2.0          # context around the box in the crop
MASK_THRESHOLD = 0.0       # logits > 0 are the object


def segmentify_crop_params(box_xyxy) -> Tuple[float, np.ndarray]:
    """Nominal image -> crop scale and translation (siamfc cropping, area factor 2, 1024x1024)."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    w, h = x2 - x1, y2 - y1
    context = (AREA_FACTOR - 1) * (w + h) / 2
    s = math.sqrt(SAM_INPUT_SIZE * SAM_INPUT_SIZE / ((w + context) * (h + context)))
    centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2], dtype=np.float64)
    return s, np.array([SAM_INPUT_SIZE / 2, SAM_INPUT_SIZE / 2], dtype=np.float64) - s * centre


def sam_box_prompt(box_on_crop: np.ndarray) -> torch.Tensor:
    """The box SAM receives: float32, x2/y2 rasterized end-exclusive, all floored, clipped to the crop."""
    b = torch.from_numpy(np.asarray(box_on_crop, dtype=np.float64)).to(torch.float32)
    b[2:] += 1 - 1e-4
    b = torch.floor(b)
    return b.clamp(0, SAM_INPUT_SIZE)  # torchvision.ops.clip_boxes_to_image on a 1024x1024 crop


def warp_mask_to_frame(lowres_mask: torch.Tensor, params: CropParams, size_wh) -> torch.Tensor:
    """The 256x256 bool mask back onto the (H, W) frame: bool, every non-zero bilinear sample is on.

    The official ``apply_siamfc_cropping_subpixel``, op for op in float32 (its linspace grid puts the
    first column at x = 0 and the last at x = W rather than at pixel centres; kept on purpose).
    """
    w, h = size_wh
    device = lowres_mask.device
    ratio = SAM_LOWRES_SIZE / SAM_INPUT_SIZE
    s_m = params.scale.astype(np.float64) * ratio
    t_m = params.translation.astype(np.float64) * ratio
    rs = torch.from_numpy(1.0 / s_m).to(torch.float32).to(device)
    rt = torch.from_numpy(-t_m / s_m).to(torch.float32).to(device)
    x = torch.linspace(0, w / SAM_LOWRES_SIZE, w, device=device)
    y = torch.linspace(0, h / SAM_LOWRES_SIZE, h, device=device)
    gx, gy = torch.meshgrid(x, y, indexing="xy")
    grid = torch.stack((gx, gy), dim=-1).unsqueeze(0)
    grid = grid / rs - (rt / rs) / SAM_LOWRES_SIZE
    grid = grid * 2 - 1
    out = F.grid_sample(lowres_mask.to(torch.float32)[None, None], grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False)
    return out[0, 0].to(torch.bool)


def box_mask(box_xyxy, size_wh) -> np.ndarray:
    """The rasterized box as a filled bool mask (the answer when SAM cannot give one)."""
    w, h = size_wh
    mask = np.zeros((h, w), dtype=bool)
    x1, y1, x2, y2 = clip_box(rasterize([float(v) for v in box_xyxy]), (w, h))
    if x2 > x1 and y2 > y1:
        mask[y1:y2, x1:x2] = True
    return mask
