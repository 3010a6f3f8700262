"""Synthetic videos for harness tests: textured objects moving over textured backgrounds.

``render_sequence`` draws frames and exact per-object boxes/masks; the layout writers (here and in
sibling modules) put them on disk in the formats the harnesses read. Deterministic for a seed.
"""
from __future__ import annotations

import dataclasses
from typing import List

import numpy as np


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
