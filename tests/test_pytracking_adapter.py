"""pytracking-style adapter: same boxes as the core tracker; the template files work the way pytracking loads them.

pytracking is not installed (its PyPI namesake is another project): the test builds a stand-in checkout
with the folder layout pytracking's ``Tracker`` imports from and replays its ``_track_sequence`` loop.
"""
from __future__ import annotations

import copy
import importlib
import sys
from collections import OrderedDict

import pytest

from synthetic import render_sequence

from lorat_tracker.integrations.pytracking import LoRATPytracking, TrackerParams, install_templates, lorat_params
from lorat_tracker.integrations.pytracking.__main__ import main as install_main
from lorat_tracker import InvalidBoxError, NotInitializedError


@pytest.fixture(scope="module")
def sequence():
    return render_sequence(num_frames=10, size_wh=(320, 240), seed=7)


@pytest.fixture(scope="module")
def core_predictions(sequence, tiny_model):
    tracker = tiny_model.tracker()
    tracker.initialize(sequence.frames[0], sequence.boxes[0, 0])
    return [tracker.track(f) for f in sequence.frames[1:]]


def params_for(tiny_model) -> TrackerParams:
    return lorat_params(tiny_model.variant, str(tiny_model.weights), str(tiny_model.backbone), device="cpu")


def test_same_boxes_as_core(sequence, core_predictions, tiny_model):
    tracker = LoRATPytracking(params_for(tiny_model))
    out = tracker.initialize(sequence.frames[0], {"init_bbox": list(sequence.boxes[0, 0])})
    assert set(out) == {"time"}
    for frame, expected in zip(sequence.frames[1:], core_predictions):
        out = tracker.track(frame)
        assert isinstance(out["target_bbox"], list) and len(out["target_bbox"]) == 4
        assert out["target_bbox"] == expected.box.tolist()  # floats, unrounded, bit for bit
        assert out["object_presence_score"] == expected.score
        assert out["time"] >= 0


def test_mistakes(sequence, tiny_model):
    tracker = LoRATPytracking(params_for(tiny_model))
    with pytest.raises(NotInitializedError):
        tracker.track(sequence.frames[0])
    with pytest.raises(InvalidBoxError, match="init_bbox"):
        tracker.initialize(sequence.frames[0], {})
    with pytest.raises(InvalidBoxError, match="MultiObjectWrapper"):
        tracker.initialize(sequence.frames[0], {"init_bbox": OrderedDict({1: [10, 10, 20, 20]})})
    assert tracker.predicts_segmentation_mask() is False


def test_deepcopy_shares_the_network(sequence, tiny_model, core_predictions):
    # pytracking's MultiObjectWrapper(fast_load=True) deep-copies one loaded tracker per object.
    original = LoRATPytracking(params_for(tiny_model))
    original.initialize_features()
    clone = copy.deepcopy(original)
    assert clone.tracker.model is original.tracker.model and clone.params is original.params
    clone.initialize(sequence.frames[0], {"init_bbox": list(sequence.boxes[0, 0])})
    assert original.tracker.target is None  # per-target state is not shared
    assert clone.track(sequence.frames[1])["target_bbox"] == core_predictions[0].box.tolist()


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A stand-in pytracking checkout with LoRAT installed; cleaned out of sys.modules afterwards."""
    root = tmp_path / "pytracking_repo"
    for pkg in ("pytracking", "pytracking/tracker", "pytracking/parameter"):
        (root / pkg).mkdir(parents=True)
        (root / pkg / "__init__.py").write_text("")
    assert install_main([str(root)]) == 0
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [m for m in sys.modules if m == "pytracking" or m.startswith("pytracking.")]:
        del sys.modules[name]


def test_install_refuses_non_checkouts_and_existing(tmp_path, checkout, capsys):
    assert install_main([str(tmp_path / "elsewhere")]) == 2
    assert "is not a pytracking checkout" in capsys.readouterr().err
    assert install_main([str(checkout)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    files = install_templates(checkout / "pytracking", overwrite=True)  # the inner package folder works too
    assert {f.name for f in files} >= {"__init__.py", "lorat.py", "b224.py", "g378.py"}


def test_templates_run_like_pytracking(checkout, sequence, core_predictions, tiny_model, monkeypatch):
    # What pytracking.evaluation.Tracker does: import the tracker module, get_tracker_class(), parameters().
    assert (checkout / "pytracking" / "tracker" / "lorat").is_dir()
    tracker_class = importlib.import_module("pytracking.tracker.lorat").get_tracker_class()
    assert issubclass(tracker_class, LoRATPytracking) and tracker_class.multiobj_mode == "parallel"
    params = importlib.import_module("pytracking.parameter.lorat.b224").parameters()
    assert (params.variant, params.weights, params.backbone, params.device, params.precision) == \
        ("B-224", "base.bin", None, None, "auto")
    assert params.get("object_presence_score_threshold", 0.55) == 0.55 and params.has("variant")
    for name, variant in (("b378", "B-378"), ("l224", "L-224"), ("l378", "L-378"), ("g224", "g-224"),
                          ("g378", "g-378")):
        assert importlib.import_module(f"pytracking.parameter.lorat.{name}").parameters().variant == variant

    monkeypatch.setenv("LORAT_WEIGHTS", str(tiny_model.weights))
    monkeypatch.setenv("LORAT_BACKBONE", str(tiny_model.backbone))
    monkeypatch.setenv("LORAT_DEVICE", "cpu")
    params = importlib.import_module("pytracking.parameter.lorat.b378").parameters()
    assert (params.weights, params.backbone, params.device) == \
        (str(tiny_model.weights), str(tiny_model.backbone), "cpu")
    params.variant = tiny_model.variant  # the test-size model instead of the released one

    tracker = tracker_class(params)
    tracker.visdom = None
    out = tracker.initialize(sequence.frames[0], {"init_bbox": list(sequence.boxes[0, 0])}) or {}
    boxes = [out.get("target_bbox", list(sequence.boxes[0, 0]))]
    prev_output = OrderedDict(out)
    for frame in sequence.frames[1:]:
        out = tracker.track(frame, {"previous_output": prev_output})
        prev_output = OrderedDict(out)
        boxes.append(out["target_bbox"])
    assert boxes[1:] == [p.box.tolist() for p in core_predictions]
