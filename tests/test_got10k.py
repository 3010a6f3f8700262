"""lorat_tracker.integrations.got10k against the real got10k 0.1.3 toolkit, on tiny synthetic datasets (CPU, offline)."""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

got10k = pytest.importorskip("got10k")

from got10k.trackers import Tracker  # noqa: E402

from lorat_tracker.integrations.got10k import (Benchmark, ExperimentLaSOT, ExperimentLaSOTExtension, ExperimentTNL2K,  # noqa: E402
                                 ExperimentTrackingNet, LoRATGot10kTracker, apply_compat, normalized_center_error)
from lorat_tracker.integrations.got10k.experiments import atomic_savetxt  # noqa: E402
from lorat_tracker.errors import DatasetLayoutError, LoRATError  # noqa: E402

from lorat_tracker import demo as sd  # noqa: E402

FRAMES = 10


@pytest.fixture(scope="module")
def lorat(tiny_model):
    return tiny_model.tracker()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    return {
        "root": root,
        "got10k": sd.write_got10k(root / "got10k", "val", count=3, frames=FRAMES),
        "lasot": sd.write_lasot(root / "lasot", frames=FRAMES),
        "otb": sd.write_otb(root / "otb", frames=FRAMES),
    }


class OracleTracker(Tracker):
    """Answers the true 0-based boxes of a synthetic sequence (plus ``offset``); records its init box."""

    def __init__(self, sequences, name="oracle", offset=(0, 0, 0, 0)):
        super().__init__(name=name, is_deterministic=True)
        self.sequences, self.offset, self.init_boxes = sequences, np.array(offset, float), []

    def track(self, img_files, box, visualize=False):
        self.init_boxes.append(np.array(box, dtype=float))
        seq = next(s for s in self.sequences.values() if np.array_equal(s.boxes[0][0], box))
        boxes = seq.boxes[0] + self.offset
        return boxes, np.full(len(img_files), 0.01)


def toolkit_rgb(path) -> np.ndarray:
    """A frame as the got10k toolkit hands it over (PIL, RGB), as an array."""
    from PIL import Image

    with Image.open(os.fspath(path)) as im:
        return np.array(im.convert("RGB"))


def lorat_boxes(lorat, img_files, init_box):
    """LoRATTracker driven directly on the same frames (read the way the toolkit reads them)."""
    frames = [toolkit_rgb(f) for f in img_files]
    lorat.initialize(frames[0], init_box)
    return np.array([init_box] + [lorat.track(f).box for f in frames[1:]])


def load(path):
    return np.loadtxt(path, delimiter=",", ndmin=2)


def in_unit_range(values):
    values = np.asarray(values, dtype=float)
    return bool(np.all((values >= 0) & (values <= 1)))


# ---------------------------------------------------------------- compatibility fixes

def test_compat_fixes_are_applied_and_idempotent(data):
    from got10k.datasets import OTB
    from got10k.experiments import ExperimentOTB, ExperimentVOT

    apply_compat()
    apply_compat()
    assert np.isnan(np.NaN)
    # the ragged array numpy >= 1.24 refuses in the original _calc_iou: a skipped frame next to a box
    ious = ExperimentVOT._calc_iou(None, [[1.0], [10, 10, 20, 20]], [np.array([10, 10, 20, 20.0])] * 2,
                                   bound=(320, 240))
    assert np.isnan(ious[0]) and ious[1] == pytest.approx(1.0)
    # no download attempt for a partial OTB (offline this would raise URLError)
    assert OTB._download(None, "x", 2015) is None
    experiment = ExperimentOTB(str(data["root"] / "otb"), version=2015)
    assert sorted(experiment.dataset.seq_names) == sorted(sd.OTB_NAMES)


def test_missing_sequences_are_one_log_record_not_a_print_each(data, capsys, caplog):
    # got10k prints "Warning: sequence Bird2 not exists." for each of the 97 OTB-2015 sequences a
    # partial copy lacks; the integration turns them into one INFO record (the CLI and Python alike).
    import logging

    from got10k.datasets import OTB
    from got10k.experiments import ExperimentOTB

    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="lorat_tracker.integrations.got10k"):
        ExperimentOTB(str(data["root"] / "otb"), version=2015, result_dir=str(data["root"] / "r"))
    out = capsys.readouterr().out
    assert "not exists" not in out, out[:500]
    records = [r.getMessage() for r in caplog.records if r.name == "lorat_tracker.integrations.got10k"]
    assert len(records) == 1, records
    otb_missing = len(set(OTB._OTB__version_dict[2015]) - set(sd.OTB_NAMES))
    assert records[0].startswith(f"OTB: {otb_missing} listed sequences are not under ") and "Bird2" in records[0]
    assert all(f" {n}," not in records[0] and not records[0].endswith(n) for n in sd.OTB_NAMES)
    assert OTB._check_integrity._lorat_quiet and OTB._check_integrity.__name__ == "_check_integrity"


# ---------------------------------------------------------------- experiments, run + report

def test_got10k_val_run_report_and_same_boxes_as_lorat_tracker(data, lorat, tmp_path):
    from got10k.experiments import ExperimentGOT10k

    tracker = LoRATGot10kTracker(lorat)
    assert tracker.name == "tiny-mlp-224" and tracker.is_deterministic
    experiment = ExperimentGOT10k(str(data["root"] / "got10k"), subset="val", result_dir=str(tmp_path / "results"),
                                  report_dir=str(tmp_path / "reports"))
    experiment.run(tracker)
    performance = experiment.report([tracker.name])

    for seq in data["got10k"]:
        folder = tmp_path / "results" / "GOT-10k" / tracker.name / seq
        assert sorted(os.listdir(folder)) == [f"{seq}_001.txt", f"{seq}_time.txt"]  # one repetition
        assert load(folder / f"{seq}_001.txt").shape == (FRAMES, 4)
    overall = performance[tracker.name]["overall"]
    assert set(overall) == {"ao", "sr", "speed_fps", "succ_curve"}
    assert len(overall["succ_curve"]) == 101 and in_unit_range(overall["succ_curve"])
    assert 0 <= overall["sr"] <= overall["ao"] + 0.5 and 0 <= overall["ao"] <= 1 and overall["speed_fps"] > 0
    assert set(performance[tracker.name]["seq_wise"]) == set(data["got10k"])
    report = tmp_path / "reports" / "GOT-10k" / tracker.name
    assert json.loads((report / "performance.json").read_text())[tracker.name]["overall"]["ao"] == \
        pytest.approx(overall["ao"])
    assert (report / "success_plot.png").stat().st_size > 0

    # the adapter passes frames and boxes through: same boxes as LoRATTracker, up to the files' %.3f
    seq = next(iter(data["got10k"]))
    img_files, anno = experiment.dataset[seq][:2]
    expected = lorat_boxes(lorat, img_files, anno[0])
    written = load(tmp_path / "results" / "GOT-10k" / tracker.name / seq / f"{seq}_001.txt")
    np.testing.assert_allclose(written, expected, atol=5.01e-4, rtol=0)


def test_lasot_run_report(data, lorat, tmp_path):
    tracker = LoRATGot10kTracker(lorat, name="lorat")
    experiment = ExperimentLaSOT(str(data["root"] / "lasot"), result_dir=str(tmp_path / "results"),
                                 report_dir=str(tmp_path / "reports"))
    assert experiment.dataset.seq_names == list(sd.LASOT_NAMES)
    experiment.run(tracker)
    performance = experiment.report(["lorat"])

    overall = performance["lorat"]["overall"]
    assert {"success_curve", "precision_curve", "normalized_precision_curve", "success_score", "precision_score",
            "normalized_precision_score", "success_rate", "speed_fps"} <= set(overall)
    assert [len(overall[k]) for k in ("success_curve", "precision_curve", "normalized_precision_curve")] == [21, 51, 51]
    for key in ("success_curve", "precision_curve", "normalized_precision_curve", "success_score",
                "precision_score", "normalized_precision_score", "success_rate"):
        assert in_unit_range(overall[key]), key
    assert overall["success_score"] == pytest.approx(np.mean(overall["success_curve"]))
    assert overall["normalized_precision_score"] == pytest.approx(overall["normalized_precision_curve"][20])
    assert set(performance["lorat"]["seq_wise"]) == set(sd.LASOT_NAMES)
    report = tmp_path / "reports" / "LaSOT" / "lorat"
    for png in ("success_plots.png", "precision_plots.png", "norm_precision_plots.png"):
        assert (report / png).stat().st_size > 0
    assert (report / "performance.json").is_file()

    # LoRAT ran on 0-based pixels, the file is back in LaSOT's 1-based frame
    seq = sd.LASOT_NAMES[0]
    img_files, anno = experiment.dataset[seq]
    truth0 = data["lasot"][seq].boxes[0][0]
    expected = lorat_boxes(lorat, img_files, truth0) + [1, 1, 0, 0]
    written = load(tmp_path / "results" / "LaSOT" / "lorat" / f"{seq}.txt")
    np.testing.assert_allclose(written, expected, atol=5.01e-4, rtol=0)


def test_lasot_one_based_annotations(data, tmp_path):
    """An oracle that answers the exact 0-based boxes scores 1.0 only if both shifts are right."""
    experiment = ExperimentLaSOT(str(data["root"] / "lasot"), result_dir=str(tmp_path / "r"),
                                 report_dir=str(tmp_path / "p"))
    oracle = OracleTracker(data["lasot"])
    shifted = OracleTracker(data["lasot"], name="off-by-one", offset=(1, 1, 0, 0))
    experiment.run(oracle)
    experiment.run(shifted)
    # the tracker gets 0-based pixels: groundtruth.txt minus 1 on x and y
    for seq, init in zip(sd.LASOT_NAMES, oracle.init_boxes):
        np.testing.assert_array_equal(init, data["lasot"][seq].boxes[0][0])
        gt = load(data["root"] / "lasot" / "airplane" / seq / "groundtruth.txt")
        np.testing.assert_array_equal(init + [1, 1, 0, 0], gt[0])
        # and the result file is in groundtruth.txt's 1-based frame
        np.testing.assert_array_equal(load(tmp_path / "r" / "LaSOT" / "oracle" / f"{seq}.txt"), gt)
    performance = experiment.report(["oracle", "off-by-one"])
    exact, off = performance["oracle"]["overall"], performance["off-by-one"]["overall"]
    # IoU 1 everywhere: every threshold but the last (IoU > 1.0) passes, the best AUC there is (20/21)
    assert exact["success_curve"][:-1] == [1.0] * 20 and exact["success_score"] == pytest.approx(20 / 21)
    assert exact["precision_score"] == 1.0 and exact["normalized_precision_score"] == 1.0
    # a one-pixel error is visible (this test has teeth): IoU ~0.95 fails the upper thresholds
    assert off["success_score"] < exact["success_score"] - 0.04


def test_lasot_frames_flagged_absent_count_as_failures(tmp_path):
    sequences = sd.write_lasot(tmp_path / "lasot", names=("airplane-1",), frames=6)
    flags = ["0"] * 6
    flags[3] = "1"
    (tmp_path / "lasot" / "airplane" / "airplane-1" / "out_of_view.txt").write_text(",".join(flags))
    experiment = ExperimentLaSOT(str(tmp_path / "lasot"), result_dir=str(tmp_path / "r"),
                                 report_dir=str(tmp_path / "p"))
    experiment.run(OracleTracker(sequences))
    overall = experiment.report(["oracle"], plot_curves=False)["oracle"]["overall"]
    assert overall["success_curve"][0] == pytest.approx(5 / 6)
    assert overall["precision_score"] == pytest.approx(5 / 6)


def test_otb_run_report(data, lorat, tmp_path):
    from got10k.experiments import ExperimentOTB

    tracker = LoRATGot10kTracker(lorat, name="lorat")
    experiment = ExperimentOTB(str(data["root"] / "otb"), version=2015, result_dir=str(tmp_path / "results"),
                               report_dir=str(tmp_path / "reports"))
    experiment.run(tracker)
    overall = experiment.report(["lorat"])["lorat"]["overall"]
    assert len(overall["success_curve"]) == 21 and len(overall["precision_curve"]) == 51
    for key in ("success_score", "precision_score", "success_rate"):
        assert 0 <= overall[key] <= 1
    for seq in sd.OTB_NAMES:
        assert load(tmp_path / "results" / "OTB2015" / "lorat" / f"{seq}.txt").shape == (FRAMES, 4)
        assert (tmp_path / "results" / "OTB2015" / "lorat" / "times" / f"{seq}_time.txt").is_file()
    assert (tmp_path / "reports" / "OTB2015" / "lorat" / "success_plots.png").is_file()


def test_trackingnet_test_split_packs_rasterized_results(lorat, tmp_path):
    sd.write_trackingnet(tmp_path / "tn", count=2, frames=6)
    tracker = LoRATGot10kTracker(lorat, name="lorat")
    experiment = ExperimentTrackingNet(str(tmp_path / "tn"), result_dir=str(tmp_path / "r"),
                                       report_dir=str(tmp_path / "p"))
    experiment.run(tracker)
    assert experiment.report(["lorat"]) is None  # no ground truth: a submission zip
    with zipfile.ZipFile(tmp_path / "r" / "TrackingNet" / "lorat.zip") as z:
        assert sorted(z.namelist()) == ["synthetic_0.txt", "synthetic_1.txt"]
        boxes = np.loadtxt(z.open("synthetic_0.txt"), delimiter=",")
    assert boxes.shape == (6, 4) and np.array_equal(boxes, np.round(boxes))


def test_other_layouts_with_an_oracle(tmp_path):
    """TNL2K (as stored), LaSOT-ext (1-based, every sequence) and a TrackingNet TRAIN chunk (scored)."""
    sequences = {**sd.write_tnl2k(tmp_path / "tnl2k"),
                 **sd.write_lasot(tmp_path / "ext", names=("atv-1", "wingsuit-3"), frames=6),
                 **sd.write_trackingnet(tmp_path / "tn", subset="TRAIN_0", count=2, frames=6)}
    oracle = OracleTracker(sequences)
    dirs = {"result_dir": str(tmp_path / "r"), "report_dir": str(tmp_path / "p")}
    for experiment in (ExperimentTNL2K(str(tmp_path / "tnl2k"), **dirs),
                       ExperimentLaSOTExtension(str(tmp_path / "ext"), **dirs),
                       ExperimentTrackingNet(str(tmp_path / "tn"), subset="TRAIN_0", **dirs)):
        assert len(experiment.dataset) == 2
        experiment.run(oracle)
        overall = experiment.report(["oracle"], plot_curves=False)["oracle"]["overall"]
        assert overall["success_score"] == pytest.approx(20 / 21), type(experiment).__name__
        assert overall["precision_score"] == 1.0
    assert sorted(os.listdir(tmp_path / "r")) == ["LaSOT_extension", "TNL2K", "TrackingNet"]


# ---------------------------------------------------------------- errors, helpers

def test_lasot_without_test_sequences_says_subset_all_takes_them(tmp_path):
    sd.write_lasot(tmp_path, names=("airplane-2", "bird-5"), frames=3)   # both in the train split
    with pytest.raises(DatasetLayoutError) as e:
        ExperimentLaSOT(str(tmp_path))
    message = str(e.value)
    assert "holds 2 LaSOT-layout sequences" in message and "none of the LaSOT test split" in message
    assert "subset='all' takes every sequence found" in message and "lorat eval lasot-ext" in message
    assert ExperimentLaSOT(str(tmp_path), subset="all").dataset.seq_names == ["airplane-2", "bird-5"]  # the advice works

def test_wrong_layout_is_a_typed_error_naming_what_is_missing(data, tmp_path):
    with pytest.raises(DatasetLayoutError) as e:
        ExperimentLaSOT(str(tmp_path))
    assert isinstance(e.value, LoRATError) and isinstance(e.value, ValueError)
    assert "groundtruth.txt" in str(e.value) and "Expected layout" in str(e.value)

    broken = tmp_path / "lasot"
    sd.write_lasot(broken, names=("airplane-1",), frames=3)
    for f in (broken / "airplane" / "airplane-1" / "img").iterdir():
        f.unlink()
    with pytest.raises(DatasetLayoutError, match=r"missing .*airplane-1.img.00000001\.jpg"):
        ExperimentLaSOT(str(broken))

    with pytest.raises(DatasetLayoutError, match=r"missing .*list\.txt"):
        Benchmark("got10k-val", str(data["root"] / "lasot"))
    with pytest.raises(DatasetLayoutError, match="OTB-2015"):
        Benchmark("otb", str(data["root"] / "lasot"))
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        Benchmark("tnl2k", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetLayoutError, match="'airplane-2' is not part of LaSOT"):
        ExperimentLaSOT(str(data["root"] / "lasot"), sequences=["airplane-2"])


def test_normalized_center_error_by_hand():
    pred = np.array([[10.0, 10, 20, 20], [0, 10, 20, 40]])
    gt = np.array([[0.0, 10, 20, 40], [0, 10, 20, 40]])
    # centres (19.5, 19.5) vs (9.5, 29.5): offsets (10, -10) / (20, 40) -> sqrt(0.25 + 0.0625)
    np.testing.assert_allclose(normalized_center_error(pred, gt), [np.sqrt(0.3125), 0.0])


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "seq.txt"
    with pytest.raises(TypeError):  # numpy cannot format strings as %.3f
        atomic_savetxt(str(target), np.array([["not", "numbers"]], dtype=object), fmt="%.3f", delimiter=",")
    assert list(tmp_path.iterdir()) == []
    atomic_savetxt(str(target), np.ones((2, 4)), fmt="%.3f", delimiter=",")
    assert [p.name for p in tmp_path.iterdir()] == ["seq.txt"]
    assert target.read_text() == "1.000,1.000,1.000,1.000\n" * 2
