"""Experiments got10k 0.1.3 lacks: LaSOT, LaSOT-extension, TNL2K and TrackingNet.

They follow the got10k Experiment interface (``run(tracker)``, ``report([names])``, ``show``,
``result_dir/<Benchmark>/<tracker>/<seq>.txt`` with ``%.3f`` comma-separated ``x,y,w,h`` lines,
``.../times/<seq>_time.txt``, ``report_dir/<Benchmark>/<tracker>/performance.json`` and PNG plots)
and reuse the toolkit's ``ExperimentOTB`` (plots, ``show``) and metric functions (``rect_iou``,
``center_error``). Only the normalised precision is written here: got10k 0.1.3 has no such metric.

Scoring (one-pass evaluation, as pytracking and the official LoRAT evaluation compute it): success
curve over 21 IoU thresholds 0..1 (strict ``>``), AUC = its mean; precision = share of frames with
centre error <= 20 px; normalised precision = share with normalised centre error (centre offset
divided by the ground-truth width/height) <= 0.2; row 0 of the results is replaced by the ground
truth; a frame whose ground truth is not a valid box (w or h <= 0, NaN) or whose target is flagged
absent (LaSOT's ``full_occlusion.txt``/``out_of_view.txt``) counts as a failure in every curve.

Results are written atomically (temporary file, then ``os.replace``), so an interrupted ``run()``
never leaves a truncated result file that the next ``run()`` would skip.
"""
from __future__ import annotations

import json
import os
import zipfile

import matplotlib
import numpy as np
from got10k.experiments import ExperimentOTB
from got10k.utils.metrics import center_error, rect_iou

from lorat_tracker.boxes import rasterized_xywh, xywh_to_xyxy
from lorat_tracker.errors import DatasetLayoutError, ResultsLayoutError
from lorat_tracker.io import atomic_open, atomic_path

from .datasets import OPESequenceDataset, load_lasot, load_tnl2k, load_trackingnet, read_result_boxes


def atomic_savetxt(path: str, array, fmt: str, delimiter: str = " ") -> None:
    """``np.savetxt`` through ``lorat_tracker.io.atomic_open`` (temporary file, fsync, umask mode, rename)."""
    with atomic_open(path, "w") as f:
        np.savetxt(f, array, fmt=fmt, delimiter=delimiter)


def rasterize_xywh(boxes: np.ndarray) -> np.ndarray:
    """Integer boxes covering every touched pixel, as the official GOT-10k/TrackingNet writers do."""
    out = np.empty_like(boxes, dtype=np.float64)
    for i, box in enumerate(boxes):
        out[i] = rasterized_xywh(xywh_to_xyxy(box))
    return out


def normalized_center_error(rects1: np.ndarray, rects2: np.ndarray) -> np.ndarray:
    """Centre error with the offset divided by the ground truth's (``rects2``) width and height.

    Written here because got10k 0.1.3 has no such function; centres as in ``center_error``
    (``x + (w - 1) / 2``), normalisation as in pytracking's ``calc_err_center(normalized=True)``.
    """
    centers1 = rects1[..., :2] + (rects1[..., 2:] - 1) / 2
    centers2 = rects2[..., :2] + (rects2[..., 2:] - 1) / 2
    return np.sqrt(np.sum(((centers1 - centers2) / rects2[..., 2:]) ** 2, axis=-1))


def select_sequences(available, wanted, benchmark: str, root: str):
    """``wanted`` names in the order given, or DatasetLayoutError naming the first unknown one."""
    if not wanted:
        return list(available)
    known = set(available)
    for name in wanted:
        if name not in known:
            shown = ", ".join(list(available)[:5]) + (", ..." if len(available) > 5 else "")
            raise DatasetLayoutError(f"sequence {name!r} is not part of {benchmark} under {root} "
                                     f"({len(available)} sequences: {shown})")
    return list(dict.fromkeys(wanted))


def _as_json(scores: dict) -> dict:
    return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in scores.items()}


class ExperimentOPE(ExperimentOTB):
    """One-pass evaluation over an ``OPESequenceDataset``; base of the experiments below.

    Class attributes: ``benchmark`` (the results/report sub-folder), ``one_based`` (the annotation
    files are 1-based: the tracker gets ``x - 1, y - 1`` and the result files get ``+ 1`` back, so they
    are in the same frame as the ground truth and as other trackers' published results),
    ``rasterize`` (write integer boxes covering the predicted box, as the official submissions do),
    ``use_visibility`` (score frames flagged absent as failures).
    """
    benchmark = "OPE"
    one_based = False
    rasterize = False
    use_visibility = False

    def __init__(self, dataset: OPESequenceDataset, result_dir="results", report_dir="reports"):
        # ExperimentOTB.__init__ would build an OTB dataset: set its attributes here instead.
        self.dataset = dataset
        self.result_dir = os.path.join(result_dir, self.benchmark)
        self.report_dir = os.path.join(report_dir, self.benchmark)
        self.nbins_iou = 21
        self.nbins_ce = 51
        self.nbins_nce = 51

    # ---------------------------------------------------------------- file conventions

    def record_file(self, tracker_name: str, seq_name: str) -> str:
        return os.path.join(self.result_dir, tracker_name, f"{seq_name}.txt")

    def time_file(self, tracker_name: str, seq_name: str) -> str:
        return os.path.join(self.result_dir, tracker_name, "times", f"{seq_name}_time.txt")

    def init_box(self, anno: np.ndarray) -> np.ndarray:
        """The first-frame box as the tracker needs it: 0-based pixels."""
        box = np.array(anno[0], dtype=np.float64)
        if self.one_based:
            box[:2] -= 1
        return box

    def to_file_boxes(self, boxes) -> np.ndarray:
        """Tracker boxes (0-based, float) -> the numbers written to the result file."""
        boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
        if self.rasterize:
            boxes = rasterize_xywh(boxes)
        if self.one_based:
            boxes[:, :2] += 1
        return boxes

    def write_result(self, tracker_name: str, seq_name: str, boxes, times) -> None:
        """Write one sequence's files atomically; the time file first, the result file (= done) last."""
        atomic_savetxt(self.time_file(tracker_name, seq_name), np.asarray(times, dtype=np.float64), fmt="%.8f")
        atomic_savetxt(self.record_file(tracker_name, seq_name), self.to_file_boxes(boxes), fmt="%.3f",
                       delimiter=",")

    # ---------------------------------------------------------------- got10k interface

    def run(self, tracker, visualize=False):
        print(f"Running tracker {tracker.name} on {self.benchmark}...")
        for s, seq_name in enumerate(self.dataset.seq_names):
            print(f"--Sequence {s + 1}/{len(self.dataset)}: {seq_name}")
            if os.path.exists(self.record_file(tracker.name, seq_name)):
                print("  Found results, skipping", seq_name)
                continue
            img_files, anno = self.dataset[seq_name]
            boxes, times = tracker.track(img_files, self.init_box(anno), visualize=visualize)
            assert len(boxes) == len(img_files)
            self.write_result(tracker.name, seq_name, boxes, times)

    def has_ground_truth(self) -> bool:
        """False on a test split whose annotation files hold only the first box."""
        if len(self.dataset) == 0:
            return False
        img_files, anno = self.dataset[0]
        return len(anno) == len(img_files)

    def load_result(self, tracker_name: str, seq_name: str, length: int) -> np.ndarray:
        path = self.record_file(tracker_name, seq_name)
        if not os.path.isfile(path):
            raise ResultsLayoutError(f"no results for sequence {seq_name} of tracker {tracker_name}: "
                                     f"{path} is missing - run the tracker first")
        return read_result_boxes(path, length)

    def _calc_metrics(self, boxes, anno, visible=None):
        valid = np.all(np.isfinite(anno), axis=1) & (anno[:, 2] > 0) & (anno[:, 3] > 0)
        if visible is not None:
            valid &= visible
        ious = np.full(len(anno), -1.0)
        center_errors = np.full(len(anno), np.inf)
        norm_center_errors = np.full(len(anno), np.inf)
        if valid.any():
            ious[valid] = rect_iou(boxes[valid], anno[valid])
            center_errors[valid] = center_error(boxes[valid], anno[valid])
            norm_center_errors[valid] = normalized_center_error(boxes[valid], anno[valid])
        return ious, center_errors, norm_center_errors

    def _calc_curves(self, ious, center_errors, norm_center_errors=None):
        succ_curve, prec_curve = super()._calc_curves(ious, center_errors)
        if norm_center_errors is None:
            return succ_curve, prec_curve
        thr_nce = np.arange(self.nbins_nce)[np.newaxis, :] / 100.0
        norm_prec_curve = np.mean(np.less_equal(np.asarray(norm_center_errors, float)[:, np.newaxis], thr_nce),
                                  axis=0)
        return succ_curve, prec_curve, norm_prec_curve

    def sequence_scores(self, tracker_name: str, seq_name: str) -> dict:
        """Per-sequence metrics of one tracker (its result file must exist)."""
        _, anno = self.dataset[seq_name]
        boxes = self.load_result(tracker_name, seq_name, len(anno))
        boxes[0] = anno[0]
        visible = self.dataset.visible(seq_name) if self.use_visibility else None
        return self._scores(*self._calc_curves(*self._calc_metrics(boxes, anno, visible)))

    def _scores(self, succ, prec, nprec) -> dict:
        """The three curves and the scores read off them (performance.json's keys, in its order)."""
        return {"success_curve": succ, "precision_curve": prec, "normalized_precision_curve": nprec,
                "success_score": float(np.mean(succ)), "precision_score": float(prec[20]),
                "normalized_precision_score": float(nprec[20]), "success_rate": float(succ[self.nbins_iou // 2])}

    def _speed(self, tracker_name: str, seq_name: str) -> float:
        path = self.time_file(tracker_name, seq_name)
        if os.path.isfile(path):
            times = np.loadtxt(path, ndmin=1)
            times = times[times > 0]
            if len(times) > 0:
                return float(np.mean(1.0 / times))
        return -1.0

    def report(self, tracker_names, plot_curves=True):
        """``performance.json`` with ExperimentOTB's keys plus ``normalized_precision_curve``/``_score``."""
        assert isinstance(tracker_names, (list, tuple))
        if not self.has_ground_truth():
            return self._pack_submission(tracker_names)
        report_dir = os.path.join(self.report_dir, tracker_names[0])
        os.makedirs(report_dir, exist_ok=True)
        performance = {}
        for name in tracker_names:
            seq_wise, curves, speeds = {}, [], []
            for seq_name in self.dataset.seq_names:
                m = self.sequence_scores(name, seq_name)
                speed = self._speed(name, seq_name)
                curves.append((m["success_curve"], m["precision_curve"], m["normalized_precision_curve"]))
                speeds.append(speed)
                seq_wise[seq_name] = {**_as_json(m), "speed_fps": speed}
            overall = self._scores(*(np.mean([c[i] for c in curves], axis=0) for i in range(3)))
            valid_speeds = [s for s in speeds if s > 0]
            performance[name] = {
                "overall": {**_as_json(overall), "speed_fps": float(np.mean(valid_speeds)) if valid_speeds else -1.0},
                "seq_wise": seq_wise}
        with atomic_open(os.path.join(report_dir, "performance.json"), "w") as f:
            json.dump(performance, f, indent=4)
        if plot_curves:
            self.plot_curves(tracker_names)
        return performance

    def plot_curves(self, tracker_names):
        """ExperimentOTB's success and precision plots, plus the normalised precision plot."""
        import matplotlib.pyplot as plt

        super().plot_curves(tracker_names)
        report_dir = os.path.join(self.report_dir, tracker_names[0])
        with open(os.path.join(report_dir, "performance.json")) as f:
            performance = json.load(f)
        names = sorted(performance, key=lambda n: -performance[n]["overall"]["normalized_precision_score"])
        thr = np.arange(self.nbins_nce) / 100.0
        fig, ax = plt.subplots()
        for i, name in enumerate(names):
            ax.plot(thr, performance[name]["overall"]["normalized_precision_curve"], ["-", "--", "-."][i // 10 % 3],
                    label="%s: [%.3f]" % (name, performance[name]["overall"]["normalized_precision_score"]))
        matplotlib.rcParams.update({"font.size": 7.4})
        legend = ax.legend(loc="center left", bbox_to_anchor=(1, 0.5))
        matplotlib.rcParams.update({"font.size": 9})
        ax.set(xlabel="Normalized location error threshold", ylabel="Normalized precision",
               xlim=(0, thr.max()), ylim=(0, 1), title="Normalized precision plots of OPE")
        ax.grid(True)
        fig.tight_layout()
        fig.savefig(os.path.join(report_dir, "norm_precision_plots.png"), bbox_extra_artists=(legend,),
                    bbox_inches="tight", dpi=300)
        plt.close("all")

    def _pack_submission(self, tracker_names):
        """No ground truth (a test split): zip each tracker's result files for the evaluation server."""
        for name in tracker_names:
            zip_path = os.path.join(self.result_dir, f"{name}.zip")
            with atomic_path(zip_path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
                for seq_name in self.dataset.seq_names:
                    path = self.record_file(name, seq_name)
                    if not os.path.isfile(path):
                        raise ResultsLayoutError(f"cannot pack {name}: {path} is missing - run the tracker first")
                    z.write(path, arcname=f"{seq_name}.txt")
            print("Records saved at", zip_path)
        return None


class ExperimentLaSOT(ExperimentOPE):
    """LaSOT (``subset='test'``: the 280 official test sequences present on disk; ``'all'``: every one found).

    LaSOT annotations are 1-based (Matlab heritage). As in the official LoRAT evaluation, the
    tracker is initialised with the first box shifted by -1 on x and y (0-based pixels, so the crop
    sees the right pixels) and the result files are shifted +1 back: results are in the same
    1-based frame as ``groundtruth.txt``, scored against it as stored, and comparable with other
    trackers' published LaSOT result files. ``full_occlusion.txt``/``out_of_view.txt`` mark frames
    that count as failures (pytracking's LaSOT rule).
    """
    benchmark = "LaSOT"
    one_based = True
    use_visibility = True
    subset = "test"

    def __init__(self, root_dir, subset=None, result_dir="results", report_dir="reports", sequences=None):
        self.root_dir = root_dir
        subset = subset or self.subset
        if subset not in ("test", "all"):
            raise DatasetLayoutError(f"unknown LaSOT subset {subset!r}: use 'test' or 'all'")
        dataset = load_lasot(root_dir, subset)
        names = select_sequences(dataset.seq_names, sequences, self.benchmark, root_dir)
        super().__init__(dataset.subset(names), result_dir, report_dir)


class ExperimentLaSOTExtension(ExperimentLaSOT):
    """LaSOT-extension (150 sequences, ``LaSOT_extension_subset``): LaSOT's layout and 1-based rule."""
    benchmark = "LaSOT_extension"
    subset = "all"


class ExperimentTNL2K(ExperimentOPE):
    """TNL2K test (``ROOT/<seq>/imgs/``, ``groundtruth.txt``): boxes used as stored, like the official
    LoRAT evaluation (its 1-based shift applies to LaSOT only)."""
    benchmark = "TNL2K"

    def __init__(self, root_dir, result_dir="results", report_dir="reports", sequences=None):
        self.root_dir = root_dir
        dataset = load_tnl2k(root_dir)
        names = select_sequences(dataset.seq_names, sequences, self.benchmark, root_dir)
        super().__init__(dataset.subset(names), result_dir, report_dir)


class ExperimentTrackingNet(ExperimentOPE):
    """TrackingNet (``subset='TEST'`` or a ``TRAIN_<k>`` chunk). Boxes are rasterised, as in the official
    LoRAT submissions. On TEST (first-frame box only) ``report()`` packs ``result_dir/TrackingNet/
    <tracker>.zip`` for the evaluation server and returns None; on a TRAIN chunk it scores locally."""
    benchmark = "TrackingNet"
    rasterize = True

    def __init__(self, root_dir, subset="TEST", result_dir="results", report_dir="reports", sequences=None):
        self.root_dir = root_dir
        dataset = load_trackingnet(root_dir, subset)
        names = select_sequences(dataset.seq_names, sequences, self.benchmark, root_dir)
        super().__init__(dataset.subset(names), result_dir, report_dir)
