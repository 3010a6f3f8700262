"""Tracking datasets on disk, read once into sequence/track records shared by training and evaluation.

One reader per source layout (GOT-10k, LaSOT, TrackingNet, TNL2K, COCO 2017, a plain folder of
sequence folders). Every annotation file is parsed line by line when it enters: a line that is not
four numbers, a NaN, a box that misses its frame, fewer boxes than frames or a wrongly laid-out
folder raises ``AnnotationError`` / ``DatasetLayoutError`` naming the file and the line, before any
work starts. The GOT-10k toolkit integration (``lorat eval``) reads its files through the same
functions; this module never imports got10k. The checks before an evaluation and the layouts only
evaluation reads (TNL2K, UAV123, NfS) are in ``benchmark_layouts``.

Conventions: boxes are 0-based ``[x, y, w, h]`` float64 in image pixels (LaSOT's 1-based files are
shifted by -1 here, in its reader, and nowhere else). Training sources are cleaned as the official
recipe does (reference section 4.1): boxes clipped into the image, frames whose box is empty after
clipping or whose target is flagged absent become invalid (never sampled), tracks without a valid
frame and sequences without a track are dropped.

Source specifications (``lorat train --data``) are ``KIND=ROOT[:WEIGHT]``:

- ``got10k=ROOT``      GOT-10k train (all 9,335 sequences of ``ROOT/train/list.txt``);
- ``got10k-vot=ROOT``  GOT-10k train restricted to the official VOT-excluding split (7,086 sequences,
  the official LoRAT training set); as a validation source (``split="val"``) the 1,249-sequence
  complement list of the same split;
- ``lasot=ROOT``       LaSOT train (every sequence found that is not in the 280-sequence test split);
- ``trackingnet=ROOT`` TrackingNet train chunks ``ROOT/TRAIN_0`` ... ``ROOT/TRAIN_11`` (those present);
- ``coco=ROOT``        COCO 2017 (``ROOT/annotations/instances_train2017.json`` and ``ROOT/train2017/``):
  every non-crowd object of every image is a one-frame track;
- ``folder=ROOT``      ``ROOT/<sequence>/`` folders, each with its frames (sorted by name) and a
  ``groundtruth.txt`` of 0-based ``x,y,w,h`` lines (commas, spaces or tabs), one per frame; an optional
  ``absence.label`` (one 0/1 a line, 1 = target absent) marks frames that are never sampled. A frame
  whose target is absent may also carry an empty box ``0,0,0,0``.

``:WEIGHT`` is the text after the *last* colon when it is a positive number (``folder=/data/a:2``);
anything else stays part of the path (``folder=/data/a:b`` is the folder ``/data/a:b``). A path that
itself ends in ``:<number>`` is written with an explicit weight: ``folder=/data/x:3:1``.
"""
from __future__ import annotations

import dataclasses
import glob
import math
import os
import re
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple, Union

import numpy as np

from .boxes import overlaps_image
from .errors import AnnotationError, DatasetLayoutError
from .images import IMAGE_EXTENSIONS, image_size, is_image_file
DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")

LAYOUTS = {
    "got10k": "ROOT/<subset>/list.txt (one sequence name a line) and, for each name, ROOT/<subset>/<name>/ "
              "holding 00000001.jpg ..., groundtruth.txt (x,y,w,h a line; only the first line on test) and, "
              "on train and val, meta_info.ini (with 'resolution: (W, H)'), cover.label, absence.label, "
              "cut_by_image.label",
    "lasot": "ROOT/<class>/<class>-<n>/img/00000001.jpg ... and ROOT/<class>/<class>-<n>/groundtruth.txt "
             "(x,y,w,h a line, 1-based), optional full_occlusion.txt and out_of_view.txt "
             "(e.g. ROOT/airplane/airplane-1/groundtruth.txt)",
    "tnl2k": "ROOT/<sequence>/imgs/<frame>.jpg|png ... and ROOT/<sequence>/groundtruth.txt (x,y,w,h a line)",
    "trackingnet": "ROOT/<subset>/anno/<sequence>.txt (x,y,w,h a line; only the first line on TEST) and "
                   "ROOT/<subset>/frames/<sequence>/0.jpg, 1.jpg, ... (e.g. ROOT/TEST/frames/<sequence>/0.jpg; "
                   "training reads the chunks ROOT/TRAIN_0 ... ROOT/TRAIN_11)",
    "otb": "ROOT/<Name>/img/0001.jpg ... and ROOT/<Name>/groundtruth_rect.txt, with <Name> from the OTB-2015 "
           "list (Basketball, Biker, Bird1, ...; case as in the official release)",
    "uav123": "ROOT/anno/UAV123/<sequence>.txt and ROOT/data_seq/UAV123/<folder>/000001.jpg ... "
              "(the official UAV123 release unpacked in ROOT)",
    "nfs": "ROOT/<sequence>/30/<sequence>.txt (the official 'l t r b' annotation file) and "
           "ROOT/<sequence>/30/<sequence>/00001.jpg ...",
    "coco": "ROOT/annotations/instances_<split>2017.json and ROOT/<split>2017/<image>.jpg (COCO 2017)",
    "folder": "ROOT/<sequence>/ folders, each holding its frames (" + "/".join(IMAGE_EXTENSIONS) + ", in name order) and "
              "groundtruth.txt with one 0-based x,y,w,h line per frame (commas, spaces or tabs), optionally "
              "absence.label (one 0/1 a line, 1 = target absent)",
}

TITLES = {"got10k": "GOT-10k", "lasot": "LaSOT", "tnl2k": "TNL2K", "trackingnet": "TrackingNet", "otb": "OTB",
          "uav123": "UAV123", "nfs": "NfS", "coco": "COCO", "folder": "sequence-folder"}

SOURCE_KINDS = ("got10k", "got10k-vot", "lasot", "trackingnet", "coco", "folder")


# ---------------------------------------------------------------- records

@dataclasses.dataclass
class Track:
    """One object through a sequence."""
    boxes: np.ndarray   # (N, 4) float64, 0-based x, y, w, h in image pixels
    valid: np.ndarray   # (N,) bool: frame may be sampled (present, box non-empty, inside the image)


@dataclasses.dataclass
class Sequence:
    name: str
    frames: List[str]                      # image paths, one per frame (COCO: one path)
    tracks: List[Track]                    # >= 1
    source: str = ""                       # e.g. "got10k", "folder"
    size_wh: Optional[Tuple[int, int]] = None   # frame size (of the first readable frame) when known


class SourceSpec(NamedTuple):
    kind: str
    root: str
    weight: float = 1.0


class SequenceFiles(NamedTuple):
    """Where one sequence's files are: its frames folder, annotation file and own folder."""
    frames_dir: str
    annotation: str
    seq_dir: str


# ---------------------------------------------------------------- small helpers

def layout_error(benchmark: str, root: str, missing: str) -> DatasetLayoutError:
    return DatasetLayoutError(f"{root} is not a {TITLES[benchmark]} dataset root: missing {missing}. "
                              f"Expected layout: {LAYOUTS[benchmark]}")


def check_root(benchmark: str, root: str, flag: str = "--root DIR") -> None:
    if not os.path.isdir(root):
        raise DatasetLayoutError(f"dataset root {root} does not exist (or is not a folder) - pass {flag} "
                                 f"with this layout: {LAYOUTS[benchmark]}")


def list_images(folder: str, sort_key: Optional[Callable[[str], object]] = None) -> List[str]:
    """Image files of a folder (by name, or by ``sort_key`` of the path); [] when it is no folder."""
    files = [f for f in os.listdir(folder) if is_image_file(f)] \
        if os.path.isdir(folder) else []
    paths = [os.path.join(folder, f) for f in sorted(files)]
    return sorted(paths, key=sort_key) if sort_key is not None else paths


def frame_number(path: str) -> int:
    stem = os.path.splitext(os.path.basename(path))[0]
    return int(stem) if stem.isdigit() else -1


def _sequence_size(frames: List[str]) -> Tuple[int, int]:
    """The frame size of a sequence from its first readable frame (a broken frame is skipped here and
    again when training meets it; a sequence without one readable frame is refused)."""
    first_error = None
    for path in frames:
        try:
            return image_size(path)
        except DatasetLayoutError as e:
            first_error = first_error or e
    raise DatasetLayoutError(f"no frame of {os.path.dirname(frames[0])} can be read ({first_error})")


def _read_lines(path: str) -> List[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError as e:
        raise DatasetLayoutError(f"annotation file {path} does not exist") from e
    except OSError as e:
        raise DatasetLayoutError(f"cannot read annotation file {path}: {e}") from e
    while lines and not lines[-1].strip():  # trailing blank lines are harmless
        lines.pop()
    return lines


_SEPARATORS = re.compile(r"[,\s]+")
_INLINE_SEPARATORS = re.compile(r"[, \t\r\f\v]+")


def read_table(path: str, columns: Optional[int] = None, what: str = "x,y,w,h") -> np.ndarray:
    """Every line of a text file as numbers (separated by commas, spaces or tabs): an (N, k) float64 array.

    Raises ``AnnotationError`` naming the file and the first line that is empty, holds something that
    is not a number, or has another count of numbers than ``columns`` (or than the first line).
    """
    lines = _read_lines(path)
    fast = _fast_table(lines, columns)
    if fast is not None:
        return fast
    rows = []  # the slow path finds and names the first bad line
    for n, line in enumerate(lines, 1):
        text = line.strip()
        fields = [f for f in _SEPARATORS.split(text) if f]
        expected = columns if columns is not None else (len(rows[0]) if rows else None)
        if not fields:
            raise AnnotationError(f"{path}, line {n}: empty line - every line must hold {what}")
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise AnnotationError(f"{path}, line {n}: {text[:60]!r} is not {columns or ''} numbers {what} "
                                  f"(separated by commas, spaces or tabs)".replace("  ", " ")) from None
        if expected is not None and len(values) != expected:
            raise AnnotationError(f"{path}, line {n}: {len(values)} numbers where {expected} ({what}) "
                                  f"were expected: {text[:60]!r}")
        rows.append(values)
    if not rows:
        return np.zeros((0, columns or 0), dtype=np.float64)
    return np.array(rows, dtype=np.float64)


def _fast_table(lines: List[str], columns: Optional[int]) -> Optional[np.ndarray]:
    """All lines at once when every line holds the same count of numbers (else None): 2-3x faster than
    parsing line by line (TrackingNet train has 14 million lines)."""
    if not lines:
        return None
    normal = [line.strip() for line in _INLINE_SEPARATORS.sub(" ", "\n".join(lines)).split("\n")]
    counts = {line.count(" ") + 1 if line else 0 for line in normal}
    if len(counts) != 1:
        return None
    count = counts.pop()
    if count == 0 or (columns is not None and count != columns):
        return None
    try:
        values = np.array(" ".join(normal).split(" "), dtype=np.float64)
    except ValueError:
        return None
    return values.reshape(len(lines), count)


def read_boxes(path: str, *, allow_nan: bool = True) -> np.ndarray:
    """An annotation file's (N, 4) ``x,y,w,h`` boxes, every line checked (``AnnotationError`` names file and line).

    With ``allow_nan=False`` a NaN or infinite number is refused too (evaluation allows NaN after the
    first line: benchmarks such as UAV123 mark absent targets that way, and they count as failures).
    """
    boxes = read_table(path, 4)
    if not allow_nan:
        bad = ~np.isfinite(boxes).all(axis=1)
        if bad.any():
            n = int(np.argmax(bad)) + 1
            raise AnnotationError(f"{path}, line {n}: box {_fmt(boxes[n - 1])} is not finite - write an absent "
                                  f"target as 0,0,0,0 (and mark it in absence.label)")
    return boxes


def read_flags(path: str, length: int, *, required: bool = False) -> Optional[np.ndarray]:
    """A per-frame integer flag file (LaSOT: one comma-separated line; GOT-10k: one a line), or None when
    absent and not ``required``. ``AnnotationError`` names the file (and line) when a value is no integer
    or the count differs from ``length`` frames."""
    if not os.path.isfile(path):
        if required:
            raise DatasetLayoutError(f"{path} is missing (one flag per frame)")
        return None
    values = []
    for n, line in enumerate(_read_lines(path), 1):
        for field in (f for f in _SEPARATORS.split(line.strip()) if f):
            try:
                values.append(int(float(field)))
            except (ValueError, OverflowError):  # not a number, NaN, infinity
                raise AnnotationError(f"{path}, line {n}: {field!r} is not an integer flag") from None
    if len(values) != length:
        raise AnnotationError(f"{path} has {len(values)} flags for {length} frames (one per frame expected)")
    return np.array(values, dtype=np.int64)


def _fmt(box) -> str:
    return ",".join(f"{v:g}" for v in box)


def check_first_box(path: str, boxes: np.ndarray, size_wh: Optional[Tuple[int, int]] = None,
                    one_based: bool = False) -> None:
    """The box tracking starts from: present, finite, with area, overlapping its frame (``AnnotationError``)."""
    if len(boxes) == 0:
        raise AnnotationError(f"{path} holds no box - its first line must be the target's x,y,w,h")
    box = boxes[0].copy()
    if one_based:
        box[:2] -= 1
    if not np.isfinite(box).all():
        raise AnnotationError(f"{path}, line 1: the first box {_fmt(boxes[0])} is not finite - tracking starts "
                              "from it, so it must be the target's x,y,w,h")
    if box[2] <= 0 or box[3] <= 0:
        raise AnnotationError(f"{path}, line 1: the first box {_fmt(boxes[0])} has no area - tracking starts "
                              "from it, so it must be the target's x,y,w,h")
    if size_wh is not None and not overlaps_image(box, size_wh):
        raise AnnotationError(f"{path}, line 1: the first box {_fmt(boxes[0])} lies outside its "
                              f"{size_wh[0]}x{size_wh[1]} frame")


def clean_track(path: str, boxes: np.ndarray, size_wh: Tuple[int, int],
                present: Optional[np.ndarray] = None, where: Optional[Callable[[int], str]] = None) -> Track:
    """Official cleaning (reference 4.1): boxes clipped into the image, empty or absent frames invalid.

    ``AnnotationError`` (naming ``path`` and the line) for a non-finite box, a negative width or height,
    or a box of a present frame that lies entirely outside the frame.
    """
    at = where or (lambda n: f"{path}, line {n}")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    present = np.ones(len(boxes), dtype=bool) if present is None else np.asarray(present, dtype=bool)
    finite = np.isfinite(boxes).all(axis=1)
    if not finite.all():
        n = int(np.argmax(~finite)) + 1
        raise AnnotationError(f"{at(n)}: box {_fmt(boxes[n - 1])} is not finite - write an absent "
                              "target as 0,0,0,0")
    negative = (boxes[:, 2] < 0) | (boxes[:, 3] < 0)
    if negative.any():
        n = int(np.argmax(negative)) + 1
        raise AnnotationError(f"{at(n)}: box {_fmt(boxes[n - 1])} has a negative width or height "
                              "(expected x,y,w,h)")
    nonempty = (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    w, h = size_wh
    outside = present & nonempty & ~overlaps_image(boxes, size_wh)
    if outside.any():
        n = int(np.argmax(outside)) + 1
        raise AnnotationError(f"{at(n)}: box {_fmt(boxes[n - 1])} lies outside its {w}x{h} frame "
                              "(x,y,w,h, 0-based pixels) - fix the line, or mark the frame absent")
    x1 = np.clip(boxes[:, 0], 0, w)
    y1 = np.clip(boxes[:, 1], 0, h)
    x2 = np.clip(boxes[:, 0] + boxes[:, 2], 0, w)
    y2 = np.clip(boxes[:, 1] + boxes[:, 3], 0, h)
    clipped = np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)
    valid = present & (clipped[:, 2] > 0) & (clipped[:, 3] > 0)
    return Track(boxes=clipped, valid=valid)


# ---------------------------------------------------------------- finding sequences (one per layout)

def got10k_list(root: str, subset: str) -> List[str]:
    check_root("got10k", root)
    list_file = os.path.join(root, subset, "list.txt")
    if not os.path.isfile(list_file):
        hint = ""
        if os.path.isfile(os.path.join(root, "list.txt")):
            hint = f" (ROOT looks like the {subset} folder itself: pass its parent folder)"
        raise layout_error("got10k", root, list_file + hint)
    with open(list_file) as f:
        names = [n.strip() for n in f.read().split("\n") if n.strip()]
    if not names:
        raise layout_error("got10k", root, f"a sequence name in {list_file} (the file is empty)")
    return names


def _split_indices(name: str) -> List[int]:
    with open(os.path.join(DATA_DIR, name)) as f:
        return [int(v) for v in f.read().split()]


def lasot_test_names() -> List[str]:
    """The 280 sequences of the official LaSOT test split."""
    with open(os.path.join(DATA_DIR, "lasot_test_split.txt")) as f:
        return [n.strip() for n in f if n.strip()]


def lasot_sequences(root: str, subset: str = "test") -> Dict[str, SequenceFiles]:
    """LaSOT-layout sequences under ``root`` (``ROOT/<class>/<class>-<n>/``; ``ROOT/<name>/`` also found).

    ``subset``: ``'test'`` (the official 280 present on disk), ``'train'`` (every other one found) or
    ``'all'`` (LaSOT-ext, or your own selection).
    """
    check_root("lasot", root)
    gt_files = sorted(glob.glob(os.path.join(glob.escape(root), "*", "*", "groundtruth.txt")))
    gt_files += sorted(glob.glob(os.path.join(glob.escape(root), "*", "groundtruth.txt")))
    if not gt_files:
        raise layout_error("lasot", root, "ROOT/<class>/<class>-<n>/groundtruth.txt (none found)")
    sequences: Dict[str, SequenceFiles] = {}
    for gt in gt_files:
        seq_dir = os.path.dirname(gt)
        sequences.setdefault(os.path.basename(seq_dir), SequenceFiles(os.path.join(seq_dir, "img"), gt, seq_dir))
    if subset in ("test", "train"):
        test = lasot_test_names()
        if subset == "test":
            names = [n for n in test if n in sequences]
        else:
            excluded = set(test)
            names = [n for n in sequences if n not in excluded]
        if not names:
            # Sequences are there, just not the split's: say so, and how to use them anyway.
            example = os.path.join(root, "airplane", "airplane-1" if subset == "test" else "airplane-2")
            cli = f" (on the command line: lorat eval lasot-ext --root {root})" if subset == "test" else ""
            raise DatasetLayoutError(
                f"{root} holds {len(sequences)} LaSOT-layout sequences (e.g. {next(iter(sequences))}) but none of the "
                f"LaSOT {subset} split (e.g. {example}): subset='all' takes every sequence found{cli}")
        sequences = {n: sequences[n] for n in names}
    elif subset != "all":
        raise DatasetLayoutError(f"unknown LaSOT subset {subset!r}: use 'train', 'test' or 'all'")
    for files in sequences.values():
        if not list_images(files.frames_dir):
            raise layout_error("lasot", root, f"{files.frames_dir}{os.sep}00000001.jpg")
    return sequences


def trackingnet_sequences(root: str, subset: str = "TEST") -> Dict[str, SequenceFiles]:
    """TrackingNet: ``ROOT/<subset>/anno/<seq>.txt`` and ``ROOT/<subset>/frames/<seq>/<i>.jpg``."""
    check_root("trackingnet", root)
    anno_dir = os.path.join(root, subset, "anno")
    if not os.path.isdir(anno_dir):
        raise layout_error("trackingnet", root, anno_dir)
    names = sorted(os.path.splitext(f)[0] for f in os.listdir(anno_dir) if f.endswith(".txt"))
    if not names:
        raise layout_error("trackingnet", root, f"{anno_dir}{os.sep}<sequence>.txt (none found)")
    sequences = {}
    for name in names:
        frames_dir = os.path.join(root, subset, "frames", name)
        if not list_images(frames_dir):
            raise layout_error("trackingnet", root, f"{frames_dir}{os.sep}0.jpg")
        sequences[name] = SequenceFiles(frames_dir, os.path.join(anno_dir, name + ".txt"), frames_dir)
    return sequences


def folder_sequences(root: str) -> Dict[str, SequenceFiles]:
    """``ROOT/<sequence>/{frames..., groundtruth.txt}``: every sub-folder must be a sequence."""
    check_root("folder", root, "folder=DIR")
    subdirs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not subdirs:
        hint = (" (ROOT itself looks like one sequence: put it in a folder of its own and pass that folder)"
                if os.path.isfile(os.path.join(root, "groundtruth.txt")) else "")
        raise layout_error("folder", root, "a sequence folder ROOT/<sequence>/ (the folder has none)" + hint)
    sequences = {}
    for name in subdirs:
        seq_dir = os.path.join(root, name)
        gt = os.path.join(seq_dir, "groundtruth.txt")
        if not os.path.isfile(gt):
            raise layout_error("folder", root, gt)
        if not list_images(seq_dir):
            raise layout_error("folder", root, f"the frames of {seq_dir}{os.sep} (e.g. 00000001.jpg; none found)")
        sequences[name] = SequenceFiles(seq_dir, gt, seq_dir)
    return sequences


# ---------------------------------------------------------------- reading one sequence for training

def load_sequence(name: str, files: SequenceFiles, source: str, *, one_based: bool = False,
                  absent: Optional[np.ndarray] = None, frames_sort=None,
                  frames: Optional[List[str]] = None) -> Sequence:
    """One single-object sequence: frames, checked boxes (one per frame), frame size, cleaned track.

    ``frames``: the frame paths when the caller has listed them already (else listed here)."""
    if frames is None:
        frames = list_images(files.frames_dir, frames_sort)
    if not frames:
        raise DatasetLayoutError(f"sequence {name}: no frames in {files.frames_dir}")
    boxes = read_boxes(files.annotation)
    if len(boxes) != len(frames):
        fewer = "fewer" if len(boxes) < len(frames) else "more"
        raise AnnotationError(f"{files.annotation} has {len(boxes)} boxes for the {len(frames)} frames in "
                              f"{files.frames_dir} ({fewer} boxes than frames; one x,y,w,h line per frame expected)")
    if one_based:
        boxes = boxes.copy()
        boxes[:, :2] -= 1
    size = _sequence_size(frames)
    present = None if absent is None else ~np.asarray(absent, dtype=bool)
    track = clean_track(files.annotation, boxes, size, present)
    return Sequence(name=name, frames=frames, tracks=[track], source=source, size_wh=size)


def _got10k_train(root: str, split: str, vot_split: bool) -> List[Sequence]:
    if not vot_split and split != "train":
        return _got10k_subset(root, split)  # GOT-10k val: its own list, no train list needed
    names = got10k_list(root, "train")
    if vot_split:
        index_file = {"train": "got10k_vot_train_split.txt", "val": "got10k_vot_val_split.txt"}.get(split)
        if index_file is None:
            raise DatasetLayoutError(f"got10k-vot has the splits 'train' and 'val', not {split!r}")
        indices = _split_indices(index_file)
        if max(indices) >= len(names):
            raise DatasetLayoutError(f"{os.path.join(root, 'train', 'list.txt')} lists {len(names)} sequences; the "
                                     f"VOT-excluding split indexes the full GOT-10k train list (9,335) - use "
                                     "got10k=ROOT for a partial copy of GOT-10k")
        names = [names[i] for i in indices]
    elif split != "train":
        return _got10k_subset(root, split)
    return _got10k_read(root, "train", names)


def _got10k_subset(root: str, subset: str) -> List[Sequence]:
    return _got10k_read(root, subset, got10k_list(root, subset))


def _got10k_read(root: str, subset: str, names: List[str]) -> List[Sequence]:
    out = []
    for name in names:
        seq_dir = os.path.join(root, subset, name)
        if not os.path.isdir(seq_dir):
            listed = os.path.join(root, subset, "list.txt")
            raise layout_error("got10k", root, f"{seq_dir}{os.sep} (listed in {listed})")
        files = SequenceFiles(seq_dir, os.path.join(seq_dir, "groundtruth.txt"), seq_dir)
        frames = list_images(seq_dir)
        # As the official reader (trackit's GOT10k constructor): a frame is invalid when absence.label
        # says 1; cover.label (visible share 0..8) is checked for its format but does not exclude frames.
        absence = read_flags(os.path.join(seq_dir, "absence.label"), len(frames))
        read_flags(os.path.join(seq_dir, "cover.label"), len(frames))
        out.append(load_sequence(name, files, "got10k", absent=None if absence is None else absence != 0,
                                 frames=frames))
    return out


def _lasot(root: str, split: str) -> List[Sequence]:
    out = []
    for name, files in lasot_sequences(root, split).items():
        frames = list_images(files.frames_dir)
        flags = [read_flags(os.path.join(files.seq_dir, f), len(frames))
                 for f in ("full_occlusion.txt", "out_of_view.txt")]
        flags = [f != 0 for f in flags if f is not None]
        absent = np.logical_or.reduce(flags) if flags else None
        out.append(load_sequence(name, files, "lasot", one_based=True, absent=absent, frames=frames))
    return out


def _trackingnet(root: str, split: str) -> List[Sequence]:
    check_root("trackingnet", root)
    if split == "train":
        chunks = [f"TRAIN_{k}" for k in range(12) if os.path.isdir(os.path.join(root, f"TRAIN_{k}"))]
        if not chunks:
            raise layout_error("trackingnet", root, os.path.join(root, "TRAIN_0") + " (no TRAIN_<k> chunk found)")
    else:
        chunks = [split]
    out = []
    for chunk in chunks:
        for name, files in trackingnet_sequences(root, chunk).items():
            out.append(load_sequence(f"{chunk}/{name}", files, "trackingnet", frames_sort=frame_number))
    return out


def _folder(root: str, split: str) -> List[Sequence]:
    out = []
    for name, files in folder_sequences(root).items():
        frames = list_images(files.frames_dir)
        absence = read_flags(os.path.join(files.seq_dir, "absence.label"), len(frames))
        out.append(load_sequence(name, files, "folder", absent=None if absence is None else absence != 0,
                                 frames=frames))
    return out


def _coco(root: str, split: str) -> List[Sequence]:
    """COCO 2017 through pycocotools: every non-crowd object of every image a one-frame track.

    Crowd annotations (``iscrowd`` 1: a region of many objects) are skipped, as the official recipe's
    COCO source does (trackit's ``COCO_Seed(include_crowd=False)``, the default); images left without a
    valid object are dropped.
    """
    check_root("coco", root, "coco=DIR")
    ann_file = os.path.join(root, "annotations", f"instances_{split}2017.json")
    image_dir = os.path.join(root, f"{split}2017")
    if not os.path.isfile(ann_file):
        raise layout_error("coco", root, ann_file)
    if not os.path.isdir(image_dir):
        raise layout_error("coco", root, image_dir)
    import contextlib
    import io

    try:
        from pycocotools.coco import COCO
    except ImportError as e:
        raise DatasetLayoutError("coco=DIR needs pycocotools: pip install 'lorat-tracker[coco]'") from e

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # "loading annotations into memory..."
            coco = COCO(ann_file)
    except (ValueError, KeyError, TypeError) as e:
        raise AnnotationError(f"{ann_file} is not a COCO instances file: {e}") from e
    out = []
    for image_id in sorted(coco.getImgIds()):
        info = coco.imgs[image_id]
        try:
            size = (int(info["width"]), int(info["height"]))
            path = os.path.join(image_dir, info["file_name"])
        except (KeyError, TypeError, ValueError) as e:
            raise AnnotationError(f"{ann_file}: image {image_id} lacks file_name/width/height ({e})") from e
        tracks = []
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[image_id])):
            if ann.get("iscrowd", 0):
                continue
            try:
                box = np.array(ann["bbox"], dtype=np.float64).reshape(1, 4)
            except (KeyError, TypeError, ValueError) as e:
                raise AnnotationError(f"{ann_file}: annotation {ann.get('id')} of image {image_id} has no "
                                      f"x,y,w,h 'bbox' ({e})") from e
            ann_id = ann.get("id")
            track = clean_track(ann_file, box, size, where=lambda n, a=ann_id:
                                f"{ann_file}: annotation {a} (image {image_id})")
            if track.valid.any():
                tracks.append(track)
        if tracks:
            out.append(Sequence(name=f"coco/{image_id}", frames=[path], tracks=tracks, source="coco", size_wh=size))
    return out


_READERS = {
    "got10k": lambda root, split: _got10k_train(root, split, vot_split=False),
    "got10k-vot": lambda root, split: _got10k_train(root, split, vot_split=True),
    "lasot": _lasot,
    "trackingnet": _trackingnet,
    "coco": _coco,
    "folder": _folder,
}


# ---------------------------------------------------------------- source specifications

def parse_source(spec: str) -> SourceSpec:
    """``KIND=ROOT[:WEIGHT]`` -> SourceSpec (see the module docstring for the colon rule)."""
    if not isinstance(spec, str) or "=" not in spec:
        raise DatasetLayoutError(f"data source {spec!r} is not KIND=ROOT[:WEIGHT] (e.g. folder=/data/my_videos:2); "
                                 f"KIND is one of {', '.join(SOURCE_KINDS)}")
    kind, root = spec.split("=", 1)
    kind = kind.strip().lower()
    if kind not in SOURCE_KINDS:
        raise DatasetLayoutError(f"unknown data source kind {kind!r} in {spec!r}: choose one of "
                                 f"{', '.join(SOURCE_KINDS)}")
    weight = 1.0
    head, sep, tail = root.rpartition(":")
    if sep and head:
        try:
            value = float(tail)
        except ValueError:
            value = None
        if value is not None:
            if not math.isfinite(value) or value <= 0:
                raise DatasetLayoutError(f"data source {spec!r}: weight {tail!r} must be a positive number")
            root, weight = head, value
    if not root:
        raise DatasetLayoutError(f"data source {spec!r} names no folder: write {kind}=DIR[:WEIGHT]")
    return SourceSpec(kind, root, weight)


def read_source(spec_or_kind: Union[str, SourceSpec], root: Optional[str] = None, *, split: str = "train",
                **opts) -> List[Sequence]:
    """Every usable sequence of a source, each annotation line checked before this returns.

    ``read_source("folder=/data/videos")``, ``read_source("lasot", "/data/LaSOT")`` or a ``SourceSpec``.
    ``split`` is ``"train"`` for training; ``"val"`` reads GOT-10k val (``got10k``), the VOT-excluding
    validation list (``got10k-vot``) or COCO ``val2017``; a ``folder`` is read whole either way, and LaSOT
    and TrackingNet have no validation split. Raises ``DatasetLayoutError``
    (wrong layout, unknown kind) or ``AnnotationError`` (naming file and line), or when nothing usable
    is left.
    """
    if isinstance(spec_or_kind, SourceSpec):
        spec = spec_or_kind
    elif root is None:
        spec = parse_source(spec_or_kind)
    else:
        kind = str(spec_or_kind).lower()
        if kind not in _READERS:
            raise DatasetLayoutError(f"unknown data source kind {spec_or_kind!r}: choose one of "
                                     f"{', '.join(SOURCE_KINDS)}")
        spec = SourceSpec(kind, os.fspath(root))
    if opts:
        raise TypeError(f"read_source got unexpected options {sorted(opts)}")
    if split not in ("train", "val"):
        raise DatasetLayoutError(f"unknown split {split!r}: use 'train' or 'val'")
    if split == "val" and spec.kind in ("lasot", "trackingnet"):
        raise DatasetLayoutError(f"{TITLES[spec.kind]} has no validation split - validate on got10k=DIR (GOT-10k val), "
                                 "got10k-vot=DIR or folder=DIR (your own sequences)")
    layout = LAYOUTS[spec.kind.split("-")[0]]
    if not os.path.isdir(spec.root):
        raise DatasetLayoutError(f"data source {spec.kind}={spec.root}: {spec.root} does not exist (or is not a "
                                 f"folder) - expected layout: {layout}")
    sequences = _READERS[spec.kind](spec.root, split)
    usable = [s for s in sequences if s.tracks]
    for seq in usable:
        seq.tracks = [t for t in seq.tracks if t.valid.any()]
    usable = [s for s in usable if s.tracks]
    if not usable:
        raise DatasetLayoutError(f"{spec.kind}={spec.root}: no sequence with a valid (present, non-empty) box "
                                 f"found ({len(sequences)} sequences read). Expected layout: {layout}")
    return usable
