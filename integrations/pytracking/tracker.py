"""LoRAT behind pytracking's tracker interface (visionml/pytracking ``BaseTracker`` conventions).

pytracking builds a tracker as ``TrackerClass(params)``, with ``params`` from
``pytracking/parameter/<name>/<param>.py: parameters()``, then calls

* ``initialize(image, info) -> dict``: ``info['init_bbox']`` is ``[x, y, w, h]`` (0-based, as stored in
  the dataset files); returns ``{'target_bbox': [x, y, w, h], 'object_presence_score': 1.0, 'time': s}``;
* ``track(image, info=None) -> dict``: ``{'target_bbox': [x, y, w, h], 'object_presence_score': s,
  'time': seconds}``;

with ``image`` an RGB uint8 (H, W, 3) array (pytracking reads frames with cv2 and converts to RGB).
Both return the same keys, with the same types, because pytracking's code needs that:
``MultiObjectWrapper.default_merge`` reads every key of the first object's output from every
object's output (an object that appears mid-sequence is *initialised* while the others are
*tracked*: a key only ``track()`` returns raises ``KeyError``), and ``running._save_tracker_output``
decides from frame 0's value whether a key holds one value or a dict per object (a frame-0 default
of ``1.0`` next to later per-object dicts raises ``TypeError`` in ``save_scores``).

Boxes are the core tracker's float boxes, unrounded (pytracking's own result writer truncates them
to integers; keep the floats if you save results yourself). Several objects: pytracking's
``MultiObjectWrapper`` runs one instance per object (``multiobj_mode = 'parallel'``).

The network is loaded once per process (``load_network``: a cache keyed by variant, weights and
backbone files, device, precision and compile mode), before ``initialize()`` starts its clock:
pytracking builds a new tracker object for every sequence and every object, and its frame-0 time
and FPS are the ``time`` values returned here.
"""
from __future__ import annotations

import copy
import os
import threading
import time
from collections.abc import Mapping
from typing import Dict, Optional, Tuple

from lorat_tracker import InvalidBoxError, LoRATTracker

_NETWORKS: Dict[Tuple, LoRATTracker] = {}
_NETWORKS_LOCK = threading.Lock()


def _file_key(path) -> Optional[Tuple]:
    """A file as a cache key: absolute path, size and modification time (a rewritten file loads anew)."""
    if path is None:
        return None
    full = os.path.abspath(os.path.expanduser(os.fspath(path)))
    try:
        st = os.stat(full)
    except OSError:
        return (full,)  # loading will say what is wrong with it
    return (full, st.st_size, st.st_mtime_ns)


def network_key(variant, weights, backbone, device, precision, compile=False) -> Tuple:
    """What makes two networks the same: the cache key of ``load_network``."""
    if variant is not None and os.path.isfile(os.fspath(variant)):
        variant = _file_key(variant)  # a variant YAML file
    return (variant, _file_key(weights), _file_key(backbone), None if device is None else str(device),
            precision, compile)


def load_network(variant, weights=None, backbone=None, device=None, precision: str = "auto",
                 compile=False) -> LoRATTracker:
    """A ``LoRATTracker`` of its own (no target yet) on a network loaded at most once per process.

    The network is read-only at inference, so every caller shares it; each gets its own target state.
    """
    key = network_key(variant, weights, backbone, device, precision, compile)
    with _NETWORKS_LOCK:
        loaded = _NETWORKS.get(key)
        if loaded is None:
            loaded = LoRATTracker.from_pretrained(variant, weights=weights, backbone=backbone, device=device,
                                                  precision=precision, compile=compile)
            _NETWORKS[key] = loaded
    tracker = copy.copy(loaded)  # same network and compiled forward, no shared target
    tracker._target = None
    return tracker


def clear_network_cache() -> None:
    """Forget the loaded networks (frees their memory once no tracker uses them)."""
    with _NETWORKS_LOCK:
        _NETWORKS.clear()


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


def params_from_env(variant, weights: Optional[str]) -> TrackerParams:
    """The body of the parameter files copied into pytracking.

    LORAT_VARIANT / LORAT_WEIGHTS / LORAT_BACKBONE / LORAT_DEVICE / LORAT_PRECISION override the
    given variant, the given weights file name, no backbone (timm fetches DINOv2), the best device
    and precision "auto" (fp16 autocast on CUDA, as the official evaluation). ``variant=None`` (the
    ``export`` parameter file) takes the variant stored in a merged export from ``lorat export``.
    """
    from lorat_tracker.errors import ConfigError

    weights = os.environ.get("LORAT_WEIGHTS") or weights
    if weights is None:
        raise ConfigError("set LORAT_WEIGHTS to the weights file (for the `export` parameter file: a merged "
                          "export made by `lorat export`), e.g. LORAT_WEIGHTS=/path/to/lorat-L-378.safetensors")
    return lorat_params(os.environ.get("LORAT_VARIANT") or variant, weights=weights,
                        backbone=os.environ.get("LORAT_BACKBONE") or None,
                        device=os.environ.get("LORAT_DEVICE") or None,
                        precision=os.environ.get("LORAT_PRECISION") or "auto")


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
        """Get the network (loaded once per process, see ``load_network``); pytracking calls this before
        video and webcam runs, and ``initialize`` calls it before starting its clock."""
        if self._tracker is None:
            p = self.params
            self._tracker = load_network(p.get("variant", None), weights=p.get("weights"),
                                         backbone=p.get("backbone", None), device=p.get("device", None),
                                         precision=p.get("precision", "auto"), compile=p.get("compile", False))

    def predicts_segmentation_mask(self) -> bool:
        return False

    def initialize(self, image, info: dict) -> dict:
        self.initialize_features()  # not timed: the network is loaded once per process, not per sequence
        start = time.time()
        box = info.get("init_bbox") if isinstance(info, Mapping) else None
        if box is None:
            raise InvalidBoxError("info['init_bbox'] = [x, y, w, h] is needed to initialize")
        if isinstance(box, Mapping):
            raise InvalidBoxError("info['init_bbox'] is a dict of several objects: this tracker follows one "
                                  "object; pytracking's MultiObjectWrapper (multiobj_mode='parallel') splits them")
        box = [float(v) for v in box]
        self._tracker.initialize(image, box)
        self.frame_num = 1
        # The keys and types track() returns (see the module docstring for why pytracking needs them).
        return {"target_bbox": box, "object_presence_score": 1.0, "time": time.time() - start}

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
