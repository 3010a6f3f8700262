"""One small adapter per benchmark, so a runner (``lorat eval``) can drive any got10k experiment the
same way: which sequences exist, which are done, the first box to start from, where and how a
sequence's results are written (atomically), the per-sequence score for a progress bar, the
report, and the headline numbers. Tracking itself is not here: a runner tracks a sequence however
it likes (one at a time, or several in lockstep) and hands the boxes to ``write``.
"""
from __future__ import annotations

import ast
import contextlib
import io
import os
import shutil
import tempfile
from typing import Dict, List, Optional

import numpy as np

from lorat_tracker.benchmark_layouts import check_annotation
from lorat_tracker.errors import AnnotationError, DatasetLayoutError, ResultsLayoutError

from . import datasets as ds
from .experiments import (ExperimentLaSOT, ExperimentLaSOTExtension, ExperimentOPE, ExperimentTNL2K,
                          ExperimentTrackingNet, atomic_savetxt, rasterize_xywh, select_sequences)


class SubsetView:
    """A got10k dataset restricted to some sequences (the experiments only use this surface)."""

    def __init__(self, dataset, names):
        object.__setattr__(self, "_dataset", dataset)
        object.__setattr__(self, "seq_names", list(names))

    def __len__(self):
        return len(self.seq_names)

    def __getitem__(self, index):
        name = index if isinstance(index, str) else self.seq_names[index]
        return self._dataset[name]

    def __getattr__(self, attr):
        return getattr(self._dataset, attr)

    def __setattr__(self, attr, value):  # e.g. ExperimentGOT10k.report sets return_meta
        setattr(self._dataset, attr, value)


BENCHMARKS = {
    # key: (title, description of what is run)
    "got10k-val": ("GOT-10k val", "ExperimentGOT10k(subset='val'): AO, SR"),
    "got10k-test": ("GOT-10k test", "ExperimentGOT10k(subset='test'): a zip for the evaluation server"),
    "lasot": ("LaSOT", "ExperimentLaSOT (test split): AUC, normalised precision, precision"),
    "lasot-ext": ("LaSOT-ext", "ExperimentLaSOTExtension: AUC, normalised precision, precision"),
    "trackingnet": ("TrackingNet", "ExperimentTrackingNet (TEST): a zip for the evaluation server"),
    "tnl2k": ("TNL2K", "ExperimentTNL2K: AUC, normalised precision, precision"),
    "otb": ("OTB-2015", "ExperimentOTB(version=2015): AUC, precision"),
    "uav123": ("UAV123", "ExperimentUAV123('UAV123'): AUC, precision"),
    "nfs": ("NfS-30", "ExperimentNfS(fps=30): AUC, precision"),
}


class Benchmark:
    """A got10k experiment plus what a runner needs to know about its files."""

    def __init__(self, key: str, root: str, result_dir: str = "results", report_dir: str = "reports",
                 sequences: Optional[List[str]] = None):
        if key not in BENCHMARKS:
            raise DatasetLayoutError(f"unknown benchmark {key!r}: choose one of {', '.join(BENCHMARKS)}")
        self.key = key
        self.title = BENCHMARKS[key][0]
        self.root = root
        self.experiment = _build(key, root, result_dir, report_dir, sequences)
        self.kind = ("got10k" if key.startswith("got10k") else "ope" if isinstance(self.experiment, ExperimentOPE)
                     else "otb")
        self.rasterize = key == "got10k-test" or getattr(self.experiment, "rasterize", False)
        if self.kind == "ope":
            self.has_ground_truth = self.experiment.has_ground_truth()
        else:
            self.has_ground_truth = key != "got10k-test"

    # ---------------------------------------------------------------- sequences and files

    @property
    def sequences(self) -> List[str]:
        return list(self.experiment.dataset.seq_names)

    @property
    def result_dir(self) -> str:
        return self.experiment.result_dir

    @property
    def report_dir(self) -> str:
        return self.experiment.report_dir

    def load(self, seq_name: str):
        """``(img_files, anno)`` with ``anno`` as stored on disk."""
        item = self.experiment.dataset[seq_name]
        return item[0], item[1]

    def check_annotations(self) -> None:
        """Parse every annotation line of every selected sequence before anything is tracked.

        ``AnnotationError`` names the file and the line: a line that is not numbers, a first box that
        is not finite, has no area or misses its frame, fewer boxes than frames (later NaN lines are
        allowed: some benchmarks mark an absent target that way, and it is scored as a failure).
        """
        for seq_name in self.sequences:
            path, first_frame, one_based, frames = self._annotation_of(seq_name)
            if self.key == "nfs":
                _check_nfs_annotation(path)
            else:
                check_annotation(path, first_frame=first_frame, one_based=one_based, frames=frames)

    def _annotation_of(self, seq_name: str):
        """(annotation file, a frame of the sequence, 1-based?, frame count or None) of a sequence."""
        dataset = self.experiment.dataset
        if self.kind == "ope":
            files = dataset.files(seq_name)
            frames = ds.list_images(files.frames_dir)
            return files.annotation, frames[0] if frames else None, self.experiment.one_based, len(frames)
        base = getattr(dataset, "_dataset", dataset)
        i = list(base.seq_names).index(seq_name)
        seq_dir = base.seq_dirs[i]
        if self.key == "otb":
            seq_dir = os.path.join(seq_dir, "img")
        frames = ds.list_images(seq_dir)
        # OTB and UAV123 sequences may start or end inside their folder: no frame count check there
        count = len(frames) if self.kind == "got10k" else None
        return base.anno_files[i], frames[0] if frames else None, False, count

    def init_box(self, anno) -> np.ndarray:
        """The first box as the tracker takes it (0-based; LaSOT's 1-based files shifted)."""
        if self.kind == "ope":
            return self.experiment.init_box(anno)
        return np.array(anno[0], dtype=np.float64)

    def result_file(self, tracker_name: str, seq_name: str) -> str:
        """The file whose existence means 'done' (what the toolkit's run() checks)."""
        if self.kind == "got10k":
            return os.path.join(self.result_dir, tracker_name, seq_name, f"{seq_name}_001.txt")
        if self.kind == "ope":
            return self.experiment.record_file(tracker_name, seq_name)
        return os.path.join(self.result_dir, tracker_name, f"{seq_name}.txt")

    def is_done(self, tracker_name: str, seq_name: str) -> bool:
        return os.path.isfile(self.result_file(tracker_name, seq_name))

    def write(self, tracker_name: str, seq_name: str, boxes, times) -> None:
        """Write one sequence's results (tracker boxes, 0-based) atomically in the benchmark's format."""
        if self.kind == "ope":
            self.experiment.write_result(tracker_name, seq_name, boxes, times)
            return
        boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
        if self.rasterize:
            boxes = rasterize_xywh(boxes)
        # the toolkit's own _record, made atomic by compat.apply()
        self.experiment._record(self.result_file(tracker_name, seq_name), boxes, np.asarray(times, dtype=np.float64))

    # ---------------------------------------------------------------- scores

    @property
    def score_name(self) -> str:
        return "AO" if self.kind == "got10k" else "AUC"

    def sequence_score(self, tracker_name: str, seq_name: str) -> Optional[float]:
        """AO (GOT-10k) or success AUC of one finished sequence; None without ground truth."""
        if not self.has_ground_truth:
            return None
        if self.kind == "ope":
            return self.experiment.sequence_scores(tracker_name, seq_name)["success_score"]
        from got10k.utils.metrics import rect_iou

        img_files, anno = self.load(seq_name)
        boxes = ds.read_result_boxes(self.result_file(tracker_name, seq_name), len(anno))
        if self.kind == "got10k":
            dataset = self.experiment.dataset
            meta = dataset._fetch_meta(os.path.join(dataset.root_dir, dataset.subset, seq_name))
            ious = rect_iou(boxes[1:], anno[1:].copy(), bound=ast.literal_eval(meta["resolution"]))
            ious = ious[np.asarray(meta["cover"])[1:] > 0]
            return float(np.mean(ious)) if len(ious) else 0.0
        boxes[0] = anno[0]
        ious, center_errors = self.experiment._calc_metrics(boxes, anno)
        succ_curve, _ = self.experiment._calc_curves(ious, center_errors)
        return float(np.mean(succ_curve))

    def report(self, tracker_names: List[str], quiet: bool = True):
        """The experiment's report (performance.json and plots); None for server-scored test splits."""
        out = io.StringIO()
        with contextlib.redirect_stdout(out) if quiet else contextlib.nullcontext():
            return self.experiment.report(list(tracker_names))

    def summary(self, performance) -> Dict[str, Dict[str, float]]:
        """Headline numbers per tracker, in the order benchmark tables use."""
        table = {}
        for name, perf in performance.items():
            o = perf["overall"]
            if self.kind == "got10k":
                table[name] = {"AO": o["ao"], "SR0.5": o["sr"], "SR0.75": o["succ_curve"][75], "FPS": o["speed_fps"]}
            elif self.kind == "ope":
                table[name] = {"AUC": o["success_score"], "P_norm": o["normalized_precision_score"],
                               "P": o["precision_score"], "FPS": o["speed_fps"]}
            else:
                table[name] = {"AUC": o["success_score"], "P": o["precision_score"], "FPS": o["speed_fps"]}
        return table

    def plot_files(self, tracker_name: str) -> List[str]:
        folder = os.path.join(self.report_dir, tracker_name)
        return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".png")) \
            if os.path.isdir(folder) else []

    def submission_file(self, tracker_name: str) -> str:
        return os.path.join(self.result_dir, f"{tracker_name}.zip")

    # ---------------------------------------------------------------- other trackers' results

    @contextlib.contextmanager
    def with_compared(self, tracker_name: str, folders: Dict[str, str]):
        """Temporarily point the experiment at a scratch results folder holding ``tracker_name``'s
        results and a normalised copy of each ``{label: folder}`` (comma-separated, toolkit naming),
        so ``report([tracker_name, *labels])`` scores and plots them together."""
        scratch = tempfile.mkdtemp(prefix="lorat-compare-")
        original = self.experiment.result_dir
        try:
            for label, folder in {tracker_name: os.path.join(original, tracker_name), **folders}.items():
                for seq_name in self.sequences:
                    self._import_result(folder, label, seq_name, scratch)
            self.experiment.result_dir = scratch
            yield
        finally:
            self.experiment.result_dir = original
            shutil.rmtree(scratch, ignore_errors=True)

    def _import_result(self, folder: str, label: str, seq_name: str, scratch: str) -> None:
        candidates = [os.path.join(folder, seq_name, f"{seq_name}_001.txt"), os.path.join(folder, f"{seq_name}.txt")]
        candidates += [os.path.join(folder, f"{prefix}{seq_name}.txt") for prefix in ("uav_", "nfs_", "lasot_")]
        source = next((c for c in candidates if os.path.isfile(c)), None)
        if source is None:
            raise ResultsLayoutError(f"results folder {folder} has no file for sequence {seq_name} "
                                     f"(looked for {candidates[1]} and {candidates[0]})")
        boxes = ds.read_boxes(source)
        times = None
        for t in (os.path.join(folder, seq_name, f"{seq_name}_time.txt"),
                  os.path.join(folder, "times", f"{seq_name}_time.txt"), os.path.join(folder, f"{seq_name}_time.txt")):
            if os.path.isfile(t):
                times = np.loadtxt(t, delimiter=",", ndmin=2)[:, 0]
                break
        if times is None:
            times = np.zeros(len(boxes))  # unknown speed: reported as -1
        if self.kind == "got10k":
            atomic_savetxt(os.path.join(scratch, label, seq_name, f"{seq_name}_001.txt"), boxes, "%.3f", ",")
            atomic_savetxt(os.path.join(scratch, label, seq_name, f"{seq_name}_time.txt"), times, "%.8f")
        else:
            atomic_savetxt(os.path.join(scratch, label, f"{seq_name}.txt"), boxes, "%.3f", ",")
            atomic_savetxt(os.path.join(scratch, label, "times", f"{seq_name}_time.txt"), times, "%.8f")


def _check_nfs_annotation(path: str) -> None:
    """NfS's own format: ``<id> <left> <top> <right> <bottom> ...`` a line (what the toolkit reads)."""
    with open(path, errors="replace") as f:
        lines = f.read().splitlines()
    for n, line in enumerate(lines, 1):
        fields = line.split()
        if not fields and n == len(lines):
            continue
        try:
            left, t, r, b = (float(v) for v in fields[1:5])
        except ValueError:
            left = None
        if left is None or len(fields) < 5:
            raise AnnotationError(f"{path}, line {n}: {line[:60]!r} is not '<id> <left> <top> <right> <bottom> ...'")
        if n == 1 and not (np.isfinite([left, t, r, b]).all() and r > left and b > t):
            raise AnnotationError(f"{path}, line 1: the first box ({line[:60]!r}) is not finite or has no area - "
                                  "tracking starts from it")


def _build(key: str, root: str, result_dir: str, report_dir: str, sequences):
    from got10k.experiments import ExperimentGOT10k, ExperimentNfS, ExperimentOTB, ExperimentUAV123

    if key in ("got10k-val", "got10k-test"):
        subset = key.split("-")[1]
        ds.check_got10k(root, subset)
        experiment = ExperimentGOT10k(root, subset=subset, result_dir=result_dir, report_dir=report_dir)
        if subset == "test":
            # The toolkit writes val and test results to the same GOT-10k/<tracker>/ folder and zips all of
            # it for the server: keep the test split apart so a submission never carries val sequences.
            experiment.result_dir = os.path.join(result_dir, "GOT-10k-test")
    elif key == "lasot":
        return ExperimentLaSOT(root, result_dir=result_dir, report_dir=report_dir, sequences=sequences)
    elif key == "lasot-ext":
        return ExperimentLaSOTExtension(root, result_dir=result_dir, report_dir=report_dir, sequences=sequences)
    elif key == "tnl2k":
        return ExperimentTNL2K(root, result_dir=result_dir, report_dir=report_dir, sequences=sequences)
    elif key == "trackingnet":
        return ExperimentTrackingNet(root, "TEST", result_dir=result_dir, report_dir=report_dir, sequences=sequences)
    elif key == "otb":
        ds.check_otb(root, 2015)
        experiment = ExperimentOTB(root, version=2015, result_dir=result_dir, report_dir=report_dir)
    elif key == "uav123":
        ds.check_uav123(root, "UAV123")
        experiment = ExperimentUAV123(root, version="UAV123", result_dir=result_dir, report_dir=report_dir)
    elif key == "nfs":
        ds.check_nfs(root, 30)
        experiment = ExperimentNfS(root, fps=30, result_dir=result_dir, report_dir=report_dir)
    else:  # pragma: no cover - keys are checked by the caller
        raise DatasetLayoutError(f"unknown benchmark {key!r}")
    if key == "uav123":
        # only the sequences whose frames are on disk
        present = [n for n, d in zip(experiment.dataset.seq_names, experiment.dataset.seq_dirs) if os.path.isdir(d)]
        if not present:
            raise ds.layout_error("uav123", root, experiment.dataset.seq_dirs[0] + os.sep + "000001.jpg")
        experiment.dataset = SubsetView(experiment.dataset, present)
    if sequences:
        names = select_sequences(experiment.dataset.seq_names, sequences, BENCHMARKS[key][0], root)
        experiment.dataset = SubsetView(experiment.dataset, names)
    return experiment
