"""Benchmark layouts for evaluation (``lorat eval`` through the GOT-10k toolkit integration): the
checks that run before anything is tracked, and the layouts no training source uses (TNL2K, UAV123,
NfS). Training sources and the readers both sides share are in ``datasets``.

Every check names the file or folder that is missing or wrong, and the layout expected.
"""
from __future__ import annotations

import glob
import os
from typing import Dict, Optional, Sequence as Seq

import numpy as np

from .datasets import (SequenceFiles, check_first_box, check_root, got10k_list, layout_error, list_images,
                       read_boxes)
from .errors import AnnotationError
from .images import image_size


def check_got10k(root: str, subset: str, names: Optional[Seq[str]] = None) -> None:
    """The GOT-10k layout of ``ROOT/<subset>`` (every listed sequence, or only ``names``)."""
    listed = got10k_list(root, subset)
    list_file = os.path.join(root, subset, "list.txt")
    needed = ["groundtruth.txt"]
    if subset != "test":
        needed += ["meta_info.ini", "cover.label", "absence.label", "cut_by_image.label"]
    for name in (names if names is not None else listed):
        seq_dir = os.path.join(root, subset, name)
        if not os.path.isdir(seq_dir):
            raise layout_error("got10k", root, f"{seq_dir}{os.sep} (listed in {list_file})")
        for fname in needed:
            if not os.path.isfile(os.path.join(seq_dir, fname)):
                raise layout_error("got10k", root, os.path.join(seq_dir, fname))
        if not glob.glob(os.path.join(glob.escape(seq_dir), "*.jpg")):
            raise layout_error("got10k", root, os.path.join(seq_dir, "00000001.jpg"))
        if subset != "test":  # the toolkit's val scoring reads the resolution
            with open(os.path.join(seq_dir, "meta_info.ini")) as f:
                if "resolution:" not in f.read():
                    raise layout_error("got10k", root, f"the 'resolution: (W, H)' line of "
                                                       f"{os.path.join(seq_dir, 'meta_info.ini')}")


def tnl2k_sequences(root: str) -> Dict[str, SequenceFiles]:
    """TNL2K-layout sequences: ``ROOT/<sequence>/imgs/*`` and ``ROOT/<sequence>/groundtruth.txt``."""
    check_root("tnl2k", root)
    gt_files = sorted(glob.glob(os.path.join(glob.escape(root), "*", "groundtruth.txt")))
    if not gt_files:
        raise layout_error("tnl2k", root, "ROOT/<sequence>/groundtruth.txt (none found)")
    sequences = {}
    for gt in gt_files:
        seq_dir = os.path.dirname(gt)
        frames_dir = os.path.join(seq_dir, "imgs")
        if not list_images(frames_dir):
            raise layout_error("tnl2k", root, f"{frames_dir}{os.sep}<frame>.jpg")
        sequences[os.path.basename(seq_dir)] = SequenceFiles(frames_dir, gt, seq_dir)
    return sequences


def check_annotation(path: str, *, first_frame: Optional[str] = None, one_based: bool = False,
                     frames: Optional[int] = None) -> np.ndarray:
    """Check a benchmark annotation file before tracking: every line four numbers (NaN allowed after the
    first line: an absent target, scored as a failure), the first box finite with area and inside
    ``first_frame``; with ``frames``, one box per frame unless the file holds only the first box.
    Returns the boxes as stored."""
    boxes = read_boxes(path, allow_nan=True)
    size = image_size(first_frame) if first_frame is not None else None
    check_first_box(path, boxes, size, one_based)
    if frames is not None and len(boxes) > 1 and len(boxes) != frames:
        fewer = "fewer" if len(boxes) < frames else "more"
        raise AnnotationError(f"{path} has {len(boxes)} boxes for {frames} frames ({fewer} boxes than frames; one "
                              "x,y,w,h line per frame expected, or only the first one)")
    return boxes


def check_uav123(root: str, version: str = "UAV123") -> None:
    check_root("uav123", root)
    anno_dir = os.path.join(root, "anno", version)
    if not glob.glob(os.path.join(glob.escape(anno_dir), "*.txt")):
        raise layout_error("uav123", root, f"{anno_dir}{os.sep}<sequence>.txt")
    if not os.path.isdir(os.path.join(root, "data_seq", "UAV123")):
        raise layout_error("uav123", root, os.path.join(root, "data_seq", "UAV123"))


def check_nfs(root: str, fps: int = 30) -> None:
    check_root("nfs", root)
    annos = glob.glob(os.path.join(glob.escape(root), "*", str(fps), "*.txt"))
    if not annos:
        raise layout_error("nfs", root, f"ROOT/<sequence>/{fps}/<sequence>.txt (none found)")
    for anno in annos:
        frames = os.path.splitext(anno)[0]
        if not glob.glob(os.path.join(glob.escape(frames), "*.jpg")):
            raise layout_error("nfs", root, f"{frames}{os.sep}00001.jpg")
