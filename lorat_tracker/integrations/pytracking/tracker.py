"""LoRAT behind pytracking's tracker interface (visionml/pytracking ``BaseTracker`` conventions).

pytracking builds a tracker as ``TrackerClass(params)``, with ``params`` from
``pytracking/parameter/<name>/<param>.py: parameters()``, then calls

* ``initialize(image, info) -> dict``: ``info['init_bbox']`` is ``[x, y, w, h]`` (0-based, as stored in
  the dataset files); returns ``{'time': seconds}``;
* ``track(image, info=None) -> dict``: ``{'target_bbox': [x, y, w, h], 'object_presence_score': s,
  'time': seconds}``;

with ``image`` an RGB uint8 (H, W, 3) array (pytracking reads frames with cv2 and converts to RGB).
Boxes are the core tracker's float boxes, unrounded (pytracking's own result writer truncates them
to integers; keep the floats if you save results yourself). Several objects: pytracking's
``MultiObjectWrapper`` runs one instance per object (``multiobj_mode = 'parallel'``); copies made
with ``copy.deepcopy`` share one loaded network.
"""
from __future__ import annotations

import copy
import os
import time
from collections.abc import Mapping
from typing import Optional

from lorat_tracker import InvalidBoxError, LoRATTracker


class TrackerParams:
    """pytracking's ``TrackerParams`` (``pytracking/utils/params.py``) without pytracking: attributes
    plus ``get(name, default)``, ``has(name)`` and ``set_default_values(dict)``."""

    def __init__(self, **values):
        for name, value in values.items():
            setattr(self, name, value)

    def set_default_values(self, default_vals: dict) -> None:
        for name, val in default_vals.items():
            if not hasattr(self, name):
                setattr(self, name, val)

    def get(self, name: str, *default):
        if len(default) > 1:
            raise ValueError("Can only give one default value.")
        if not default:
            return getattr(self, name)
        return getattr(self, name, default[0])

    def has(self, name: str) -> bool:
        return hasattr(self, name)

    def __repr__(self) -> str:
        return f"TrackerParams({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


def lorat_params(variant, weights=None, backbone=None, device=None, precision: str = "auto") -> TrackerParams:
    """A parameter object with the fields this tracker reads, plus pytracking's usual debug flags."""
    return TrackerParams(debug=0, visualization=False, variant=variant, weights=weights, backbone=backbone,
                         device=device, precision=precision)


def params_from_env(variant, weights: str) -> TrackerParams:
    """The body of the parameter files copied into pytracking: LORAT_WEIGHTS / LORAT_BACKBONE /
    LORAT_DEVICE override the given weights file name, no backbone (timm fetches DINOv2) and the
    best device; precision "auto" is fp16 autocast on CUDA, as the official evaluation."""
    return lorat_params(variant, weights=os.environ.get("LORAT_WEIGHTS", weights),
                        backbone=os.environ.get("LORAT_BACKBONE") or None,
                        device=os.environ.get("LORAT_DEVICE") or None)


class LoRATPytracking:
    """pytracking-style LoRAT: ``initialize(image, info)`` / ``track(image, info=None)`` on RGB arrays."""

    multiobj_mode = "parallel"  # pytracking's MultiObjectWrapper: one instance per object

    def __init__(self, params, tracker: Optional[LoRATTracker] = None):
        self.params = params
        self.visdom = None  # pytracking sets this attribute after construction
        self._tracker = tracker
        self.frame_num = 0

    @classmethod
    def from_pretrained(cls, variant, weights=None, backbone=None, device=None, precision: str = "auto"
                        ) -> "LoRATPytracking":
        """Load now (``LoRATTracker.from_pretrained`` arguments); pytracking itself loads lazily."""
        tracker = cls(lorat_params(variant, weights, backbone, device, precision))
        tracker.initialize_features()
        return tracker

    # -------------------------------------------------------------- pytracking's tracker interface

    def initialize_features(self) -> None:
        """Load the network once (pytracking calls this before VOT/video runs; ``initialize`` does too)."""
        if self._tracker is None:
            p = self.params
            self._tracker = LoRATTracker.from_pretrained(
                p.get("variant", None), weights=p.get("weights"), backbone=p.get("backbone", None),
                device=p.get("device", None), precision=p.get("precision", "auto"), compile=p.get("compile", False))

    def predicts_segmentation_mask(self) -> bool:
        return False

    def initialize(self, image, info: dict) -> dict:
        start = time.time()
        self.initialize_features()
        box = info.get("init_bbox") if isinstance(info, Mapping) else None
        if box is None:
            raise InvalidBoxError("info['init_bbox'] = [x, y, w, h] is needed to initialize")
        if isinstance(box, Mapping):
            raise InvalidBoxError("info['init_bbox'] is a dict of several objects: this tracker follows one "
                                  "object; pytracking's MultiObjectWrapper (multiobj_mode='parallel') splits them")
        self._tracker.initialize(image, [float(v) for v in box])
        self.frame_num = 1
        return {"time": time.time() - start}

    def track(self, image, info: Optional[dict] = None) -> dict:
        start = time.time()
        box, score = self._tracker_or_raise().track(image)
        self.frame_num += 1
        return {"target_bbox": [float(v) for v in box], "object_presence_score": float(score),
                "time": time.time() - start}

    def visdom_draw_tracking(self, image, box, segmentation=None) -> None:
        if self.visdom is None:
            return
        boxes = list(box.values()) if isinstance(box, Mapping) else [box]
        extra = [] if segmentation is None else [segmentation]
        self.visdom.register((image, *boxes, *extra), "Tracking", 1, "Tracking")

    # ------------------------------------------------------------------------------------ helpers

    @property
    def tracker(self) -> Optional[LoRATTracker]:
        """The wrapped core tracker (None until loaded)."""
        return self._tracker

    def _tracker_or_raise(self) -> LoRATTracker:
        if self._tracker is None:
            from lorat_tracker import NotInitializedError

            raise NotInitializedError("track() called before initialize(image, {'init_bbox': [x, y, w, h]})")
        return self._tracker

    def __deepcopy__(self, memo):
        # MultiObjectWrapper(fast_load=True) deep-copies a loaded instance per object: share the network
        # (read-only at inference), copy only the per-target state.
        clone = self.__class__.__new__(self.__class__)
        memo[id(self)] = clone
        for name, value in vars(self).items():
            if name == "_tracker" and value is not None:
                shared = copy.copy(value)  # same network, same compiled forward
                shared._target = copy.deepcopy(value.target, memo)
                setattr(clone, name, shared)
            elif name in ("params", "visdom"):
                setattr(clone, name, value)
            else:
                setattr(clone, name, copy.deepcopy(value, memo))
        return clone
