"""Training labels of the official recipe (reference 4.5; training-step fixture README, "Labels").

Positive cells are every search-grid cell the target box touches (no centre sampling), the template
mask every template cell the template box touches; both use the pipeline's ``rasterize`` (floor of
x1/y1, floor(x2 + 1 - 1e-4) of x2/y2). Boxes are x1y1x2y2 in crop pixels; sizes are (W, H), masks (H, W).
"""
from __future__ import annotations

import numpy as np

from ..boxes import clip_box, rasterize
from ..cropping import crop_box_cell_mask


def _cells(box_xyxy, factor_wh, grid_wh):
    b = np.asarray(box_xyxy, dtype=np.float64)
    fx, fy = factor_wh
    scaled = (b[0] * fx, b[1] * fy, b[2] * fx, b[3] * fy)
    return clip_box(rasterize(scaled), grid_wh)


def positive_mask(search_box_xyxy_px, search_size_wh, grid_wh) -> np.ndarray:
    """(H, W) bool: the cells the search box touches, after scaling it by grid / size (float64)."""
    (sw, sh), (gw, gh) = search_size_wh, grid_wh
    x1, y1, x2, y2 = _cells(search_box_xyxy_px, (gw / sw, gh / sh), (gw, gh))
    mask = np.zeros((gh, gw), dtype=bool)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"search box {list(search_box_xyxy_px)} touches no cell of the {gw}x{gh} grid")
    mask[y1:y2, x1:x2] = True
    return mask


def template_feat_mask(template_box_xyxy_px, template_size_wh, grid_wh) -> np.ndarray:
    """(ht, wt) int64: 1 on the template cells the box touches (box divided by the stride size / grid),
    the same mask inference gives the template (``cropping.crop_box_cell_mask``)."""
    return crop_box_cell_mask(template_box_xyxy_px, template_size_wh, grid_wh)


def label_boxes(search_box_xyxy_px, search_size_wh) -> np.ndarray:
    """The regression target: the search box normalised by the search size, float32 x1y1x2y2."""
    sw, sh = search_size_wh
    b = np.asarray(search_box_xyxy_px, dtype=np.float64)
    return (b / np.array([sw, sh, sw, sh], dtype=np.float64)).astype(np.float32)
