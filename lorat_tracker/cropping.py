"""SiamFC-style crops, pixel-aligned exactly like the official pipeline (reference spec 3.2-3.4).

Boxes are continuous x1y1x2y2 floats in pixels (pixel i spans [i, i+1)). Written by hand because
no library does this particular crop: the source and destination rectangles are snapped outward to
whole pixels and the *effective* scale/translation is re-derived in float32, which every later box
mapping must use to match the official boxes.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .boxes import clip_box, map_box, rasterize


def nominal_crop_params(box_xyxy, area_factor: float, out_size_wh) -> Tuple[float, np.ndarray]:
    """Scale s (same for x and y) and translation t mapping image -> crop: u = x * s + t."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    w, h = x2 - x1, y2 - y1
    cx, cy = x1 + w / 2, y1 + h / 2
    out_w, out_h = out_size_wh
    context = (area_factor - 1) * (w + h) / 2
    s = math.sqrt(out_w * out_h / ((w + context) * (h + context)))
    return s, np.array([out_w / 2 - cx * s, out_h / 2 - cy * s], dtype=np.float64)


def search_crop_box(box_xyxy, min_object_size: float):
    """The state box with w and h raised to at least ``min_object_size`` (centre kept)."""
    x1, y1, x2, y2 = box_xyxy
    w, h = x2 - x1, y2 - y1
    cx, cy = x1 + w / 2, y1 + h / 2
    w, h = max(w, min_object_size), max(h, min_object_size)
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


class CropParams(NamedTuple):
    """Effective (float32) scale and translation of a pixel-aligned crop, per axis."""
    scale: np.ndarray        # (sx, sy) float32
    translation: np.ndarray  # (tx, ty) float32

    def image_to_crop(self, box_xyxy) -> np.ndarray:
        return map_box(box_xyxy, self.scale.astype(np.float64), self.translation.astype(np.float64))

    def crop_to_image(self, box_xyxy) -> np.ndarray:
        # x = u * (1 / s) + (-t / s) in float64: this association reproduces the reference exactly.
        s = self.scale.astype(np.float64)
        t = self.translation.astype(np.float64)
        return map_box(box_xyxy, 1.0 / s, -t / s)


def pixel_aligned_crop(image: np.ndarray, scale, translation: np.ndarray, out_size_wh,
                       fill: torch.Tensor, out: torch.Tensor | None = None) -> Tuple[torch.Tensor, CropParams]:
    """Crop ``image`` (H, W, 3) uint8 to a (3, H_o, W_o) float32 tensor on 0..255 with ``fill`` padding.

    ``scale`` is one number, or (sx, sy) per axis (training's scale/aspect jitter). ``fill`` is a (3,)
    float32 tensor; ``out``, if given, is a (3, H_o, W_o) buffer written in place (its device decides
    where the resize runs).
    """
    out_w, out_h = out_size_wh
    img_h, img_w = image.shape[:2]
    if np.ndim(scale) == 0:
        sx = sy = float(scale)
    else:
        sx, sy = (float(v) for v in scale)
    tx, ty = float(translation[0]), float(translation[1])
    # Output rectangle: the whole image mapped into the crop, clipped, snapped outward.
    o = rasterize(clip_box((tx, ty, img_w * sx + tx, img_h * sy + ty), (out_w, out_h)))
    # Input rectangle: O mapped back with the reversed parameters, snapped outward, clipped.
    rsx, rsy, rtx, rty = 1.0 / sx, 1.0 / sy, -tx / sx, -ty / sy
    i = clip_box(rasterize((o[0] * rsx + rtx, o[1] * rsy + rty, o[2] * rsx + rtx, o[3] * rsy + rty)), (img_w, img_h))
    device = out.device if out is not None else fill.device
    if out is None:
        out = torch.empty(3, out_h, out_w, dtype=torch.float32, device=device)
    out[:] = fill.view(3, 1, 1)
    o_w, o_h, i_w, i_h = o[2] - o[0], o[3] - o[1], i[2] - i[0], i[3] - i[1]
    if o_w > 0 and o_h > 0 and i_w > 0 and i_h > 0:
        region = torch.from_numpy(np.ascontiguousarray(image[i[1]:i[3], i[0]:i[2]])).to(device)
        region = region.permute(2, 0, 1).unsqueeze(0).float()
        resized = F.interpolate(region, size=(o_h, o_w), mode="bilinear", align_corners=False, antialias=False)
        out[:, o[1]:o[3], o[0]:o[2]] = resized[0]
        s_eff = np.array([o_w, o_h], dtype=np.float32) / np.array([i_w, i_h], dtype=np.float32)
        t_eff = np.array([o[0], o[1]], dtype=np.float32) - np.array([i[0], i[1]], dtype=np.float32) * s_eff
    else:  # nothing of the image is inside the crop; keep the nominal mapping
        s_eff = np.array([sx, sy], dtype=np.float32)
        t_eff = np.array([tx, ty], dtype=np.float32)
    return out, CropParams(s_eff, t_eff)


def template_mask(box_xyxy, params: CropParams, template_size: int, template_grid: int) -> np.ndarray:
    """(grid, grid) int64 mask of the template cells the target box touches (1 = foreground)."""
    return crop_box_cell_mask(params.image_to_crop(box_xyxy), (template_size, template_size),
                              (template_grid, template_grid))


def crop_box_cell_mask(box_crop_xyxy, size_wh, grid_wh) -> np.ndarray:
    """(gh, gw) int64: 1 on the cells a box in crop pixels touches (the box divided by the stride
    size / grid, rasterized, clipped to the grid); the template mask of inference and training."""
    (w, h), (gw, gh) = size_wh, grid_wh
    b = np.asarray(box_crop_xyxy, dtype=np.float64)
    stride_x, stride_y = w / gw, h / gh
    x1, y1, x2, y2 = clip_box(rasterize((b[0] / stride_x, b[1] / stride_y, b[2] / stride_x, b[3] / stride_y)),
                              (gw, gh))
    mask = np.zeros((gh, gw), dtype=np.int64)
    if x2 > x1 and y2 > y1:
        mask[y1:y2, x1:x2] = 1
    return mask
