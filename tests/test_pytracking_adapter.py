"""pytracking-style adapter: same boxes as the core tracker; the template files work the way pytracking loads them.

pytracking is not installed (its PyPI namesake is another project): the test builds a stand-in checkout
with the folder layout pytracking's ``Tracker`` imports from, replays its ``_track_sequence`` loop, and
checks the outputs against the contract pytracking's evaluation code states (``PytrackingContract``).
"""
from __future__ import annotations

import copy
import importlib
import sys
import time
from collections import OrderedDict

import numpy as np
import pytest

from lorat_tracker.demo import render_sequence

from lorat_tracker.integrations.pytracking import (LoRATPytracking, PytrackingSetupError, TrackerParams,
                                                   clear_network_cache, install_templates, lorat_params)
from lorat_tracker.integrations.pytracking.__main__ import main as install_main
from lorat_tracker import InvalidBoxError, NotInitializedError


def params_for(tiny_model) -> TrackerParams:
    return lorat_params(tiny_model.variant, str(tiny_model.weights), str(tiny_model.backbone), device="cpu")


OUTPUT_KEYS = {"target_bbox", "object_presence_score", "time"}


def test_same_boxes_as_core(sequence, core_predictions, tiny_model):
    tracker = LoRATPytracking(params_for(tiny_model))
    out = tracker.initialize(sequence.frames[0], {"init_bbox": list(sequence.boxes[0, 0])})
    assert set(out) == OUTPUT_KEYS  # the same keys as track(): pytracking's wrapper and writer need them
    assert out["target_bbox"] == sequence.boxes[0, 0].tolist() and out["object_presence_score"] == 1.0
    assert all(type(v) is float for v in out["target_bbox"]) and type(out["time"]) is float
    for frame, expected in zip(sequence.frames[1:], core_predictions):
        out = tracker.track(frame)
        assert set(out) == OUTPUT_KEYS
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


# ------------------------------------------------------------------ pytracking's evaluation contract

class PytrackingContract:
    """What pytracking's evaluation code reads from a tracker's outputs, restated (visionml/pytracking,
    ``pytracking/evaluation/{multi_object_wrapper,tracker,running}.py``; pytracking cannot be installed
    in CI, and its GPL code is not copied here):

    * ``MultiObjectWrapper`` runs one tracker per object; it gives an ``initialize()`` output the
      defaults ``target_bbox`` (the init box), ``time`` and ``segmentation`` (the init mask, None for
      boxes), a ``track()`` output the default ``time``; ``default_merge`` then reads EVERY key of the
      first object's output from every object's output: ``{key: {obj_id: out[key]}}``.
    * ``Tracker._track_sequence`` keeps, per frame, each of ``target_bbox``, ``time``, ``segmentation``,
      ``object_presence_score`` that the (merged) output has; frame 0's defaults are the init box and
      score ``1.0``.
    * ``running._save_tracker_output`` looks at frame 0's value of each key: a dict means one file per
      object; values go through ``np.array(...).astype(int)`` (boxes) or ``.astype(float)`` (scores, times).
    """

    KEYS = ("target_bbox", "time", "segmentation", "object_presence_score")

    def __init__(self, make_tracker):
        self.make_tracker = make_tracker
        self.trackers = OrderedDict()
        self.output = {k: [] for k in self.KEYS}

    @staticmethod
    def _defaults(out, defaults):
        out = dict(out or {})
        for key, val in defaults.items():
            if out.get(key) is None:
                out[key] = val
        return out

    @staticmethod
    def _merge(out_all):
        first = next(iter(out_all.values()))
        return {key: {obj: out[key] for obj, out in out_all.items()}  # KeyError = pytracking's crash
                for key in first if key != "segmentation"}

    def _store(self, out, defaults):
        for key in self.KEYS:
            val = out.get(key, defaults.get(key))
            if key in out or val is not None:
                self.output[key].append(val)

    def frame(self, image, new_boxes):
        """One frame: track the objects already there, then initialise ``new_boxes`` {obj_id: box}."""
        out_all = OrderedDict()
        for obj, tracker in self.trackers.items():
            out_all[obj] = self._defaults(tracker.track(image, {}), {"time": 0.0})
        for obj, box in new_boxes.items():
            self.trackers[obj] = self.make_tracker()
            out = self.trackers[obj].initialize(image, {"init_bbox": box, "object_ids": [obj]})
            out_all[obj] = self._defaults(out, {"target_bbox": box, "time": 0.0, "segmentation": None})
        first_frame = not self.output["time"]
        self._store(self._merge(out_all), {"object_presence_score": 1.0} if first_frame else {})

    def written(self):
        """The arrays running._save_tracker_output writes: {(key, obj_id or None): array}."""
        files = {}
        for key, data in self.output.items():
            if not data or key == "segmentation":
                continue
            kind = int if key == "target_bbox" else float
            if isinstance(data[0], dict):
                per_object = {}
                for frame_values in data:
                    for obj, v in frame_values.items():
                        per_object.setdefault(obj, []).append(v)
                for obj, values in per_object.items():
                    files[key, obj] = np.array(values).astype(kind)
            else:
                files[key, None] = np.array(data).astype(kind)  # TypeError on a dict among floats
        return files


def test_multi_object_runs_through_pytracking_contract(sequence, tiny_model):
    two = render_sequence(num_frames=6, size_wh=(320, 240), num_objects=2, seed=11)
    params = params_for(tiny_model)
    make = lambda: LoRATPytracking(params)  # noqa: E731  (pytracking: base_tracker_class(params))
    box = lambda obj, t: two.boxes[obj - 1, t].tolist()  # noqa: E731

    # An object that appears mid-sequence (the wrapper initialises it while it tracks the other).
    late = PytrackingContract(make)
    for t, frame in enumerate(two.frames):
        late.frame(frame, {1: box(1, 0)} if t == 0 else {2: box(2, 3)} if t == 3 else {})
    files = late.written()
    assert files["target_bbox", 1].shape == (6, 4) and files["target_bbox", 2].shape == (3, 4)
    assert files["object_presence_score", 1].shape == (6,) and files["object_presence_score", 2][0] == 1.0
    assert files["time", 2].shape == (3,)
    np.testing.assert_array_equal(files["target_bbox", 2][0], np.array(box(2, 3)).astype(int))

    # All objects from frame 0: frame 0's scores must be per object too.
    both = PytrackingContract(make)
    for t, frame in enumerate(two.frames):
        both.frame(frame, {1: box(1, 0), 2: box(2, 0)} if t == 0 else {})
    files = both.written()
    assert {k for k in files} == {(key, obj) for key in ("target_bbox", "object_presence_score", "time")
                                  for obj in (1, 2)}
    assert all(files["object_presence_score", obj].shape == (6,) for obj in (1, 2))

    # Single-object mode: the tracker's own outputs, no wrapper.
    single = PytrackingContract(make)
    single._merge = lambda out_all: next(iter(out_all.values()))
    for t, frame in enumerate(sequence.frames):
        single.frame(frame, {1: list(sequence.boxes[0, 0])} if t == 0 else {})
    files = single.written()
    assert files["target_bbox", None].shape == (10, 4) and files["object_presence_score", None].shape == (10,)


def test_network_loads_once_per_process_and_outside_the_clock(sequence, tiny_model, monkeypatch):
    from lorat_tracker import LoRATTracker

    clear_network_cache()
    loads = []
    original = LoRATTracker.from_pretrained.__func__

    def slow_load(cls, *args, **kwargs):
        loads.append(args)
        time.sleep(0.5)  # what reading a real checkpoint costs, at least
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(LoRATTracker, "from_pretrained", classmethod(slow_load))
    params = params_for(tiny_model)
    trackers = [LoRATPytracking(params) for _ in range(3)]  # pytracking: a new tracker per sequence
    for tracker in trackers:
        out = tracker.initialize(sequence.frames[0], {"init_bbox": list(sequence.boxes[0, 0])})
        assert out["time"] < 0.5, "initialize() timed the network loading"
    assert len(loads) == 1
    assert trackers[0].tracker.model is trackers[2].tracker.model
    assert trackers[0].tracker is not trackers[1].tracker  # each has its own target state
    trackers[1].track(sequence.frames[1])
    assert trackers[0].tracker.target.box.tolist() != trackers[1].tracker.target.box.tolist()
    # Another device / precision / weights file is another network.
    LoRATPytracking(lorat_params(tiny_model.variant, str(tiny_model.weights), str(tiny_model.backbone),
                                 device="cpu", precision="bf16")).initialize_features()
    assert len(loads) == 2
    clear_network_cache()


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


def test_templates_run_like_pytracking(checkout, sequence, core_predictions, tiny_model, tmp_path, monkeypatch):
    # What pytracking.evaluation.Tracker does: import the tracker module, get_tracker_class(), parameters().
    assert (checkout / "pytracking" / "tracker" / "lorat").is_dir()
    monkeypatch.chdir(tmp_path)  # the parameter files' default weights name a file in the working directory
    for name in ("base.bin", "base-378.bin", "large.bin", "large-378.bin", "giant.bin", "giant-378.bin"):
        (tmp_path / name).write_bytes(b"")  # present: the files are read when the network loads, not here
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
    monkeypatch.setenv("LORAT_VARIANT", tiny_model.variant)  # the test-size model instead of the released one
    params = importlib.import_module("pytracking.parameter.lorat.b378").parameters()
    assert (params.variant, params.weights, params.backbone, params.device) == \
        (tiny_model.variant, str(tiny_model.weights), str(tiny_model.backbone), "cpu")

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


def test_export_parameter_file_takes_the_exports_own_variant(checkout, sequence, core_predictions, tiny_model,
                                                              tmp_path, monkeypatch):
    # A merged export of a variant no parameter file names (here the test-size one) runs as `lorat export`.
    from lorat_tracker import build_model, export_merged
    from lorat_tracker.errors import ConfigError

    merged = tmp_path / "tiny-merged.safetensors"
    export_merged(build_model(tiny_model.variant, weights=tiny_model.weights, backbone=tiny_model.backbone,
                              device="cpu"), merged)
    export_params = importlib.import_module("pytracking.parameter.lorat.export")
    monkeypatch.delenv("LORAT_WEIGHTS", raising=False)
    with pytest.raises(PytrackingSetupError, match="set LORAT_WEIGHTS .*\\.onnx with LORAT_BACKEND=onnxruntime") as e:
        export_params.parameters()
    assert isinstance(e.value.error, ConfigError)
    monkeypatch.setenv("LORAT_WEIGHTS", str(merged))
    monkeypatch.setenv("LORAT_DEVICE", "cpu")
    params = export_params.parameters()
    assert params.variant is None and params.weights == str(merged) and params.backbone is None
    tracker = importlib.import_module("pytracking.tracker.lorat").get_tracker_class()(params)
    tracker.initialize(sequence.frames[0], {"init_bbox": list(sequence.boxes[0, 0])})
    boxes = [tracker.track(f)["target_bbox"] for f in sequence.frames[1:]]
    np.testing.assert_allclose(boxes, [p.box.tolist() for p in core_predictions], atol=1e-4)


# ----------------------------------------------------- a wrong configuration ends the run before any sequence

class PytrackingRun:
    """What visionml/pytracking (commit 7eb9e74) does around a tracker's configuration, restated:
    ``evaluation/tracker.py``: ``Tracker.__init__`` sets ``parameter_name`` and calls the tracker
    module's ``get_tracker_class()`` (main process, before any sequence); ``get_parameters()`` imports
    the parameter file and calls ``parameters()``. ``evaluation/running.py``: ``run_sequence`` wraps
    the parameters and tracking of each sequence in ``except Exception as e: print(e); return``."""

    def __init__(self, name: str, parameter_name: str):
        self.name, self.parameter_name = name, parameter_name
        self.tracker_class = importlib.import_module(f"pytracking.tracker.{name}").get_tracker_class()

    def get_parameters(self):
        return importlib.import_module(f"pytracking.parameter.{self.name}.{self.parameter_name}").parameters()

    def run_sequence(self, printed: list):
        try:
            return self.tracker_class(self.get_parameters())
        except Exception as e:  # noqa: BLE001 - pytracking's own handling
            printed.append(str(e))


@pytest.mark.parametrize("env, expected", [
    ({"LORAT_VARIANT": "B-225"}, "LORAT_VARIANT: unknown variant 'B-225'"),
    ({"LORAT_WEIGHT": "x.bin"}, "LORAT_WEIGHT is not a LoRAT setting: did you mean LORAT_WEIGHTS?"),
    ({"LORAT_WEIGHTS": "missing.bin"}, "LORAT_WEIGHTS=missing.bin does not exist"),
    ({"LORAT_PRECISION": "fp8"}, "LORAT_PRECISION=fp8 is not one of"),
    ({"LORAT_MASKS": "sam"}, "LORAT_MASKS=sam"),
])
def test_wrong_configuration_ends_the_run_before_the_first_sequence(checkout, tiny_model, env, expected,
                                                                    monkeypatch):
    # Before: each sequence printed the error and pytracking ended "Done" with exit 0, in Python spelling.
    monkeypatch.setenv("LORAT_WEIGHTS", str(tiny_model.weights))
    monkeypatch.setenv("LORAT_BACKBONE", str(tiny_model.backbone))
    monkeypatch.setenv("LORAT_VARIANT", tiny_model.variant)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    PytrackingRun("lorat", "b224")  # an analysis (trackerlist + print_results) builds no parameters
    monkeypatch.setattr(sys, "argv", ["run_tracker.py", "lorat", "b224", "--threads", "2"])
    with pytest.raises(PytrackingSetupError) as e:
        PytrackingRun("lorat", "b224")  # at construction: before run_dataset, whatever --threads
    message = str(e.value)
    assert expected in message and "variant=" not in message and "\n" not in message
    assert isinstance(e.value, SystemExit) and not isinstance(e.value, Exception)  # passes `except Exception`


def test_configuration_error_passes_pytracking_per_sequence_handler(checkout, monkeypatch):
    # Also when the tracker module's early check finds no pytracking Tracker to ask (another caller).
    monkeypatch.setenv("LORAT_VARIANT", "B-225")
    run = PytrackingRun.__new__(PytrackingRun)
    run.name, run.parameter_name = "lorat", "b224"
    run.tracker_class = importlib.import_module("pytracking.tracker.lorat").get_tracker_class()
    printed = []
    with pytest.raises(PytrackingSetupError, match="LORAT_VARIANT"):
        run.run_sequence(printed)
    assert printed == []


def test_in_a_worker_process_the_error_is_pytrackings_per_sequence_one(checkout, monkeypatch):
    # run_tracker.py --threads N: a SystemExit in a multiprocessing.Pool worker would hang the pool.
    import multiprocessing

    from lorat_tracker.spec import SpecError

    monkeypatch.setenv("LORAT_VARIANT", "B-225")
    monkeypatch.setattr(multiprocessing, "parent_process", lambda: object())
    with pytest.raises(SpecError, match="LORAT_VARIANT: unknown variant"):
        importlib.import_module("pytracking.parameter.lorat.b224").parameters()


def test_good_configuration_checks_once_and_tracks(checkout, tiny_model, sequence, core_predictions, monkeypatch):
    monkeypatch.setenv("LORAT_WEIGHTS", str(tiny_model.weights))
    monkeypatch.setenv("LORAT_BACKBONE", str(tiny_model.backbone))
    monkeypatch.setenv("LORAT_VARIANT", tiny_model.variant)
    monkeypatch.setenv("LORAT_DEVICE", "cpu")
    monkeypatch.setenv("LORAT_VOT_LOG", "ignored.log")  # the VOT server's variables are not the tracker's
    monkeypatch.setattr(sys, "argv", ["run_experiment.py", "myexperiments", "lorat"])
    run = PytrackingRun("lorat", "b224")
    tracker = run.run_sequence(printed := [])
    assert printed == [] and isinstance(tracker, LoRATPytracking)
    tracker.initialize(sequence.frames[0], {"init_bbox": list(sequence.boxes[0, 0])})
    assert tracker.track(sequence.frames[1])["target_bbox"] == core_predictions[0].box.tolist()


# ------------------------------------------------------------ demo layouts that pytracking's datasets read

def _pytracking_got10k_val(root):
    """pytracking/evaluation/got10kdataset.py (split 'val'), restated: list.txt, then per sequence
    ``groundtruth.txt`` (np.loadtxt, ',') and the ``.jpg`` frames sorted by number."""
    base = root / "val"
    out = {}
    for name in (base / "list.txt").read_text().splitlines():
        gt = np.loadtxt(base / name / "groundtruth.txt", delimiter=",", dtype=np.float64).reshape(-1, 4)
        frames = sorted((f for f in (base / name).iterdir() if f.name.endswith(".jpg")), key=lambda f: int(f.name[:-4]))
        out[name] = (gt, frames)
    return out


def _pytracking_trackingnet(root):
    """pytracking/evaluation/trackingnetdataset.py, restated: ``TEST/anno/*.txt`` and ``TEST/frames/<seq>/*.jpg``."""
    out = {}
    for anno in sorted((root / "TEST" / "anno").glob("*.txt")):
        gt = np.loadtxt(anno, delimiter=",", dtype=np.float64).reshape(-1, 4)
        frames = sorted((root / "TEST" / "frames" / anno.stem).glob("*.jpg"), key=lambda f: int(f.name[:-4]))
        out[anno.stem] = (gt, frames)
    return out


@pytest.mark.parametrize("layout, reader, first_only", [("got10k", _pytracking_got10k_val, False),
                                                        ("trackingnet", _pytracking_trackingnet, True)])
def test_demo_layouts_read_by_pytracking_datasets(tmp_path, layout, reader, first_only):
    from lorat_tracker.demo import LAYOUTS

    written = LAYOUTS[layout].write(tmp_path, count=2, frames=5, seed=1)
    read = reader(tmp_path)
    assert set(read) == set(written)
    for name, (gt, frames) in read.items():
        assert len(frames) == 5 and frames[0].name.startswith("0")
        truth = written[name].boxes[0]
        np.testing.assert_allclose(gt, truth[:1] if first_only else truth, atol=1e-3)
