"""Small on-disk VOT sequences from ``synthetic.render_sequence`` (no ``vot`` import).

* ``write_box_sequences``: single-object rectangle ground truth (``groundtruth.txt`` ``x,y,w,h``),
  ``anchor.value`` with forward and backward anchors, so short-term box stacks (unsupervised,
  multistart baseline, realtime) all run.
* ``write_mask_sequences``: VOTS-style multi-object mask ground truth, one
  ``groundtruth_<id>.txt`` per object, each line ``m<x0>,<y0>,<w>,<h>,<RLE>``.

Both write the VOT layout: ``<seq>/color/%08d.jpg`` (1-based), ``<seq>/sequence`` metadata and
``list.txt``, so ``WORKSPACE/sequences`` built from them never triggers a download.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np

from synthetic import SyntheticSequence, render_sequence

SIZE_WH = (320, 240)


def encode_mask(mask: np.ndarray) -> str:
    """VOT mask line: tight crop offset and size, then row-major run lengths starting with zeros."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return "0"
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max(), ys.max()
    crop = mask[y0:y1 + 1, x0:x1 + 1].reshape(-1).astype(np.uint8)
    runs, value, count = [], 0, 0
    for v in crop:
        if v == value:
            count += 1
        else:
            runs.append(count)
            value, count = v, 1
    runs.append(count)
    return f"m{x0},{y0},{x1 - x0 + 1},{y1 - y0 + 1}," + ",".join(str(r) for r in runs)


def _write_frames(seq_dir: Path, seq: SyntheticSequence) -> None:
    color = seq_dir / "color"
    color.mkdir(parents=True)
    for i, frame in enumerate(seq.frames):
        cv2.imwrite(str(color / f"{i + 1:08d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
    w, h = seq.size_wh
    (seq_dir / "sequence").write_text(f"channels.color=color/%08d.jpg\nfps=30\nformat=default\n"
                                      f"name={seq_dir.name}\nwidth={w}\nheight={h}\n")


def write_box_sequences(root, count: int = 2, num_frames: int = 10, seed: int = 0) -> Dict[str, SyntheticSequence]:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for k in range(count):
        name = f"box{k + 1}"
        seq = render_sequence(num_frames, SIZE_WH, num_objects=1, seed=seed + k)
        _write_frames(root / name, seq)
        lines = [",".join(f"{v:g}" for v in box) for box in seq.boxes[0]]
        (root / name / "groundtruth.txt").write_text("\n".join(lines) + "\n")
        # A forward anchor at the start and a backward one at the end (multistart experiments).
        anchors = np.zeros(num_frames)
        anchors[0], anchors[-1] = 1, -1
        (root / name / "anchor.value").write_text("".join(f"{int(a)}\n" for a in anchors))
        out[name] = seq
    (root / "list.txt").write_text("".join(n + "\n" for n in out))
    return out


def write_mask_sequences(root, count: int = 2, num_frames: int = 10, num_objects: int = 2,
                         seed: int = 100) -> Dict[str, SyntheticSequence]:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for k in range(count):
        name = f"multi{k + 1}"
        seq = render_sequence(num_frames, SIZE_WH, num_objects=num_objects, seed=seed + k)
        _write_frames(root / name, seq)
        for o in range(num_objects):
            lines: List[str] = [encode_mask(m) for m in seq.masks[o]]
            (root / name / f"groundtruth_obj{o + 1}.txt").write_text("\n".join(lines) + "\n")
        out[name] = seq
    (root / "list.txt").write_text("".join(n + "\n" for n in out))
    return out


def mask_bbox(mask: np.ndarray):
    """Tight 0-based [x, y, w, h] of a mask (the box the official integration initializes with)."""
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
