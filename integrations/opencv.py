"""LoRAT behind OpenCV's tracker interface (``cv2.TrackerVit`` conventions), for any ``VideoCapture`` loop.

::

    from lorat_tracker.integrations.opencv import TrackerLoRAT
    tracker = TrackerLoRAT.create("B-224", weights="base.bin", backbone="dinov2_vitb14_pretrain.pth")
    tracker.init(frame, (x, y, w, h))          # frame: BGR uint8 from cv2; rect: ints, as cv::Rect
    ok, (x, y, w, h) = tracker.update(frame)   # ints; ok = getTrackingScore() >= score_threshold

Differences from OpenCV's own trackers, all deliberate: the network is LoRAT's (run by torch, or with
``backend="onnxruntime"`` / ``"openvino"`` / ``"tensorrt"`` from the file of ``lorat export --format onnx``:
``TrackerLoRAT.create(weights="tiny.onnx", backend="openvino")``; not through cv2.dnn), float rectangles are accepted by ``init`` (cv2 rejects them), and ``last_box`` keeps the unrounded
float box. ``update`` always reports the network's best box, also when ``ok`` is False.

Rounding: the float box's corners are rounded to the nearest integer (halves up),
``x1 = floor(x + 0.5)``, ``x2 = floor(x + w + 0.5)`` (same for y), and the rectangle is
``(x1, y1, x2 - x1, y2 - y1)``, so every edge is within 0.5 px of the float box (rounding x and w
separately can put the right edge 1 px off). Width and height are at least 1.
"""
from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np

from lorat_tracker import InvalidImageError, LoRATTracker, NotInitializedError
from lorat_tracker.boxes import rounded_corners

DEFAULT_SCORE_THRESHOLD = 0.2  # cv2.TrackerVit_Params().tracking_score_threshold


def to_int_rect(box) -> Tuple[int, int, int, int]:
    """A float [x, y, w, h] -> the integer (x, y, w, h) with corners rounded to the nearest pixel."""
    x1, y1, x2, y2 = rounded_corners(box)
    return int(x1), int(y1), int(max(x2 - x1, 1)), int(max(y2 - y1, 1))


def bgr_to_rgb(image) -> np.ndarray:
    """The BGR (or BGRA, or gray) uint8 frame OpenCV gives -> RGB, the tracker's image format."""
    if not isinstance(image, np.ndarray):
        raise InvalidImageError(f"image must be a numpy array (a frame from cv2), got {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return image  # gray, or a shape the core tracker rejects with its own message


class TrackerLoRAT:
    """OpenCV-style LoRAT: ``init(bgr, rect)``, ``update(bgr) -> (ok, rect)``, ``getTrackingScore()``."""

    def __init__(self, tracker: LoRATTracker, score_threshold: float = DEFAULT_SCORE_THRESHOLD):
        self.tracker = tracker
        self.score_threshold = float(score_threshold)
        self.last_box: Optional[np.ndarray] = None   # float [x, y, w, h] of the last init/update
        self._score = -1.0

    @classmethod
    def create(cls, variant=None, weights=None, backbone=None, device=None, precision: str = None,
               score_threshold: float = DEFAULT_SCORE_THRESHOLD, **kwargs) -> "TrackerLoRAT":
        """Like ``cv2.TrackerVit.create(params)``: loads the network (``variant`` may be a
        ``TrackerSpec``; further keyword arguments are ``TrackerSpec`` fields: ``threads``, ``compile``...)."""
        from lorat_tracker.spec import TrackerSpec

        spec = TrackerSpec.of(variant, weights=weights, backbone=backbone, device=device, precision=precision,
                              **kwargs)
        return cls(spec.boxes_only("OpenCV-style tracker").build(), score_threshold)

    def init(self, image, boundingBox) -> None:
        """Start tracking ``boundingBox`` = (x, y, w, h), 0-based pixels, in the BGR ``image``."""
        self.tracker.initialize(bgr_to_rgb(image), boundingBox)  # the core validates the box
        self.last_box = self.tracker.target.box_xywh
        self._score = -1.0

    def update(self, image) -> Tuple[bool, Tuple[int, int, int, int]]:
        """Track one BGR frame: ``(ok, (x, y, w, h))`` with integer rect; ok = score >= score_threshold."""
        if self.tracker.target is None:
            raise NotInitializedError("update() called before init(image, (x, y, w, h))")
        box, score = self.tracker.track(bgr_to_rgb(image))
        self.last_box, self._score = box, float(score)
        return self._score >= self.score_threshold, to_int_rect(box)

    def getTrackingScore(self) -> float:  # noqa: N802 - OpenCV's name
        """The network's confidence for the last ``update`` (-1 before the first one)."""
        return self._score


def create(variant=None, weights=None, backbone=None, device=None, precision: str = None,
           score_threshold: float = DEFAULT_SCORE_THRESHOLD, **kwargs) -> TrackerLoRAT:
    """``cv2.TrackerVit_create``-style factory: ``TrackerLoRAT.create(...)``."""
    return TrackerLoRAT.create(variant, weights, backbone, device, precision, score_threshold, **kwargs)
