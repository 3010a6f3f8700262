"""Tracking evaluation of weights under training (``lorat train --val``), scored by the GOT-10k toolkit.

``lorat train`` builds a ``TrackingEvaluator`` and passes it to the ``Trainer`` (the training core
imports no harness).

The validation sequences are the training code's ``Sequence`` records (any source: a user's
``folder``, GOT-10k val, ...), tracked in lockstep with ``lorat_tracker.batched`` and scored exactly as
``ExperimentGOT10k.report`` scores a sequence: ``rect_iou`` of frames 1.. clipped to the image, only
frames where the target is visible, then the toolkit's own ``_evaluate`` (AO, SR0.50, success curve)
over all frames together.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np
from got10k.utils.metrics import rect_iou

from . import compat

compat.apply()


class TrackingEvaluator:
    """The ``evaluator`` of ``Trainer``: ``evaluator(sequences, weights=PATH, device=D)`` tracks the
    sequences with those weights (the variant and backbone of the run) and scores them, in the tracker's
    precision "auto" as ``lorat eval`` by default (fp16 autocast on CUDA, elsewhere fp32)."""

    def __init__(self, variant, backbone: Optional[str] = None, batch_size: int = 8):
        self.variant, self.backbone, self.batch_size = variant, backbone, batch_size

    def __call__(self, sequences, weights: str, device) -> Optional[Dict[str, Any]]:
        return evaluate_sequences(sequences, self.variant, weights, backbone=self.backbone, device=device,
                                  precision="auto", batch_size=self.batch_size)


def got10k_scores(ious: np.ndarray):
    """AO, SR0.50 and SR0.75 of per-frame IoUs exactly as ``ExperimentGOT10k`` scores them (its private
    ``_evaluate``: the mean, and the share above each threshold of ``linspace(0, 1, 101)``, strict ``>``)."""
    thresholds = np.linspace(0, 1, 101)
    return float(np.mean(ious)), float(np.mean(ious > 0.5)), float(np.mean(ious > thresholds[75]))


def build_tracker(variant, weights: str, backbone=None, device="cpu", precision: str = "fp32"):
    """The tracker the validation runs: the one place that builds it (so the tracker's configuration can
    come from elsewhere without touching the scoring)."""
    from ...spec import TrackerSpec

    return TrackerSpec(variant=variant, weights=weights, backbone=backbone, device=device,
                       precision=precision).build()


def evaluate_sequences(sequences, variant, weights: str, backbone=None, device="cpu", precision: str = "fp32",
                       batch_size: int = 8) -> Optional[Dict[str, Any]]:
    """Track every track of every sequence (with >= 2 frames) from its first valid frame; returns
    ``{"AO", "SR0.50", "SR0.75", "sequences", "frames", "per_sequence": {name: AO}}``, or None when no
    sequence has two frames."""
    from ...batched import SequenceJob, run_batched
    from ...images import read_rgb

    tracker = build_tracker(variant, weights, backbone=backbone, device=device, precision=precision)
    jobs: List[SequenceJob] = []
    for seq in sequences:
        if len(seq.frames) < 2:
            continue  # a one-frame track (COCO) has nothing to track
        for k, track in enumerate(seq.tracks):
            valid = np.flatnonzero(track.valid)
            if len(valid) == 0 or valid[0] >= len(seq.frames) - 1:
                continue
            first = int(valid[0])
            name = seq.name if len(seq.tracks) == 1 else f"{seq.name}#{k}"
            jobs.append(SequenceJob(name, list(seq.frames[first:]), track.boxes[first].tolist(),
                                    meta=(track.boxes[first:], track.valid[first:], seq.frames[first])))
    if not jobs:
        return None  # only one-frame tracks (e.g. COCO): nothing to track
    all_ious, per_sequence = [], {}
    for result in run_batched(tracker, jobs, batch_size=batch_size):
        gt, valid, first_frame = result.job.meta
        h, w = read_rgb(first_frame).shape[:2]
        ious = rect_iou(result.boxes[1:], gt[1:], bound=(w, h))[valid[1:]]
        if len(ious):
            per_sequence[result.name] = float(np.mean(ious))
            all_ious.append(ious)
    ious = np.concatenate(all_ious) if all_ious else np.zeros(0)
    ao, sr50, sr75 = got10k_scores(ious)
    return {"AO": ao, "SR0.50": sr50, "SR0.75": sr75, "sequences": len(per_sequence),
            "frames": int(len(ious)), "per_sequence": per_sequence}
