"""OpenCV-style adapter: BGR in, integer rectangles out, the core tracker's boxes rounded as documented."""
from __future__ import annotations

import cv2
import numpy as np
import pytest


from lorat_tracker.integrations.opencv import DEFAULT_SCORE_THRESHOLD, TrackerLoRAT, create, to_int_rect
from lorat_tracker import InvalidBoxError, NotInitializedError


@pytest.mark.parametrize("box, rect", [
    ((10.5, 20.49, 5.2, 3.6), (11, 20, 5, 4)),     # x2 = 15.7 -> 16, y2 = 24.09 -> 24
    ((0.4999, 0.5, 10.0, 10.0), (0, 1, 10, 10)),   # halves round up
    ((-3.6, 7.2, 2.2, 1.1), (-4, 7, 3, 1)),        # x1 = -3.6 -> -4, x2 = -1.4 -> -1
    ((3.2, 3.2, 0.2, 0.2), (3, 3, 1, 1)),          # never narrower than 1 px
    ((99.5, 49.5, 40.0, 30.0), (100, 50, 40, 30)),
])
def test_rounding(box, rect):
    got = to_int_rect(box)
    assert got == rect and all(type(v) is int for v in got)


def test_same_boxes_as_core_up_to_rounding(sequence, core_predictions, tiny_model):
    tracker = TrackerLoRAT(tiny_model.tracker(), score_threshold=0.5)
    init = tuple(int(v) for v in sequence.boxes[0, 0])  # an int cv::Rect, as cv2 trackers take
    tracker.init(cv2.cvtColor(sequence.frames[0], cv2.COLOR_RGB2BGR), init)
    assert tracker.getTrackingScore() == -1.0
    for frame, expected in zip(sequence.frames[1:], core_predictions):
        ok, rect = tracker.update(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        assert rect == to_int_rect(expected.box)
        assert isinstance(rect, tuple) and all(type(v) is int for v in rect)
        np.testing.assert_array_equal(tracker.last_box, expected.box)  # BGR -> RGB exactly once
        assert tracker.getTrackingScore() == expected.score
        assert ok == (expected.score >= 0.5)
        # every edge within half a pixel of the float box
        x, y, w, h = expected.box
        assert max(abs(rect[0] - x), abs(rect[1] - y), abs(rect[0] + rect[2] - x - w),
                   abs(rect[1] + rect[3] - y - h)) <= 0.5 + 1e-9


def test_threshold_sets_ok_and_float_rect_accepted(sequence, tiny_model):
    bgr = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in sequence.frames[:2]]
    box = tuple(float(v) + 0.25 for v in sequence.boxes[0, 0])
    tracker = TrackerLoRAT(tiny_model.tracker(), score_threshold=0.0)
    tracker.init(bgr[0], box)
    np.testing.assert_array_equal(tracker.last_box, box)
    assert tracker.update(bgr[1])[0] is True
    tracker.score_threshold = 1.01  # scores are sigmoid outputs in [0, 1]
    tracker.init(bgr[0], box)
    ok, rect = tracker.update(bgr[1])
    assert ok is False and rect[2] > 0  # the best box is still reported
    assert DEFAULT_SCORE_THRESHOLD == 0.2


def test_create_and_mistakes(sequence, tiny_model):
    tracker = create(tiny_model.variant, weights=tiny_model.weights, backbone=tiny_model.backbone, device="cpu")
    assert isinstance(tracker, TrackerLoRAT)
    bgr = cv2.cvtColor(sequence.frames[0], cv2.COLOR_RGB2BGR)
    with pytest.raises(NotInitializedError):
        tracker.update(bgr)
    with pytest.raises(InvalidBoxError):
        tracker.init(bgr, (1000, 1000, 10, 10))
    with pytest.raises(InvalidBoxError):
        tracker.init(bgr, "not a box")
