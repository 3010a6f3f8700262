"""Dataset loaders got10k 0.1.3 lacks (or ships broken), and layout checks for every benchmark.

Every loader has the interface the got10k experiments use: ``seq_names``, ``len()``, and
``dataset[i or name] -> (img_files, anno)`` with ``anno`` an (N, 4) array of ``[x, y, w, h]``
exactly as stored in the files (no shift: converting is the experiment's job). ``check_*`` raise
``DatasetLayoutError`` naming the expected layout and the first thing missing, before anything runs.
"""
from __future__ import annotations

import glob
import io
import json
import os
from typing import List, Optional, Sequence

import numpy as np

from lorat_tracker.errors import DatasetLayoutError, ResultsLayoutError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")

LAYOUTS = {
    "got10k": "ROOT/<subset>/list.txt (one sequence name a line) and, for each name, ROOT/<subset>/<name>/ "
              "holding 00000001.jpg ..., groundtruth.txt (x,y,w,h a line; only the first line on test) and, "
              "on val, meta_info.ini (with 'resolution: (W, H)'), cover.label, absence.label, "
              "cut_by_image.label",
    "lasot": "ROOT/<class>/<class>-<n>/img/00000001.jpg ... and ROOT/<class>/<class>-<n>/groundtruth.txt "
             "(x,y,w,h a line, 1-based), optional full_occlusion.txt and out_of_view.txt "
             "(e.g. ROOT/airplane/airplane-1/groundtruth.txt)",
    "tnl2k": "ROOT/<sequence>/imgs/<frame>.jpg|png ... and ROOT/<sequence>/groundtruth.txt (x,y,w,h a line)",
    "trackingnet": "ROOT/<subset>/anno/<sequence>.txt (x,y,w,h a line; only the first line on TEST) and "
                   "ROOT/<subset>/frames/<sequence>/0.jpg, 1.jpg, ... (e.g. ROOT/TEST/frames/<sequence>/0.jpg)",
    "otb": "ROOT/<Name>/img/0001.jpg ... and ROOT/<Name>/groundtruth_rect.txt, with <Name> from the OTB-2015 "
           "list (Basketball, Biker, Bird1, ...; case as in the official release)",
    "uav123": "ROOT/anno/UAV123/<sequence>.txt and ROOT/data_seq/UAV123/<folder>/000001.jpg ... "
              "(the official UAV123 release unpacked in ROOT)",
    "nfs": "ROOT/<sequence>/30/<sequence>.txt (the official 'l t r b' annotation file) and "
           "ROOT/<sequence>/30/<sequence>/00001.jpg ...",
}


TITLES = {"got10k": "GOT-10k", "lasot": "LaSOT", "tnl2k": "TNL2K", "trackingnet": "TrackingNet", "otb": "OTB",
          "uav123": "UAV123", "nfs": "NfS"}


def layout_error(benchmark: str, root: str, missing: str) -> DatasetLayoutError:
    return DatasetLayoutError(f"{root} is not a {TITLES[benchmark]} dataset root: missing {missing}. "
                              f"Expected layout: {LAYOUTS[benchmark]}")


def _check_root(benchmark: str, root: str) -> None:
    if not os.path.isdir(root):
        raise DatasetLayoutError(f"dataset root {root} does not exist (or is not a folder) - pass --root DIR "
                                 f"with this layout: {LAYOUTS[benchmark]}")


def _images(folder: str) -> List[str]:
    files = [f for f in os.listdir(folder) if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS] \
        if os.path.isdir(folder) else []
    return [os.path.join(folder, f) for f in sorted(files)]


def _read_numbers(path: str) -> np.ndarray:
    """An (N, k) float array from a text file separated by commas, tabs or spaces."""
    with open(path) as f:
        text = f.read().replace(",", " ").replace("\t", " ")
    return np.loadtxt(io.StringIO(text), dtype=np.float64, ndmin=2)


def read_boxes(path: str) -> np.ndarray:
    """An annotation file's (N, 4) boxes (commas, tabs or spaces), or DatasetLayoutError."""
    boxes = _read_numbers(path)
    if boxes.size and boxes.shape[1] != 4:
        raise DatasetLayoutError(f"{path} has {boxes.shape[1]} numbers a line, expected 4 (x,y,w,h)")
    return boxes


def read_result_boxes(path: str, length: int) -> np.ndarray:
    """A tracker's result file for a sequence of ``length`` frames: exactly one x,y,w,h line a frame."""
    boxes = _read_numbers(path)
    if boxes.shape != (length, 4):
        raise ResultsLayoutError(f"{path} has {boxes.shape[0]} lines of {boxes.shape[1]} numbers, expected "
                                 f"{length} lines of x,y,w,h (one a frame) - if it is this tracker's, delete it "
                                 "and run again")
    return boxes


def read_flags(path: str, length: int) -> Optional[np.ndarray]:
    """A per-frame 0/1 flag file (LaSOT: one comma-separated line), or None when absent."""
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        flags = np.array([int(v) for v in f.read().replace(",", " ").split()], dtype=bool)
    if len(flags) != length:
        raise DatasetLayoutError(f"{path} has {len(flags)} flags for {length} frames")
    return flags


class OPESequenceDataset:
    """Sequences of frames with one box a frame, found on disk (LaSOT, LaSOT-ext, TNL2K, TrackingNet).

    ``sequences`` maps a name to ``(frames_dir, groundtruth_file, seq_dir)``. ``frames_sort`` orders
    the frame files (by name unless given). Visibility (``full_occlusion.txt``/``out_of_view.txt``
    in the sequence folder) is returned by ``visible(name)``.
    """

    def __init__(self, sequences, frames_sort=None):
        self._sequences = dict(sequences)
        self.seq_names = list(self._sequences)
        self._frames_sort = frames_sort

    def __len__(self) -> int:
        return len(self.seq_names)

    def _name(self, index) -> str:
        if isinstance(index, str):
            if index not in self._sequences:
                raise KeyError(f"sequence {index} not found")
            return index
        return self.seq_names[index]  # IndexError ends iteration

    def __getitem__(self, index):
        name = self._name(index)
        frames_dir, gt_file, _ = self._sequences[name]
        img_files = _images(frames_dir)
        if self._frames_sort is not None:
            img_files = sorted(img_files, key=self._frames_sort)
        anno = read_boxes(gt_file)
        if len(anno) > 1 and len(anno) != len(img_files):
            raise DatasetLayoutError(f"sequence {name}: {len(img_files)} frames in {frames_dir} but "
                                     f"{len(anno)} boxes in {gt_file}")
        if len(img_files) == 0:
            raise DatasetLayoutError(f"sequence {name}: no frames in {frames_dir}")
        return img_files, anno

    def visible(self, index) -> Optional[np.ndarray]:
        """Per-frame target visibility (None when the dataset has no such files)."""
        name = self._name(index)
        _, gt_file, seq_dir = self._sequences[name]
        length = len(read_boxes(gt_file))
        flags = [read_flags(os.path.join(seq_dir, f), length) for f in ("full_occlusion.txt", "out_of_view.txt")]
        flags = [f for f in flags if f is not None]
        if not flags:
            return None
        return ~np.logical_or.reduce(flags)

    def subset(self, names: Sequence[str]) -> "OPESequenceDataset":
        return OPESequenceDataset({n: self._sequences[n] for n in names}, self._frames_sort)


def lasot_official_test_names() -> List[str]:
    """The 280 sequences of the LaSOT test split, from the list packaged with got10k."""
    import got10k.datasets

    with open(os.path.join(os.path.dirname(got10k.datasets.__file__), "lasot.json")) as f:
        return list(json.load(f)["test"])


def load_lasot(root: str, subset: str = "test") -> OPESequenceDataset:
    """LaSOT-layout sequences under ``root`` (``ROOT/<class>/<class>-<n>/``; ``ROOT/<name>/`` also found).

    ``subset='test'`` keeps the official 280 test sequences present on disk (error if none is);
    ``'all'`` keeps every sequence found (LaSOT-ext, or your own selection).
    """
    _check_root("lasot", root)
    gt_files = sorted(glob.glob(os.path.join(glob.escape(root), "*", "*", "groundtruth.txt")))
    gt_files += sorted(glob.glob(os.path.join(glob.escape(root), "*", "groundtruth.txt")))
    if not gt_files:
        raise layout_error("lasot", root, "ROOT/<class>/<class>-<n>/groundtruth.txt (none found)")
    sequences = {}
    for gt in gt_files:
        seq_dir = os.path.dirname(gt)
        sequences.setdefault(os.path.basename(seq_dir), (os.path.join(seq_dir, "img"), gt, seq_dir))
    if subset == "test":
        test = lasot_official_test_names()
        names = [n for n in test if n in sequences]
        if not names:
            raise layout_error("lasot", root, f"the sequences of the LaSOT test split (none found, e.g. "
                                                f"{os.path.join(root, 'airplane', 'airplane-1')})")
        sequences = {n: sequences[n] for n in names}
    for name, (frames_dir, _, _) in sequences.items():
        if not _images(frames_dir):
            raise layout_error("lasot", root, f"{frames_dir}{os.sep}00000001.jpg")
    return OPESequenceDataset(sequences)


def load_tnl2k(root: str) -> OPESequenceDataset:
    """TNL2K-layout sequences: ``ROOT/<sequence>/imgs/*`` and ``ROOT/<sequence>/groundtruth.txt``."""
    _check_root("tnl2k", root)
    gt_files = sorted(glob.glob(os.path.join(glob.escape(root), "*", "groundtruth.txt")))
    if not gt_files:
        raise layout_error("tnl2k", root, "ROOT/<sequence>/groundtruth.txt (none found)")
    sequences = {}
    for gt in gt_files:
        seq_dir = os.path.dirname(gt)
        frames_dir = os.path.join(seq_dir, "imgs")
        if not _images(frames_dir):
            raise layout_error("tnl2k", root, f"{frames_dir}{os.sep}<frame>.jpg")
        sequences[os.path.basename(seq_dir)] = (frames_dir, gt, seq_dir)
    return OPESequenceDataset(sequences)


def _frame_number(path: str) -> int:
    stem = os.path.splitext(os.path.basename(path))[0]
    return int(stem) if stem.isdigit() else -1


def load_trackingnet(root: str, subset: str = "TEST") -> OPESequenceDataset:
    """TrackingNet: ``ROOT/<subset>/anno/<seq>.txt`` and ``ROOT/<subset>/frames/<seq>/<i>.jpg`` (numeric order)."""
    _check_root("trackingnet", root)
    anno_dir = os.path.join(root, subset, "anno")
    if not os.path.isdir(anno_dir):
        raise layout_error("trackingnet", root, anno_dir)
    names = sorted(os.path.splitext(f)[0] for f in os.listdir(anno_dir) if f.endswith(".txt"))
    if not names:
        raise layout_error("trackingnet", root, f"{anno_dir}{os.sep}<sequence>.txt (none found)")
    sequences = {}
    for name in names:
        frames_dir = os.path.join(root, subset, "frames", name)
        if not _images(frames_dir):
            raise layout_error("trackingnet", root, f"{frames_dir}{os.sep}0.jpg")
        sequences[name] = (frames_dir, os.path.join(anno_dir, name + ".txt"), frames_dir)
    return OPESequenceDataset(sequences, frames_sort=_frame_number)


# ---------------------------------------------------------------- checks for the got10k datasets

def check_got10k(root: str, subset: str) -> None:
    _check_root("got10k", root)
    base = os.path.join(root, subset)
    list_file = os.path.join(base, "list.txt")
    if not os.path.isfile(list_file):
        hint = ""
        if os.path.isfile(os.path.join(root, "list.txt")):
            hint = f" (ROOT looks like the {subset} folder itself: pass its parent folder as --root)"
        raise layout_error("got10k", root, list_file + hint)
    with open(list_file) as f:
        names = [n.strip() for n in f.read().split("\n") if n.strip()]
    if not names:
        raise layout_error("got10k", root, f"a sequence name in {list_file} (the file is empty)")
    needed = ["groundtruth.txt"]
    if subset != "test":
        needed += ["meta_info.ini", "cover.label", "absence.label", "cut_by_image.label"]
    for name in names:
        seq_dir = os.path.join(base, name)
        if not os.path.isdir(seq_dir):
            raise layout_error("got10k", root, f"{seq_dir}{os.sep} (listed in {list_file})")
        for fname in needed:
            if not os.path.isfile(os.path.join(seq_dir, fname)):
                raise layout_error("got10k", root, os.path.join(seq_dir, fname))
        if not glob.glob(os.path.join(glob.escape(seq_dir), "*.jpg")):
            raise layout_error("got10k", root, os.path.join(seq_dir, "00000001.jpg"))
        if subset != "test":
            with open(os.path.join(seq_dir, "meta_info.ini")) as f:
                if "resolution:" not in f.read():
                    raise layout_error("got10k", root, f"the 'resolution: (W, H)' line of "
                                                       f"{os.path.join(seq_dir, 'meta_info.ini')}")


def otb_names(version=2015) -> List[str]:
    from got10k.datasets import OTB

    return list(OTB._OTB__version_dict[version])


def check_otb(root: str, version=2015) -> None:
    _check_root("otb", root)
    known = otb_names(version)
    present = [n for n in known if glob.glob(os.path.join(glob.escape(root), n, "groundtruth*.txt"))]
    if not present:
        raise layout_error("otb", root, f"ROOT/<Name>/groundtruth_rect.txt for every <Name> of the "
                                        f"OTB-{version} list (none of its {len(known)} names found)")
    for name in present:
        if not glob.glob(os.path.join(glob.escape(root), name, "img", "*.jpg")):
            raise layout_error("otb", root, os.path.join(root, name, "img", "0001.jpg"))


def check_uav123(root: str, version: str = "UAV123") -> None:
    _check_root("uav123", root)
    anno_dir = os.path.join(root, "anno", version)
    if not glob.glob(os.path.join(glob.escape(anno_dir), "*.txt")):
        raise layout_error("uav123", root, f"{anno_dir}{os.sep}<sequence>.txt")
    if not os.path.isdir(os.path.join(root, "data_seq", "UAV123")):
        raise layout_error("uav123", root, os.path.join(root, "data_seq", "UAV123"))


def check_nfs(root: str, fps: int = 30) -> None:
    _check_root("nfs", root)
    annos = glob.glob(os.path.join(glob.escape(root), "*", str(fps), "*.txt"))
    if not annos:
        raise layout_error("nfs", root, f"ROOT/<sequence>/{fps}/<sequence>.txt (none found)")
    for anno in annos:
        frames = os.path.splitext(anno)[0]
        if not glob.glob(os.path.join(glob.escape(frames), "*.jpg")):
            raise layout_error("nfs", root, f"{frames}{os.sep}00001.jpg")
