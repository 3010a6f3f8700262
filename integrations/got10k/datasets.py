"""The got10k experiments' view of the datasets the core reads (``lorat_tracker.datasets``).

Every loader has the interface the got10k experiments use: ``seq_names``, ``len()``, and
``dataset[i or name] -> (img_files, anno)`` with ``anno`` an (N, 4) array of ``[x, y, w, h]``
exactly as stored in the files (no shift: converting is the experiment's job). Finding sequences,
parsing annotation files (every line checked, errors naming file and line) and the layout checks
live in the core, which training reads through too; only what needs the got10k package (the OTB
name list) is here. ``check_*`` raise ``DatasetLayoutError`` naming the expected layout and the first
thing missing, before anything runs.
"""
from __future__ import annotations

import glob
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from lorat_tracker.benchmark_layouts import check_got10k, check_nfs, check_uav123, tnl2k_sequences  # noqa: F401
from lorat_tracker.datasets import (LAYOUTS, TITLES, SequenceFiles,  # noqa: F401
                                    check_root, frame_number, lasot_sequences,
                                    lasot_test_names, layout_error, list_images, read_boxes, read_flags,
                                    read_table, trackingnet_sequences)
from lorat_tracker.errors import AnnotationError, DatasetLayoutError, ResultsLayoutError
from lorat_tracker import images


def read_image(path) -> np.ndarray:
    """A frame decoded exactly as got10k's ``Tracker.track`` decodes it (PIL, converted to RGB), as an
    array: what a runner that reads frames itself (batched evaluation) must use to get the same boxes."""
    return images.read_image(path, "pil")


def read_result_boxes(path: str, length: int) -> np.ndarray:
    """A tracker's result file for a sequence of ``length`` frames: exactly one x,y,w,h line a frame."""
    advice = " - if it is this tracker's, delete it and run again"
    try:
        boxes = read_table(path, 4)
    except AnnotationError as e:
        raise ResultsLayoutError(f"{e}{advice}") from None
    if boxes.shape != (length, 4):
        raise ResultsLayoutError(f"{path} has {boxes.shape[0]} lines of {boxes.shape[1]} numbers, expected "
                                 f"{length} lines of x,y,w,h (one a frame){advice}")
    return boxes


class OPESequenceDataset:
    """Sequences of frames with one box a frame, found on disk (LaSOT, LaSOT-ext, TNL2K, TrackingNet).

    ``sequences`` maps a name to its ``SequenceFiles`` (frames folder, annotation file, sequence
    folder). ``frames_sort`` orders the frame files (by name unless given). Visibility
    (``full_occlusion.txt``/``out_of_view.txt`` in the sequence folder) is returned by ``visible(name)``.
    """

    def __init__(self, sequences: Dict[str, SequenceFiles], frames_sort=None):
        self._sequences = {k: SequenceFiles(*v) for k, v in dict(sequences).items()}
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

    def files(self, index) -> SequenceFiles:
        return self._sequences[self._name(index)]

    def __getitem__(self, index):
        name = self._name(index)
        frames_dir, gt_file, _ = self._sequences[name]
        img_files = list_images(frames_dir, self._frames_sort)
        anno = read_boxes(gt_file)
        if len(img_files) == 0:
            raise DatasetLayoutError(f"sequence {name}: no frames in {frames_dir}")
        if len(anno) > 1 and len(anno) != len(img_files):
            raise AnnotationError(f"sequence {name}: {len(img_files)} frames in {frames_dir} but "
                                  f"{len(anno)} boxes in {gt_file}")
        return img_files, anno

    def visible(self, index) -> Optional[np.ndarray]:
        """Per-frame target visibility (None when the dataset has no such files)."""
        name = self._name(index)
        _, gt_file, seq_dir = self._sequences[name]
        length = len(read_boxes(gt_file))
        flags = [read_flags(os.path.join(seq_dir, f), length) for f in ("full_occlusion.txt", "out_of_view.txt")]
        flags = [f != 0 for f in flags if f is not None]
        if not flags:
            return None
        return ~np.logical_or.reduce(flags)

    def subset(self, names: Sequence[str]) -> "OPESequenceDataset":
        return OPESequenceDataset({n: self._sequences[n] for n in names}, self._frames_sort)


def lasot_official_test_names() -> List[str]:
    """The 280 sequences of the LaSOT test split."""
    return lasot_test_names()


def load_lasot(root: str, subset: str = "test") -> OPESequenceDataset:
    """LaSOT-layout sequences under ``root``: ``subset`` 'test' (the official 280 present), 'train' or 'all'."""
    return OPESequenceDataset(lasot_sequences(root, subset))


def load_tnl2k(root: str) -> OPESequenceDataset:
    """TNL2K-layout sequences: ``ROOT/<sequence>/imgs/*`` and ``ROOT/<sequence>/groundtruth.txt``."""
    return OPESequenceDataset(tnl2k_sequences(root))


def load_trackingnet(root: str, subset: str = "TEST") -> OPESequenceDataset:
    """TrackingNet: ``ROOT/<subset>/anno/<seq>.txt`` and ``ROOT/<subset>/frames/<seq>/<i>.jpg`` (numeric order)."""
    return OPESequenceDataset(trackingnet_sequences(root, subset), frames_sort=frame_number)


def otb_names(version=2015) -> List[str]:
    from .compat import otb_sequence_names

    return otb_sequence_names(version)


def check_otb(root: str, version=2015) -> None:
    check_root("otb", root)
    known = otb_names(version)
    present = [n for n in known if glob.glob(os.path.join(glob.escape(root), n, "groundtruth*.txt"))]
    if not present:
        raise layout_error("otb", root, f"ROOT/<Name>/groundtruth_rect.txt for every <Name> of the "
                                        f"OTB-{version} list (none of its {len(known)} names found)")
    for name in present:
        if not glob.glob(os.path.join(glob.escape(root), name, "img", "*.jpg")):
            raise layout_error("otb", root, os.path.join(root, name, "img", "0001.jpg"))
