"""Training pairs as a map-style torch Dataset: PairSampler -> frames -> SiameseTrainTransform.

Sample ``index`` of ``epoch`` is computed from its own generator, seeded with (seed, epoch, index),
so a batch is the same whatever the number of DataLoader workers or ranks that compute it, and a
resumed run continues exactly. A rejected search crop, or a frame that cannot be read (logged once
per file and process), discards the pair; the replacement (a source by weight, a sequence uniformly)
comes from the same generator, so redraws are deterministic too.
"""
from __future__ import annotations

import logging
from typing import List, Optional

import numpy as np
import torch

from ..datasets import Sequence
from ..errors import DatasetLayoutError
from ..images import read_image
from .sampler import PairSampler, generator
from .transform import SiameseTrainTransform

log = logging.getLogger("lorat_tracker.training")

MAX_REDRAWS = 100


def read_frame(path: str) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3), decoded by PIL without EXIF rotation (as the official loader)."""
    return read_image(path, "pil")


class PairDataset(torch.utils.data.Dataset):
    def __init__(self, datasets: List[List[Sequence]], weights: List[float], config, *, pairs_per_epoch: int,
                 seed: int, augment: bool = True, max_gap: int = 100, transform: Optional[SiameseTrainTransform] = None,
                 max_redraws: int = MAX_REDRAWS, reader=read_frame):
        self.datasets = datasets
        self.sampler = PairSampler(datasets, weights, pairs_per_epoch, seed, max_gap)
        self.transform = transform if transform is not None else SiameseTrainTransform(config, augment=augment)
        self.seed = int(seed)
        self.epoch = 0
        self.max_redraws = max_redraws
        self.reader = reader
        self._unreadable = set()

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose pairs ``__getitem__`` returns (call before creating the DataLoader
        iterator: worker processes copy the dataset when the iterator starts)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def _read(self, path: str) -> Optional[np.ndarray]:
        if path in self._unreadable:
            return None
        try:
            return self.reader(path)
        except (OSError, ValueError, SyntaxError) as e:  # PIL raises all three on broken files
            self._unreadable.add(path)
            log.warning("cannot read frame %s (%s): skipped, its pairs are redrawn", path, e)
            return None

    def __getitem__(self, index) -> dict:
        """Sample ``index`` of the current epoch, or of ``epoch`` when given ``(epoch, index)`` (for a
        batch sampler that carries the epoch, e.g. with persistent DataLoader workers)."""
        epoch = self.epoch
        if isinstance(index, tuple):
            epoch, index = (int(v) for v in index)
        rng = generator(self.seed, epoch, index)
        d, s = self.sampler.pick(epoch, index)
        for _ in range(self.max_redraws):
            seq = self.datasets[d][s]
            t, zi, xi = self.sampler.frames(seq, rng)
            z_image = self._read(seq.frames[zi])
            x_image = z_image if xi == zi else self._read(seq.frames[xi])
            if z_image is not None and x_image is not None:
                boxes = seq.tracks[t].boxes
                sample = self.transform(z_image, boxes[zi], x_image, boxes[xi], rng)
                if sample is not None:
                    return sample
            d, s = self.sampler.redraw(rng)
        raise DatasetLayoutError(f"no usable training pair after {self.max_redraws} draws (sample {index} of "
                                 f"epoch {epoch}): check that the frames can be read and that the targets "
                                 "are at least a few pixels large")
