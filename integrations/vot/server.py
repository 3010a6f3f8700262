"""The TraX tracker process that the VOT toolkit starts: ``python -m lorat_tracker.integrations.vot``.

Built on the ``trax`` package directly (not the ``vot.py`` helper), so it announces no ``vot``
metadata key and the toolkit keeps one process per (experiment, sequence) instead of restarting it
at every initialization. The model is loaded and warmed up *before* the TraX handshake: start-up is
not covered by the toolkit's ``timeout``, every initialize/frame reply is.

* Multi-object (VOTS): with ``multiobject`` on (the default) every object of a sequence arrives in
  one ``initialize`` and all of them are tracked with ONE batched forward per frame
  (``LoRATTracker.step``). Objects appearing later are initialized on their frame.
* Regions: the server accepts rectangles and masks and answers in the form each object was given:
  a rasterized rectangle for box stacks; for mask stacks the same box as a filled mask (the
  official LoRAT VOT integration without a mask refiner) or, with ``--masks sam``, SAM's mask of
  the box exactly as the official "segmentify" pipeline (``lorat_tracker.segmentation``; all mask
  objects of a frame through one batched image-encoder forward; the box alone drives tracking).
  If SAM fails on a frame (out of memory, NaN) the failure is logged and that object is answered
  with its box as a mask. Mask ground truth is turned into its tight bounding box, exactly as the
  official integration does.
* Every answer carries a ``confidence`` property (the network's score; 1 at initialization).
* Logs go to stderr (the toolkit keeps them and writes them to ``WORKSPACE/logs/`` on a crash)
  and, when ``LORAT_VOT_LOG`` is set (``lorat vot register`` sets it to
  ``WORKSPACE/logs/<ID>.tracker.log``), are appended to that file, crashes included.
* A frame that cannot be read is logged and answered with each object's last box.

Settings come from command-line options or, as the toolkit passes them, ``LORAT_VOT_*`` variables:
the tracker's ``TrackerSpec`` (``TrackerSpec.from_env("LORAT_VOT_")``, what ``lorat vot register``
wrote with ``to_env``) plus this server's own NAME, MULTIOBJECT and LOG.
"""
from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import logging
import os
import sys
import time
from typing import List, Optional

import numpy as np

from lorat_tracker.boxes import rasterized_xywh
from lorat_tracker.spec import EnvSpelling, SpecError, TrackerSpec

from . import ENV_PREFIX
from .regions import mask_bbox_xywh, polygon_bbox_xywh

log = logging.getLogger("lorat.vot")


def _env(name: str, default=None):
    value = os.environ.get(ENV_PREFIX + name, "")
    return value if value != "" else default


def _flag(value) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lorat_tracker.integrations.vot",
        description="LoRAT as a TraX tracker for the VOT toolkit. Normally started by the toolkit from a "
                    "trackers.ini entry written by `lorat vot register`; every option defaults to the "
                    f"{ENV_PREFIX}<OPTION> environment variable.")
    # The tracker options: left out of the namespace when not given, so the LORAT_VOT_* values stand.
    TrackerSpec.add_arguments(p, suppress_defaults=True, help={
        "masks": "answers for mask stacks: none = the box as a filled mask (default), sam = SAM's mask (sam2: SAM 2.1's) "
                 "of the box (the official LoRAT segmentify)"})
    p.add_argument("--multiobject", default=_env("MULTIOBJECT", "1"),
                   help="1: announce multi-object support, all objects in one batch (default); 0: one object "
                        "per session (needed by supervised experiments)")
    p.add_argument("--log", default=_env("LOG"), help="also append the log to this file")
    p.add_argument("--name", default=_env("NAME", "lorat"), help="tracker name announced at the handshake")
    return p


def read_spec(args, environ=None) -> TrackerSpec:
    """The tracker: ``LORAT_VOT_*`` variables, overridden by the options given on the command line."""
    return TrackerSpec.from_args(args, base=TrackerSpec.from_env(ENV_PREFIX, environ))


def setup_logging(path: Optional[str]) -> Optional[str]:
    """Log to stderr and, if asked, append to ``path``; route hard crashes there too."""
    fmt = logging.Formatter(f"%(asctime)s lorat-vot[{os.getpid()}] %(levelname)s %(message)s")
    log.setLevel(logging.INFO)
    log.propagate = False
    for h in list(log.handlers):
        log.removeHandler(h)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(fmt)
    log.addHandler(stderr)
    if path:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            handler = logging.FileHandler(path, mode="a", encoding="utf-8")
        except OSError as e:
            log.warning("cannot open log file %s (%s); logging to stderr only", path, e)
            return None
        handler.setFormatter(fmt)
        log.addHandler(handler)
        # Segfaults and fatal errors in native code: dump the Python stacks into the same file.
        faulthandler.enable(file=handler.stream, all_threads=True)
        return path
    return None


def read_frame(path: str) -> Optional[np.ndarray]:
    """RGB uint8 (H, W, 3) from an image path (TraX gives paths), or None: OpenCV + BGR -> RGB, as always."""
    import cv2

    from lorat_tracker.images import read_image

    try:
        return read_image(path, "opencv")
    except (OSError, cv2.error):
        return None


@dataclasses.dataclass
class Slot:
    """One object of the session: its tracker state (None if it could not be started) and answer form."""
    kind: str                      # "rectangle" or "mask": how the object was given, and answered
    box: np.ndarray                # last reported box, continuous x1y1x2y2
    target: object = None          # lorat_tracker.Target, or None
    mask: Optional[np.ndarray] = None  # SAM's mask of ``box`` on the last frame (mask objects, --masks sam)


class Session:
    """The objects of one TraX session and the tracker that moves them, independent of TraX I/O."""

    def __init__(self, tracker, refiner=None):
        self.tracker = tracker
        self.refiner = refiner            # lorat_tracker.segmentation.BoxToMask or None
        self.slots: List[Slot] = []
        self.frames = 0
        self.unreadable = 0
        self.track_time = 0.0
        self.mask_time = 0.0
        self.mask_failures = 0

    def initialize(self, image: Optional[np.ndarray], path: str, regions) -> List[tuple]:
        """Start a new session with ``regions`` (list of (kind, xywh-or-None)); answers (kind, xywh, conf)."""
        self._summary()
        self.slots, self.frames, self.unreadable, self.track_time = [], 0, 0, 0.0
        self.mask_time, self.mask_failures = 0.0, 0
        if image is None:
            log.error("cannot read the initialization frame %s: the objects keep their initial boxes", path)
        return [self._add(image, kind, xywh) for kind, xywh in regions]

    def frame(self, image: Optional[np.ndarray], path: str, new_regions=()) -> List[tuple]:
        """Track every object into ``image``; objects in ``new_regions`` start on this frame.

        Answers (kind, x1y1x2y2 box, confidence, mask or None) per object, then (kind, box, 1, None)
        per new object.
        """
        self.frames += 1
        answers = []
        active = [s for s in self.slots if s.target is not None]
        for s in self.slots:
            s.mask = None
        if image is None:
            self.unreadable += 1
            log.warning("cannot read frame %s: answering the last box of each object", path)
            answers = [(s.kind, s.box, 0.0, None) for s in self.slots]
        else:
            scores = {}
            if active:
                start = time.perf_counter()
                predictions = self.tracker.step([s.target for s in active], image)
                self.track_time += time.perf_counter() - start
                for slot, prediction in zip(active, predictions):
                    if _valid(prediction.box):  # else (box squeezed to nothing at the border): keep the last
                        slot.box = slot.target.box.copy()  # the exact x1y1x2y2 the prediction came from
                    scores[id(slot)] = prediction.score
            if self.refiner is not None:
                self._refine(image, path, [s for s in active if s.kind == "mask"])
            answers = [(s.kind, s.box, scores.get(id(s), 0.0), s.mask) for s in self.slots]
        answers += [self._add(image, kind, xywh) + (None,) for kind, xywh in new_regions]
        return answers

    def _refine(self, image: np.ndarray, path: str, slots: List[Slot]) -> None:
        """SAM masks of the slots' boxes, one call (one batched image-encoder forward) for all of them."""
        if not slots:
            return
        start = time.perf_counter()
        from lorat_tracker.segmentation import mask_results

        boxes = np.stack([s.box for s in slots])
        try:
            results = mask_results(self.refiner, image, boxes, box_format="xyxy")
        except Exception as e:  # noqa: BLE001 - the run goes on with box masks; the log says why
            log.exception("SAM failed on frame %s (%s: %s): answering every mask object with its box", path,
                          type(e).__name__, e)
            results = [None] * len(slots)
            self.mask_failures += len(slots)
        for slot, result in zip(slots, results):
            if result is not None and result.fallback is not None:
                log.warning("SAM gave no mask for object %d on frame %s (%s): answering its box as the mask",
                            self.slots.index(slot), path, result.fallback)
                self.mask_failures += 1
                result = None
            slot.mask = None if result is None else result.mask  # None: answered as the filled box
        self.mask_time += time.perf_counter() - start

    def _add(self, image, kind: str, xywh) -> tuple:
        from lorat_tracker.errors import LoRATError
        from lorat_tracker.boxes import xywh_to_xyxy

        if xywh is None:
            log.warning("object %d has an empty initial region: it is answered with an empty box", len(self.slots))
            slot = Slot(kind, np.zeros(4))
        else:
            slot = Slot(kind, xywh_to_xyxy(xywh))
            if image is not None:
                try:
                    slot.target = self.tracker.new_target(image, xywh)
                except LoRATError as e:
                    log.warning("object %d cannot be tracked (%s): it keeps its initial box", len(self.slots), e)
        self.slots.append(slot)
        return kind, slot.box, 1.0

    def _summary(self) -> None:
        if self.slots:
            fps = self.frames / self.track_time if self.track_time > 0 else float("nan")
            log.info("session done: %d object(s), %d frame(s) after initialization, %d unreadable, "
                     "%.1f frames/s (network + crops)", len(self.slots), self.frames, self.unreadable, fps)
            if self.refiner is not None:
                log.info("SAM masks: %.2f s per frame, %d object-frame(s) answered with the box after a SAM "
                         "failure", self.mask_time / max(self.frames, 1), self.mask_failures)

    def close(self) -> None:
        self._summary()
        self.slots = []


def _valid(xywh) -> bool:
    return bool(np.all(np.isfinite(xywh)) and xywh[2] > 0 and xywh[3] > 0)


# ------------------------------------------------------------------------------------ TraX edges

def region_to_box(region):
    """A TraX region -> (kind, 0-based xywh or None). Masks and polygons give their bounding box."""
    import trax

    if region.type == trax.Region.RECTANGLE:
        x, y, w, h = region.bounds()
        return "rectangle", ((x, y, w, h) if w > 0 and h > 0 else None)
    if region.type == trax.Region.MASK:
        return "mask", mask_bbox_xywh(region.array(False), region.offset())
    if region.type == trax.Region.POLYGON:
        return "rectangle", polygon_bbox_xywh(list(region))
    return "rectangle", None


def answer_region(kind: str, box_xyxy, confidence: float, mask: Optional[np.ndarray] = None):
    """(TraX region, properties): a rasterized rectangle, or for mask objects ``mask`` (a full-frame
    bool array, sent as its tight crop plus offset) or, without one, the box as a filled mask."""
    import trax

    x, y, w, h = rasterized_xywh(box_xyxy) if np.any(box_xyxy) else (0, 0, 0, 0)
    properties = {"confidence": f"{confidence:.6f}"}
    if kind == "mask" and mask is not None:
        bbox = mask_bbox_xywh(mask)
        if bbox is None:
            return trax.Mask.create(np.zeros((1, 1), dtype=np.uint8), 0, 0), properties
        x0, y0, mw, mh = bbox
        crop = np.ascontiguousarray(mask[y0:y0 + mh, x0:x0 + mw], dtype=np.uint8)
        return trax.Mask.create(crop, x0, y0), properties
    if kind == "mask":
        if w <= 0 or h <= 0:
            return trax.Mask.create(np.zeros((1, 1), dtype=np.uint8), 0, 0), properties
        return trax.Mask.create(np.ones((h, w), dtype=np.uint8), x, y), properties
    return trax.Rectangle.create(x, y, w, h), properties


def serve(tracker, multiobject: bool = True, name: str = "lorat", metadata=None, refiner=None) -> None:
    """Answer TraX requests on stdin/stdout (or TRAX_SOCKET) until the client quits."""
    import trax

    session = Session(tracker, refiner)
    formats = [trax.Region.RECTANGLE, trax.Region.MASK]
    with trax.Server(formats, [trax.Image.PATH], ["color"], tracker_name=name,
                     metadata=metadata or {}, multiobject=multiobject) as server:
        log.info("TraX handshake done (multiobject=%s)", multiobject)
        while True:
            request = server.wait()
            if request.type in (trax.TraxStatus.QUIT, trax.TraxStatus.ERROR):
                break
            path = request.image["color"].path()
            image = read_frame(path)
            objects = request.objects or []
            if request.type == trax.TraxStatus.INITIALIZE:
                regions = [region_to_box(r) for r, _ in objects]
                log.info("initialize: %d object(s) (%s) on %s", len(objects),
                         ", ".join(kind for kind, _ in regions), path)
                session.initialize(image, path, regions)
                # Echo the initial regions as given (the toolkit stores frame 0 as "initialization").
                server.status([(r, {"confidence": "1.000000"}) for r, _ in objects])
            else:
                new = [region_to_box(r) for r, _ in objects]
                answers = session.frame(image, path, new)
                replies = [answer_region(kind, box, conf, mask)
                           for kind, box, conf, mask in answers[:len(answers) - len(new)]]
                replies += [(r, {"confidence": "1.000000"}) for r, _ in objects]
                server.status(replies)
    session.close()


def load_tracker(spec: TrackerSpec):
    """The tracker of ``spec`` (no masks: the session asks SAM itself, for mask objects only), warmed up."""
    start = time.perf_counter()
    tracker = spec.replace(masks="none", sam_checkpoint=None, sam_type=None).build()
    # Warm up (CUDA context, kernels, allocator) before the handshake: replies are timed, start-up is not.
    dummy = np.full((128, 128, 3), 127, dtype=np.uint8)
    tracker.step([tracker.new_target(dummy, [48, 48, 32, 32])], dummy)
    import torch

    log.info("model %s loaded from %s on %s (%s %s, %d threads) in %.1f s", tracker.cfg.name, spec.weights,
             tracker.device, tracker.backend, tracker.precision, torch.get_num_threads(), time.perf_counter() - start)
    return tracker


def load_refiner(spec: TrackerSpec, device):
    """SAM for masks="sam" (SAM 2 for "sam2"), loaded and warmed up before the handshake like the tracker;
    else None."""
    if spec.masks not in ("sam", "sam2"):
        return None
    start = time.perf_counter()
    refiner = spec.build_refiner(device)
    dummy = np.full((128, 128, 3), 127, dtype=np.uint8)
    refiner.refine(dummy, [[48, 48, 32, 32]])
    log.info("%s loaded on %s (%s) in %.1f s", refiner.name, refiner.device, refiner.precision,
             time.perf_counter() - start)
    return refiner


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logfile = setup_logging(args.log)
    log.info("starting: python %s, pid %d, log %s", sys.executable, os.getpid(), logfile or "stderr only")
    from lorat_tracker.errors import DamagedWeightsError, LoRATError

    try:
        spec = read_spec(args).check()
        tracker = load_tracker(spec)
        refiner = load_refiner(spec, tracker.device)
        metadata = {"lorat.variant": tracker.cfg.name}
        if refiner is not None:
            metadata["lorat.masks"] = f"{spec.masks}-{refiner.model_type or 'custom'}"
        serve(tracker, multiobject=_flag(args.multiobject), name=args.name, metadata=metadata, refiner=refiner)
    except SpecError as e:  # named as the toolkit passes it: a LORAT_VOT_* variable of trackers.ini
        log.error("cannot start: %s (`lorat vot register` writes these into trackers.ini)",
                  e.render(EnvSpelling(ENV_PREFIX)))
        return 2
    except DamagedWeightsError as e:  # at the warm-up before the handshake, or on a frame of the run
        log.error("the weights are damaged: %s", e.render(EnvSpelling(ENV_PREFIX)))
        return 1
    except LoRATError as e:  # the options it names, as trackers.ini sets them
        log.error("cannot start: %s", e.render(EnvSpelling(ENV_PREFIX)))
        return 2
    except Exception:
        log.exception("tracker crashed")
        return 1
    log.info("exiting normally")
    return 0
