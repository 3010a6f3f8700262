"""``LoRATGot10kTracker``: a LoRAT tracker with the ``got10k.trackers.Tracker`` interface."""
from __future__ import annotations

import os

import numpy as np
from got10k.trackers import Tracker

from lorat_tracker import LoRATTracker
from lorat_tracker.spec import TrackerSpec


class LoRATGot10kTracker(Tracker):
    """LoRAT for the GOT-10k toolkit: ``init(PIL image, box)`` / ``update(PIL image) -> box``.

    Build it from a ready ``LoRATTracker``, a ``TrackerSpec`` or the variant plus ``TrackerSpec``
    fields as keywords::

        LoRATGot10kTracker(LoRATTracker.from_pretrained("B-224", weights=..., backbone=...))
        LoRATGot10kTracker(TrackerSpec(variant="B-224", weights="base.bin", threads=1))
        LoRATGot10kTracker("B-224", weights="base.bin", backbone="dinov2_vitb14_pretrain.pth", device="cuda")

    Boxes are passed through as the toolkit gives them (``[x, y, w, h]`` floats, no shift): the
    experiments that need a shift (LaSOT's 1-based files) do it themselves. ``name`` (the results
    folder name) defaults to the variant name, plus the backend and precision when they are not torch and
    auto (``B-224-onnxruntime``): the toolkit skips sequences whose result file exists, so an ONNX run must
    not share the torch run's folder. The tracker is deterministic, so GOT-10k runs one
    repetition instead of three.
    """

    def __init__(self, tracker, weights=None, backbone=None, device=None, precision: str = None,
                 name: str = None, **options):
        if isinstance(tracker, LoRATTracker):
            if any(v is not None for v in (weights, backbone, device, precision)) or options:
                raise TypeError("pass either a LoRATTracker or (variant, weights, backbone, ...), not both")
            lorat = tracker
        else:
            lorat = TrackerSpec.of(tracker, weights=weights, backbone=backbone, device=device, precision=precision,
                                   **options).boxes_only("GOT-10k toolkit tracker").build()
        if name is None:  # the variant, plus backend and precision when not the torch defaults (own folders)
            from lorat_tracker.provenance import default_run_name

            name = default_run_name(lorat.cfg.name or os.path.splitext(os.path.basename(str(tracker)))[0],
                                    TrackerSpec(backend=lorat.backend, precision=str(lorat.precision)))
        super().__init__(name=name, is_deterministic=True)
        self.lorat = lorat
        self.last_score = None

    def init(self, image, box):
        # np.asarray of the PIL RGB image the toolkit passes (read-only; the core copies those once)
        self.lorat.initialize(np.asarray(image), np.asarray(box, dtype=np.float64))
        self.last_score = 1.0

    def update(self, image):
        prediction = self.lorat.track(np.asarray(image))
        self.last_score = prediction.score
        return prediction.box
