"""Which sequence and which frames each training pair comes from (reference 4.2).

Per epoch: each source gets ``pairs_per_epoch * weight / sum(weights)`` picks (largest remainders
make the counts add up), drawn by concatenating fresh random permutations of its sequences (cycling
without replacement) and truncating; all picks are then permuted jointly. The plan is a pure function
of (seed, epoch), so every worker and rank computes the same one. Per pick: a track uniformly, then an
"interval" pair: z uniform among valid frames, x uniform among the valid frames within ``max_gap``
of z (z excluded), x = z when there is none (always for one-frame sequences: static pairs).
"""
from __future__ import annotations

from typing import List, Sequence as Seq, Tuple

import numpy as np

from ..datasets import Sequence
from ..errors import DatasetLayoutError

PLAN_STREAM = 0      # SeedSequence spawn keys that keep the plan's and the samples' numbers apart
SAMPLE_STREAM = 1


def generator(*entropy: int, stream: int = SAMPLE_STREAM) -> np.random.Generator:
    """A PCG64 generator for the integers ``entropy`` (e.g. seed, epoch, index) in one of two streams."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(v) for v in entropy],
                                                                      spawn_key=(stream,))))


def split_counts(total: int, weights: Seq[float]) -> List[int]:
    """``total`` split in proportion to ``weights`` (largest remainders, ties to the earlier source)."""
    w = np.asarray(weights, dtype=np.float64)
    exact = total * w / w.sum()
    counts = np.floor(exact).astype(np.int64)
    order = sorted(range(len(w)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[:total - int(counts.sum())]:
        counts[i] += 1
    return counts.tolist()


class PairSampler:
    def __init__(self, datasets: List[List[Sequence]], weights: List[float], pairs_per_epoch: int,
                 seed: int, max_gap: int = 100):
        if not datasets:
            raise DatasetLayoutError("no training data: pass at least one data source")
        if len(weights) != len(datasets):
            raise ValueError(f"{len(weights)} weights for {len(datasets)} data sources")
        for k, d in enumerate(datasets):
            if not d:
                raise DatasetLayoutError(f"data source {k + 1} holds no usable sequence")
        if any(not (float(w) > 0) for w in weights):
            raise ValueError(f"source weights must be positive numbers, got {list(weights)}")
        if pairs_per_epoch < 1:
            raise ValueError(f"pairs_per_epoch must be at least 1, got {pairs_per_epoch}")
        if max_gap < 1:
            raise ValueError(f"max_gap must be at least 1, got {max_gap}")
        self.datasets = datasets
        self.weights = [float(w) for w in weights]
        self.pairs_per_epoch = int(pairs_per_epoch)
        self.seed = int(seed)
        self.max_gap = int(max_gap)
        self._plan_epoch = None
        self._plan = None
        self._probabilities = np.asarray(self.weights) / sum(self.weights)

    def __len__(self) -> int:
        return self.pairs_per_epoch

    def plan(self, epoch: int) -> np.ndarray:
        """(pairs_per_epoch, 2) int64: (dataset index, sequence index) of every pick of ``epoch``."""
        if self._plan_epoch != epoch:
            rng = generator(self.seed, epoch, stream=PLAN_STREAM)
            parts = []
            for d, count in enumerate(split_counts(self.pairs_per_epoch, self.weights)):
                n = len(self.datasets[d])
                cycles = -(-count // n) if count else 0
                seqs = np.concatenate([rng.permutation(n) for _ in range(cycles)])[:count] if count else \
                    np.zeros(0, dtype=np.int64)
                parts.append(np.stack([np.full(count, d, dtype=np.int64), seqs.astype(np.int64)], axis=1))
            picks = np.concatenate(parts)
            self._plan = picks[rng.permutation(len(picks))]
            self._plan_epoch = epoch
        return self._plan

    def pick(self, epoch: int, index: int) -> Tuple[int, int]:
        if not 0 <= index < self.pairs_per_epoch:
            raise IndexError(f"pair index {index} out of range for {self.pairs_per_epoch} pairs per epoch")
        d, s = self.plan(epoch)[index]
        return int(d), int(s)

    def redraw(self, rng: np.random.Generator) -> Tuple[int, int]:
        """A replacement for a discarded pair: a dataset by weight, then a sequence uniformly."""
        d = int(rng.choice(len(self.datasets), p=self._probabilities))
        return d, int(rng.integers(len(self.datasets[d])))

    def frames(self, seq: Sequence, rng: np.random.Generator) -> Tuple[int, int, int]:
        """(track index, z frame, x frame): valid frames only, x within ``max_gap`` of z."""
        # The draws mirror the official sampler's (a track only when there are several, no frame draw
        # for a one-frame track, ``choice`` among candidates), so a generator state gives its pair.
        t = int(rng.integers(0, len(seq.tracks))) if len(seq.tracks) > 1 else 0
        valid = np.flatnonzero(seq.tracks[t].valid)
        if len(valid) == 0:
            raise DatasetLayoutError(f"sequence {seq.name}: track {t} has no valid frame")
        if len(seq.tracks[t].valid) == 1:
            return t, 0, 0
        z = int(rng.choice(valid))
        near = valid[(valid >= z - self.max_gap) & (valid <= z + self.max_gap) & (valid != z)]
        x = int(rng.choice(near)) if len(near) else z
        return t, z, x
