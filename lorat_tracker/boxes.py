"""Box conversions and checks, one copy each for the tracker, cropping, training, SAM and the harnesses.

Conventions (design card): public boxes are 0-based ``[x, y, w, h]`` floats in image pixels, pixel i
spanning [i, i+1); inside, boxes are continuous ``x1y1x2y2``. Integer boxes (VOT regions, the
GOT-10k / TrackingNet writers, template and label masks) come from ``rasterize``: end-exclusive,
covering every pixel (or grid cell) the box touches. Conversions work on one box or on (..., 4)
arrays and compute in float64.
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np

from .errors import ConfigError, InvalidBoxError


def xywh_to_xyxy(box) -> np.ndarray:
    """``[x, y, w, h]`` (or (..., 4) of them) -> ``[x1, y1, x2, y2]`` float64."""
    b = np.asarray(box, dtype=np.float64)
    return np.concatenate((b[..., :2], b[..., :2] + b[..., 2:4]), axis=-1)


def xyxy_to_xywh(box) -> np.ndarray:
    """``[x1, y1, x2, y2]`` (or (..., 4) of them) -> ``[x, y, w, h]`` float64."""
    b = np.asarray(box, dtype=np.float64)
    return np.concatenate((b[..., :2], b[..., 2:4] - b[..., :2]), axis=-1)


def rasterize(box) -> Tuple[int, int, int, int]:
    """End-exclusive integer box covering every pixel (or cell) the x1y1x2y2 box touches."""
    x1, y1, x2, y2 = box
    return (math.floor(x1), math.floor(y1), math.floor(x2 + 1 - 1e-4), math.floor(y2 + 1 - 1e-4))


def rasterized_xywh(box_xyxy) -> Tuple[int, int, int, int]:
    """Integer ``(x, y, w, h)`` of ``rasterize``: what the official LoRAT reports to VOT and writes
    for GOT-10k / TrackingNet."""
    x1, y1, x2, y2 = rasterize([float(v) for v in box_xyxy])
    return x1, y1, x2 - x1, y2 - y1


def rounded_corners(box_xywh) -> Tuple[int, int, int, int]:
    """Integer ``(x1, y1, x2, y2)`` with each corner rounded to the nearest pixel (OpenCV drawing and
    OpenCV's tracker API, whose rectangles are integers): every edge within 0.5 px of the float box."""
    x, y, w, h = (float(v) for v in box_xywh)
    return math.floor(x + 0.5), math.floor(y + 0.5), math.floor(x + w + 0.5), math.floor(y + h + 0.5)


def clip_box(box, size_wh):
    """An x1y1x2y2 box clipped into [0, W] x [0, H]."""
    w, h = size_wh
    x1, y1, x2, y2 = box
    return (min(max(x1, 0), w), min(max(y1, 0), h), min(max(x2, 0), w), min(max(y2, 0), h))


def map_box(box_xyxy, scale_xy, translation_xy) -> np.ndarray:
    """The x1y1x2y2 box under ``u = x * s + t`` per axis, in float64 (every crop mapping: image ->
    crop and back, training's jittered crops)."""
    b = np.asarray(box_xyxy, dtype=np.float64)
    s = np.asarray(scale_xy, dtype=np.float64)
    t = np.asarray(translation_xy, dtype=np.float64)
    return np.array([b[0] * s[0] + t[0], b[1] * s[1] + t[1], b[2] * s[0] + t[0], b[3] * s[1] + t[1]])


def overlaps_image(box_xywh, size_wh):
    """Whether ``[x, y, w, h]`` box(es) (one, or (N, 4)) share area with a W x H image (bool or (N,) bool)."""
    b = np.asarray(box_xywh, dtype=np.float64)
    w, h = size_wh
    return (b[..., 0] < w) & (b[..., 1] < h) & (b[..., 0] + b[..., 2] > 0) & (b[..., 1] + b[..., 3] > 0)


# A target may reach out of the frame (VOT initialises such boxes), but not be several frames wide: a box
# of 1e30 px was accepted and tracked as zero-width boxes.
MAX_BOX_TO_FRAME = 4


def validate_box(box, size_wh) -> np.ndarray:
    """A user box [x, y, w, h] -> x1y1x2y2 float64, or InvalidBoxError."""
    try:
        b = np.asarray(box, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidBoxError(f"box must be 4 numbers [x, y, w, h], got {box!r}") from None
    if b.shape != (4,):
        raise InvalidBoxError(f"box must be 4 numbers [x, y, w, h], got {b.size} values")
    if not np.all(np.isfinite(b)):
        raise InvalidBoxError(f"box {b.tolist()} contains NaN or infinity")
    if b[2] <= 0 or b[3] <= 0:
        raise InvalidBoxError(f"box {b.tolist()} has width or height <= 0; boxes are [x, y, w, h]")
    if b[2] > MAX_BOX_TO_FRAME * size_wh[0] or b[3] > MAX_BOX_TO_FRAME * size_wh[1]:
        raise InvalidBoxError(f"box {b.tolist()} is more than {MAX_BOX_TO_FRAME} times the size of the "
                              f"{size_wh[0]}x{size_wh[1]} image: no target is; boxes are 0-based [x, y, w, h] in "
                              "pixels of this frame")
    xyxy = xywh_to_xyxy(b)
    x1, y1, x2, y2 = clip_box(xyxy, size_wh)
    if not (x2 > x1 and y2 > y1):
        raise InvalidBoxError(f"box {b.tolist()} lies entirely outside the {size_wh[0]}x{size_wh[1]} image; "
                              "boxes are 0-based [x, y, w, h] in pixels")
    return xyxy


def as_boxes_xyxy(boxes, box_format: str) -> np.ndarray:
    """(N, 4) float64 x1y1x2y2 from user boxes (the mask refiner's input); InvalidBoxError for a
    non-finite box or one without area. Boxes may reach outside the frame."""
    if box_format not in ("xywh", "xyxy"):
        raise ConfigError(f"unknown box_format {box_format!r}: use 'xywh' (0-based x, y, w, h) or 'xyxy'")
    try:
        b = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidBoxError(f"boxes must be numbers, N x 4 ({box_format}), got {boxes!r}") from None
    if b.ndim == 1 and b.size == 4:
        b = b[None]
    if b.ndim != 2 or (b.size and b.shape[1] != 4):
        raise InvalidBoxError(f"boxes must have shape (N, 4) ({box_format}), got {b.shape}")
    b = b.reshape(-1, 4)
    given = b.copy()
    if box_format == "xywh":
        b = xywh_to_xyxy(b)
    for k, box in enumerate(b):
        if not np.all(np.isfinite(box)):
            raise InvalidBoxError(f"box {k} {given[k].tolist()} ({box_format}) contains NaN or infinity")
        if not (box[2] > box[0] and box[3] > box[1]):
            raise InvalidBoxError(f"box {k} {given[k].tolist()} ({box_format}) has no area (width or height <= 0) "
                                  "- SAM needs a box with area")
    return b
