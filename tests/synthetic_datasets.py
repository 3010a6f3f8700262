"""Tiny benchmark datasets on disk, in the layouts the got10k experiments read.

Each writer renders ``count`` sequences with ``synthetic.render_sequence`` (320x240, textured
object on a textured background, exact boxes) and returns ``{name: SyntheticSequence}`` so tests
know the true 0-based boxes. Frames are JPEG files like the real datasets.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict

import cv2
import numpy as np

from synthetic import SyntheticSequence, render_sequence

LASOT_NAMES = ("airplane-1", "airplane-9", "airplane-13")   # in the official LaSOT test split
OTB_NAMES = ("Basketball", "Bolt", "Boy")                   # in the OTB-2015 list


def _write_frames(folder: Path, seq: SyntheticSequence, pattern: str, start: int = 1) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(seq.frames):
        cv2.imwrite(str(folder / (pattern % (i + start))), np.ascontiguousarray(frame[:, :, ::-1]),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])


def _write_boxes(path: Path, boxes: np.ndarray, delimiter: str = ",") -> None:
    np.savetxt(path, boxes, fmt="%d", delimiter=delimiter)


def _sequences(count: int, frames: int, seed: int, **render):
    return [render_sequence(num_frames=frames, seed=seed + k, **render) for k in range(count)]


def write_got10k(root, subset: str = "val", count: int = 3, frames: int = 12, seed: int = 0, **render
                 ) -> Dict[str, SyntheticSequence]:
    """``root/<subset>/list.txt`` and ``GOT-10k_<Subset>_00000k/`` sequence folders (``render``: options of
    ``render_sequence``)."""
    base = Path(root) / subset
    out = {}
    for k, seq in enumerate(_sequences(count, frames, seed, **render)):
        name = f"GOT-10k_{subset.capitalize()}_{k + 1:06d}"
        d = base / name
        _write_frames(d, seq, "%08d.jpg")
        boxes = seq.boxes[0]
        _write_boxes(d / "groundtruth.txt", boxes[:1] if subset == "test" else boxes)
        if subset != "test":
            w, h = seq.size_wh
            (d / "meta_info.ini").write_text(f"[METAINFO]\nobject_class: synthetic\nresolution: ({w}, {h})\n")
            np.savetxt(d / "cover.label", np.full(seq.num_frames, 8), fmt="%d")
            np.savetxt(d / "absence.label", np.zeros(seq.num_frames), fmt="%d")
            np.savetxt(d / "cut_by_image.label", np.zeros(seq.num_frames), fmt="%d")
        out[name] = seq
    (base / "list.txt").write_text("\n".join(out) + "\n")
    return out


def write_lasot(root, names=LASOT_NAMES, frames: int = 12, seed: int = 10) -> Dict[str, SyntheticSequence]:
    """``root/<class>/<class>-<n>/img/%08d.jpg`` with 1-based ``groundtruth.txt`` (true box + 1 on x, y)."""
    out = {}
    for name, seq in zip(names, _sequences(len(names), frames, seed)):
        d = Path(root) / name.rsplit("-", 1)[0] / name
        _write_frames(d / "img", seq, "%08d.jpg")
        _write_boxes(d / "groundtruth.txt", seq.boxes[0] + np.array([1, 1, 0, 0]))
        zeros = ",".join(["0"] * seq.num_frames) + "\n"
        (d / "full_occlusion.txt").write_text(zeros)
        (d / "out_of_view.txt").write_text(zeros)
        (d / "nlp.txt").write_text("a textured patch\n")
        out[name] = seq
    return out


def write_otb(root, names=OTB_NAMES, frames: int = 12, seed: int = 20) -> Dict[str, SyntheticSequence]:
    """``root/<Name>/img/%04d.jpg`` and ``groundtruth_rect.txt`` (names from the OTB-2015 list)."""
    out = {}
    for name, seq in zip(names, _sequences(len(names), frames, seed)):
        d = Path(root) / name
        _write_frames(d / "img", seq, "%04d.jpg")
        _write_boxes(d / "groundtruth_rect.txt", seq.boxes[0])
        out[name] = seq
    return out


def write_trackingnet(root, subset: str = "TEST", count: int = 3, frames: int = 12, seed: int = 30
                      ) -> Dict[str, SyntheticSequence]:
    """``root/<subset>/anno/<seq>.txt`` (first box only on TEST) and ``frames/<seq>/0.jpg ...``."""
    out = {}
    for k, seq in enumerate(_sequences(count, frames, seed)):
        name = f"synthetic_{k}"
        _write_frames(Path(root) / subset / "frames" / name, seq, "%d.jpg", start=0)
        anno = Path(root) / subset / "anno"
        anno.mkdir(parents=True, exist_ok=True)
        _write_boxes(anno / f"{name}.txt", seq.boxes[0][:1] if subset == "TEST" else seq.boxes[0])
        out[name] = seq
    return out


def write_tnl2k(root, count: int = 2, frames: int = 8, seed: int = 40) -> Dict[str, SyntheticSequence]:
    """``root/<seq>/imgs/%05d.png`` and ``groundtruth.txt`` (boxes as stored, 0-based)."""
    out = {}
    for k, seq in enumerate(_sequences(count, frames, seed)):
        name = f"synthetic_video_{k}"
        d = Path(root) / name
        (d / "imgs").mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(seq.frames):
            cv2.imwrite(str(d / "imgs" / f"{i + 1:05d}.png"), np.ascontiguousarray(frame[:, :, ::-1]))
        _write_boxes(d / "groundtruth.txt", seq.boxes[0])
        out[name] = seq
    return out


def read_rgb(path) -> np.ndarray:
    """A frame as the got10k toolkit hands it over (PIL, RGB), as an array."""
    from PIL import Image

    with Image.open(os.fspath(path)) as im:
        return np.array(im.convert("RGB"))


def write_folder(root, count: int = 3, frames: int = 12, seed: int = 50, delimiter: str = ",",
                 absent=None, **render) -> Dict[str, SyntheticSequence]:
    """``root/<seq>/%08d.jpg`` and ``groundtruth.txt`` (0-based x,y,w,h): the ``folder`` training layout.

    ``absent``: frame indices written as ``0,0,0,0`` and flagged 1 in ``absence.label`` (first sequence).
    ``render`` goes to ``render_sequence`` (e.g. ``object_size``, ``speed``)."""
    out = {}
    for k in range(count):
        seq = render_sequence(num_frames=frames, seed=seed + k, **render)
        name = f"video_{k}"
        d = Path(root) / name
        _write_frames(d, seq, "%08d.jpg")
        boxes = seq.boxes[0].copy()
        if absent is not None and k == 0:
            flags = np.zeros(seq.num_frames, dtype=int)
            flags[list(absent)] = 1
            boxes[list(absent)] = 0
            np.savetxt(d / "absence.label", flags, fmt="%d")
        _write_boxes(d / "groundtruth.txt", boxes, delimiter)
        out[name] = seq
    return out
