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

The tracker is a ``TrackerSpec`` spread over the params' attributes (``params.variant``,
``params.weights``, ``params.threads``, ...; ``lorat_params`` / ``params_from_env`` make them, the
latter from the ``LORAT_*`` variables: ``TrackerSpec.from_env("LORAT_")``). The network is loaded
once per process (``load_network``: a cache keyed by the spec, files by path, size and time),
before ``initialize()`` starts its clock:
pytracking builds a new tracker object for every sequence and every object, and its frame-0 time
and FPS are the ``time`` values returned here.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import multiprocessing
import os
import threading
import time
from collections.abc import Mapping
from typing import Dict, Optional, Tuple

from lorat_tracker import InvalidBoxError, LoRATTracker
from lorat_tracker.errors import ConfigError
from lorat_tracker.spec import EnvSpelling, SpecError, Spelling, TrackerSpec, is_placeholder, options

ENV_PREFIX = "LORAT_"

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


def network_key(spec: TrackerSpec) -> Tuple:
    """What makes two networks the same: the cache key of ``load_network``."""
    key = []
    for o in options(type(spec)):
        value = getattr(spec, o.name)
        if value is not None and (o.file or (o.name == "variant" and os.path.isfile(os.fspath(value)))):
            value = _file_key(value)  # a file (a variant YAML too): rewritten means loaded anew
        key.append((o.name, value))
    return tuple(key)


def load_network(spec, weights=None, backbone=None, device=None, precision: Optional[str] = None,
                 **options_) -> LoRATTracker:
    """A ``LoRATTracker`` of its own (no target yet) on a network loaded at most once per process.

    ``spec``: a ``TrackerSpec``, or (the older call form) the variant, with the other options as
    arguments. The network is read-only at inference, so every caller shares it; each gets its own
    target state.
    """
    spec = TrackerSpec.of(spec, weights=weights, backbone=backbone, device=device, precision=precision,
                          **options_).boxes_only("pytracking tracker")
    key = network_key(spec)
    with _NETWORKS_LOCK:
        loaded = _NETWORKS.get(key)
        if loaded is None:
            loaded = spec.build()
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


def lorat_params(variant=None, weights=None, backbone=None, device=None, precision: str = None,
                 **options_) -> TrackerParams:
    """A parameter object with every ``TrackerSpec`` field as an attribute (``variant``, ``weights``,
    ``threads``, ...; ``options_`` are further fields, or a ``spec=TrackerSpec(...)``), plus
    pytracking's usual debug flags."""
    spec = TrackerSpec.of(options_.pop("spec", None), variant=variant, weights=weights, backbone=backbone,
                          device=device, precision=precision, **options_)
    return TrackerParams(debug=0, visualization=False, **dataclasses.asdict(spec))


class PytrackingSetupError(SystemExit):
    """A parameter file whose ``LORAT_*`` configuration cannot work, raised while pytracking builds the
    parameters.

    pytracking's ``run_sequence`` catches every ``Exception`` per sequence, prints it and goes on, so a
    wrong ``LORAT_VARIANT`` printed one line per sequence and the run ended "Done" with exit 0. A
    ``SystemExit`` passes through that ``except`` and ends the run before any sequence is tracked: the
    message on stderr, exit 1. ``.error`` is the underlying ``SpecError`` / ``ConfigError``.
    """

    def __init__(self, message: str, error: Exception):
        super().__init__(f"LoRAT (pytracking parameters): {message}")
        self.error = error


def _unknown_variables(environ) -> None:
    """A ``LORAT_*`` variable that is no tracker option (a typo such as ``LORAT_WEIGHT``) is an error:
    it would be ignored without a word. ``LORAT_VOT_*`` belongs to the VOT server."""
    known = {ENV_PREFIX + o.env for o in options(TrackerSpec)}
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and not name.startswith(ENV_PREFIX + "VOT_") and name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"did you mean {close[0]}?" if close else "the tracker options are " + ", ".join(sorted(known))
            raise ConfigError(f"{name} is not a LoRAT setting: {hint}")


def params_from_env(variant, weights: Optional[str], environ=None) -> TrackerParams:
    """The body of the parameter files copied into pytracking.

    The ``LORAT_*`` variables of ``TrackerSpec`` (LORAT_VARIANT, LORAT_WEIGHTS, LORAT_BACKBONE,
    LORAT_DEVICE, LORAT_PRECISION, LORAT_THREADS, ...) override the given variant, the given
    weights file name and the defaults (no backbone: timm fetches DINOv2; the best device; precision
    "auto", fp16 autocast on CUDA as the official evaluation). ``variant=None`` (the ``export``
    parameter file) takes the variant stored in a merged export from ``lorat export``.

    The whole configuration is checked here, before pytracking tracks anything (names, choices,
    that the files exist, that the backend runs on the device; weights are read later, once per
    process): a mistake raises ``PytrackingSetupError``, which ends the run with one line in
    ``LORAT_*`` spelling. In a worker process of ``run_tracker.py --threads N`` it raises the
    ``SpecError`` itself (a ``SystemExit`` there would leave pytracking's process pool waiting
    forever); the tracker module's ``get_tracker_class()`` has run the same check in the main
    process by then (``shim.check_parameters_of_caller``).
    """
    environ = os.environ if environ is None else environ
    spelling = EnvSpelling(ENV_PREFIX)
    try:
        _unknown_variables(environ)
        spec = TrackerSpec.from_env(ENV_PREFIX, environ, base=TrackerSpec(variant=variant, weights=weights))
        if spec.weights is None:
            raise SpecError("weights", "set {weights} to the weights file (for the `export` parameter file: a "
                                       "merged export made by `lorat export`, or its .onnx with "
                                       "{backend:onnxruntime}), e.g. {weights:/path/to/lorat-L-378.safetensors}")
        spec.check().boxes_only("pytracking tracker")
        spec.check_runtime()  # the device is there and the backend's runtime is installed
    except ConfigError as e:  # SpecError included
        message = e.render(spelling)
        if multiprocessing.parent_process() is not None:
            raise (e.spelled(spelling) if isinstance(e, SpecError) else e) from None
        raise PytrackingSetupError(message, e) from None
    return lorat_params(spec=spec)


def spec_of(params) -> TrackerSpec:
    """The ``TrackerSpec`` a params object (pytracking's, or ``lorat_params``') describes."""
    return TrackerSpec.from_args(params)


class _ParamsSpelling(Spelling):
    """Options as a pytracking parameter file sets them: ``params.weights = '...'``."""

    def name(self, opt):
        return f"params.{opt.name}"

    def setting(self, opt, value):
        return f"params.{opt.name} = {value if is_placeholder(value) else repr(value)}"


_PARAMS = _ParamsSpelling()


class LoRATPytracking:
    """pytracking-style LoRAT: ``initialize(image, info)`` / ``track(image, info=None)`` on RGB arrays."""

    multiobj_mode = "parallel"  # pytracking's MultiObjectWrapper: one instance per object

    def __init__(self, params, tracker: Optional[LoRATTracker] = None):
        self.params = params
        self.visdom = None  # pytracking sets this attribute after construction
        self._tracker = tracker
        self.frame_num = 0

    @classmethod
    def from_pretrained(cls, variant=None, weights=None, backbone=None, device=None, precision: str = None,
                        **options_) -> "LoRATPytracking":
        """Load now (``TrackerSpec`` fields, or ``spec=TrackerSpec(...)``); pytracking itself loads lazily."""
        tracker = cls(lorat_params(variant, weights, backbone, device, precision, **options_))
        tracker.initialize_features()
        return tracker

    # -------------------------------------------------------------- pytracking's tracker interface

    def initialize_features(self) -> None:
        """Get the network (loaded once per process, see ``load_network``); pytracking calls this before
        video and webcam runs, and ``initialize`` calls it before starting its clock."""
        if self._tracker is None:
            try:
                self._tracker = load_network(spec_of(self.params))
            except SpecError as e:  # named as the parameter file sets it: params.<option>
                raise e.spelled(_PARAMS) from None

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
