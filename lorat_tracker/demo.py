"""Synthetic demo data: textured objects moving over textured backgrounds, in every dataset layout.

``render_sequence`` draws frames and exact per-object boxes and masks (deterministic for a seed); the
``write_*`` functions put sequences on disk in the layouts the harnesses and ``lorat train`` read
(GOT-10k, LaSOT, OTB, TrackingNet, TNL2K, the ``folder`` training layout, VOT box and VOTS mask
sequences) and return ``{name: SyntheticSequence}``, so callers know the true 0-based boxes. The
README's examples and the test suite use the same data (``lorat demo-data DIR --layout ...``), so a
demo runs offline with the bundled test-size models. Frames are JPEG files like the real datasets'
(PNG for TNL2K); every file goes through ``lorat_tracker.io`` (atomic, umask honoured).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np

from .io import atomic_open

LASOT_NAMES = ("airplane-1", "airplane-9", "airplane-13")   # in the official LaSOT test split
OTB_NAMES = ("Basketball", "Bolt", "Boy")                   # in the OTB-2015 list
VOT_SIZE_WH = (320, 240)


@dataclasses.dataclass
class SyntheticSequence:
    frames: List[np.ndarray]          # RGB uint8 (H, W, 3)
    boxes: np.ndarray                 # (objects, frames, 4) 0-based [x, y, w, h], integer-valued floats
    masks: List[List[np.ndarray]]     # [object][frame] bool (H, W): the object's pixels

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def size_wh(self):
        h, w = self.frames[0].shape[:2]
        return w, h


def _texture(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Smooth random colour texture: a coarse random grid upsampled bilinearly."""
    import cv2

    coarse = rng.integers(0, 256, size=(cells, cells, 3), dtype=np.uint8)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)


def render_sequence(num_frames: int = 12, size_wh=(320, 240), num_objects: int = 1, seed: int = 0,
                    object_size=(48, 36), speed: float = 4.0, object_cells: int = 4) -> SyntheticSequence:
    """``object_cells``: the side of the object texture's coarse grid (more = a busier object)."""
    rng = np.random.default_rng(seed)
    width, height = size_wh
    background = _texture(rng, height, width, 12)
    objects = []
    for _ in range(num_objects):
        ow = int(object_size[0] * rng.uniform(0.8, 1.2))
        oh = int(object_size[1] * rng.uniform(0.8, 1.2))
        patch = _texture(rng, oh, ow, object_cells)
        patch = np.clip(patch.astype(np.int16) + rng.integers(-60, 60, size=3), 0, 255).astype(np.uint8)
        pos = np.array([rng.uniform(10, width - ow - 10), rng.uniform(10, height - oh - 10)])
        vel = rng.uniform(-speed, speed, size=2)
        objects.append((patch, pos, vel))
    frames, boxes, masks = [], [[] for _ in objects], [[] for _ in objects]
    for _ in range(num_frames):
        frame = background.copy()
        for k, (patch, pos, vel) in enumerate(objects):
            oh, ow = patch.shape[:2]
            for axis, limit in ((0, width - ow), (1, height - oh)):
                if not 0 <= pos[axis] + vel[axis] <= limit:
                    vel[axis] = -vel[axis]
            pos += vel
            x, y = int(round(pos[0])), int(round(pos[1]))
            frame[y:y + oh, x:x + ow] = patch
            mask = np.zeros((height, width), dtype=bool)
            mask[y:y + oh, x:x + ow] = True
            boxes[k].append([x, y, ow, oh])
            masks[k].append(mask)
        # Later objects occlude earlier ones: keep the masks honest.
        for k in range(len(objects)):
            for later in range(k + 1, len(objects)):
                masks[k][-1] &= ~masks[later][-1]
        frames.append(frame)
    return SyntheticSequence(frames, np.asarray(boxes, dtype=np.float64), masks)


# ----------------------------------------------------------------------------------------------- files

def _write_frames(folder: Path, seq: SyntheticSequence, pattern: str, start: int = 1) -> None:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(seq.frames):
        name = pattern % (i + start)
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if name.endswith(".jpg") else []
        ok, data = cv2.imencode(Path(name).suffix, np.ascontiguousarray(frame[:, :, ::-1]), params)
        if not ok:  # pragma: no cover - OpenCV encodes every uint8 BGR image as JPEG and PNG
            raise OSError(f"OpenCV could not encode {folder / name}")
        with atomic_open(folder / name, "wb") as f:
            f.write(data.tobytes())


def _write_text(path: Path, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def _write_boxes(path: Path, boxes: np.ndarray, delimiter: str = ",") -> None:
    with atomic_open(path, "w") as f:
        np.savetxt(f, boxes, fmt="%d", delimiter=delimiter)


def _write_labels(path: Path, values) -> None:
    with atomic_open(path, "w") as f:
        np.savetxt(f, values, fmt="%d")


def _sequences(count: int, frames: int, seed: int, **render):
    return [render_sequence(num_frames=frames, seed=seed + k, **render) for k in range(count)]


# --------------------------------------------------------------------------- benchmark / training layouts

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
            _write_text(d / "meta_info.ini", f"[METAINFO]\nobject_class: synthetic\nresolution: ({w}, {h})\n")
            _write_labels(d / "cover.label", np.full(seq.num_frames, 8))
            _write_labels(d / "absence.label", np.zeros(seq.num_frames))
            _write_labels(d / "cut_by_image.label", np.zeros(seq.num_frames))
        out[name] = seq
    _write_text(base / "list.txt", "\n".join(out) + "\n")
    return out


def write_lasot(root, names=LASOT_NAMES, frames: int = 12, seed: int = 10) -> Dict[str, SyntheticSequence]:
    """``root/<class>/<class>-<n>/img/%08d.jpg`` with 1-based ``groundtruth.txt`` (true box + 1 on x, y)."""
    out = {}
    for name, seq in zip(names, _sequences(len(names), frames, seed)):
        d = Path(root) / name.rsplit("-", 1)[0] / name
        _write_frames(d / "img", seq, "%08d.jpg")
        _write_boxes(d / "groundtruth.txt", seq.boxes[0] + np.array([1, 1, 0, 0]))
        zeros = ",".join(["0"] * seq.num_frames) + "\n"
        _write_text(d / "full_occlusion.txt", zeros)
        _write_text(d / "out_of_view.txt", zeros)
        _write_text(d / "nlp.txt", "a textured patch\n")
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
        _write_boxes(Path(root) / subset / "anno" / f"{name}.txt",
                     seq.boxes[0][:1] if subset == "TEST" else seq.boxes[0])
        out[name] = seq
    return out


def write_tnl2k(root, count: int = 2, frames: int = 8, seed: int = 40) -> Dict[str, SyntheticSequence]:
    """``root/<seq>/imgs/%05d.png`` and ``groundtruth.txt`` (boxes as stored, 0-based)."""
    out = {}
    for k, seq in enumerate(_sequences(count, frames, seed)):
        name = f"synthetic_video_{k}"
        d = Path(root) / name
        _write_frames(d / "imgs", seq, "%05d.png")
        _write_boxes(d / "groundtruth.txt", seq.boxes[0])
        out[name] = seq
    return out


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
            _write_labels(d / "absence.label", flags)
        _write_boxes(d / "groundtruth.txt", boxes, delimiter)
        out[name] = seq
    return out


# ------------------------------------------------------------------------------------------ VOT layouts

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


def _write_vot_sequence(seq_dir: Path, seq: SyntheticSequence) -> None:
    """``<seq>/color/%08d.jpg`` (1-based) and the ``<seq>/sequence`` metadata file."""
    _write_frames(seq_dir / "color", seq, "%08d.jpg")
    w, h = seq.size_wh
    _write_text(seq_dir / "sequence", f"channels.color=color/%08d.jpg\nfps=30\nformat=default\n"
                                      f"name={seq_dir.name}\nwidth={w}\nheight={h}\n")


def write_vot_boxes(root, count: int = 2, frames: int = 10, seed: int = 0) -> Dict[str, SyntheticSequence]:
    """VOT short-term box sequences ``box1, box2, ...``: ``groundtruth.txt`` (``x,y,w,h``), ``anchor.value``
    with a forward anchor at the start and a backward one at the end (so unsupervised, multistart
    ``baseline`` and ``realtime`` experiments all run) and ``list.txt`` (so the toolkit never downloads)."""
    root = Path(root)
    out = {}
    for k in range(count):
        name = f"box{k + 1}"
        seq = render_sequence(frames, VOT_SIZE_WH, num_objects=1, seed=seed + k)
        _write_vot_sequence(root / name, seq)
        _write_text(root / name / "groundtruth.txt", "".join(",".join(f"{v:g}" for v in box) + "\n"
                                                              for box in seq.boxes[0]))
        anchors = np.zeros(frames)
        anchors[0], anchors[-1] = 1, -1
        _write_text(root / name / "anchor.value", "".join(f"{int(a)}\n" for a in anchors))
        out[name] = seq
    _write_text(root / "list.txt", "".join(n + "\n" for n in out))
    return out


def write_vots_masks(root, count: int = 2, frames: int = 10, objects: int = 2, seed: int = 100
                     ) -> Dict[str, SyntheticSequence]:
    """VOTS-style multi-object sequences ``multi1, ...`` with mask ground truth: one
    ``groundtruth_obj<k>.txt`` per object, each line ``m<x0>,<y0>,<w>,<h>,<RLE>``, and ``list.txt``."""
    root = Path(root)
    out = {}
    for k in range(count):
        name = f"multi{k + 1}"
        seq = render_sequence(frames, VOT_SIZE_WH, num_objects=objects, seed=seed + k)
        _write_vot_sequence(root / name, seq)
        for o in range(objects):
            _write_text(root / name / f"groundtruth_obj{o + 1}.txt",
                        "\n".join(encode_mask(m) for m in seq.masks[o]) + "\n")
        out[name] = seq
    _write_text(root / "list.txt", "".join(n + "\n" for n in out))
    return out


@dataclasses.dataclass(frozen=True)
class Layout:
    """One ``lorat demo-data --layout``: its writer, what it is for, and its default size."""
    write: Callable[..., Dict[str, SyntheticSequence]]
    description: str
    count: int
    frames: int
    seed: int
    max_count: int = 0    # names come from a fixed list (the benchmark's own): no more than these


LAYOUTS: Dict[str, Layout] = {
    "lasot": Layout(lambda root, count, frames, seed: write_lasot(root, LASOT_NAMES[:count], frames, seed),
                    "LaSOT (lorat eval lasot, ExperimentLaSOT; not pytracking's lasot, which lists all 280 test videos)", 3, 12, 10, len(LASOT_NAMES)),
    "got10k": Layout(lambda root, count, frames, seed: write_got10k(root, "val", count, frames, seed),
                     "GOT-10k val (lorat eval got10k-val, ExperimentGOT10k, pytracking got10k_val)",
                     3, 12, 0),
    "otb": Layout(lambda root, count, frames, seed: write_otb(root, OTB_NAMES[:count], frames, seed),
                  "OTB-2015 (lorat eval otb, ExperimentOTB; not pytracking's otb, which lists all 100 videos' frame ranges)", 3, 12, 20, len(OTB_NAMES)),
    "trackingnet": Layout(lambda root, count, frames, seed: write_trackingnet(root, "TEST", count, frames, seed),
                          "TrackingNet TEST (lorat eval trackingnet, pytracking trackingnet)", 3, 12, 30),
    "tnl2k": Layout(write_tnl2k, "TNL2K (lorat eval tnl2k)", 2, 8, 40),
    "folder": Layout(write_folder, "one folder per video (lorat train --data folder=, lorat track)", 3, 12, 50),
    "vot": Layout(write_vot_boxes, "VOT box sequences (lorat vot workspace --sequences)", 2, 10, 0),
    "vots": Layout(lambda root, count, frames, seed: write_vots_masks(root, count, frames, 2, seed),
                   "VOTS two-object mask sequences (lorat vot workspace --sequences)", 2, 10, 100),
}
