"""Box <-> VOT region conversions on numpy arrays (the TraX objects are built in ``server``).

VOT regions are 0-based pixel indices: ``Rectangle(x, y, w, h)`` covers pixels x..x+w-1, y..y+h-1.
The tracker's boxes are continuous x1y1x2y2 with pixel i spanning [i, i+1); the rectangle the
tracker answers for one is ``lorat_tracker.boxes.rasterized_xywh``.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np


def mask_bbox_xywh(mask: np.ndarray, offset=(0, 0)) -> Optional[Tuple[int, int, int, int]]:
    """Tight box (x0, y0, x1 - x0 + 1, y1 - y0 + 1) of a mask's non-zero pixels, or None when empty."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    ox, oy = offset
    x0, y0 = int(xs.min()) + ox, int(ys.min()) + oy
    return x0, y0, int(xs.max()) + ox - x0 + 1, int(ys.max()) + oy - y0 + 1


def polygon_bbox_xywh(points) -> Optional[Tuple[float, float, float, float]]:
    """Axis-aligned box of a polygon's corner points, or None when it has no area."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    if not (x1 > x0 and y1 > y0):
        return None
    return float(x0), float(y0), float(x1 - x0), float(y1 - y0)
