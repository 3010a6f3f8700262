"""lorat_tracker.boxes: the one copy of each conversion, on one box and on (N, 4) arrays alike."""
from __future__ import annotations

import numpy as np
import pytest

from lorat_tracker.boxes import (as_boxes_xyxy, map_box, overlaps_image, rasterized_xywh, rounded_corners,
                                 validate_box, xywh_to_xyxy, xyxy_to_xywh)
from lorat_tracker.errors import InvalidBoxError


def test_conversions_one_box_and_many():
    xywh = np.array([[10.25, 20.5, 30.0, 40.125], [-3.0, 0.0, 1e-3, 7.0]])
    xyxy = np.array([[10.25, 20.5, 40.25, 60.625], [-3.0, 0.0, -2.999, 7.0]])
    assert np.array_equal(xywh_to_xyxy(xywh), xyxy) and xywh_to_xyxy(xywh).dtype == np.float64
    assert np.array_equal(xywh_to_xyxy(list(xywh[0])), xyxy[0])
    assert np.allclose(xyxy_to_xywh(xyxy), xywh, rtol=0, atol=1e-12)
    assert np.array_equal(as_boxes_xyxy(xywh[:1], "xywh"), xyxy[:1])
    assert np.array_equal(as_boxes_xyxy(xyxy, "xyxy"), xyxy)


def test_integer_boxes():
    assert rasterized_xywh([10.3, 20.0, 50.7, 60.0]) == (10, 20, 41, 40)
    assert rounded_corners([10.5, 20.49, 30.0, 0.02]) == (11, 20, 41, 21)
    # u = x * s + t per axis
    assert np.array_equal(map_box([1, 2, 3, 4], (2.0, 0.5), (10.0, -1.0)), [12.0, 0.0, 16.0, 1.0])


def test_overlap_and_validation():
    boxes = np.array([[0, 0, 5, 5], [100, 0, 5, 5], [-5, -5, 5, 5], [-5, -5, 5.5, 5.5]], dtype=np.float64)
    assert overlaps_image(boxes, (100, 50)).tolist() == [True, False, False, True]
    assert bool(overlaps_image(boxes[0], (100, 50)))
    assert np.array_equal(validate_box([1, 2, 3, 4], (10, 10)), [1, 2, 4, 6])
    with pytest.raises(InvalidBoxError, match="entirely outside"):
        validate_box([100, 0, 5, 5], (100, 50))
