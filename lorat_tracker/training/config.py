"""What one ``lorat train`` run is: its options (``TrainConfig``), which of them define the run (its
identity, kept in ``run.json``), and the checks that refuse options that cannot train."""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Dict, List, Optional, Sequence

from ..errors import LoRATError

DEFAULT_WARMUP_EPOCHS = 2  # the official recipe's (of 170 epochs)


class TrainingConfigError(LoRATError, ValueError):
    """Training options that cannot work together (batch not divisible by ranks, no pairs, ...)."""


def default_warmup_epochs(epochs: int) -> float:
    """The official 2 epochs, or half the run where 2 do not fit (a first short try, ``--epochs 1``):
    the schedule must reach its peak within the run."""
    return DEFAULT_WARMUP_EPOCHS if epochs > DEFAULT_WARMUP_EPOCHS else epochs / 2


@dataclasses.dataclass
class TrainConfig:
    """One training run. Fields above ``device`` define the run (kept in ``run.json``; a rerun with
    other values is refused); the rest may change between a run and its resumption.

    ``warmup_epochs=None`` means the default (``default_warmup_epochs``); it is resolved here, so the
    identity holds the number trained with, and ``warmup_shortened`` says whether it is not the official
    one. An explicit value is checked, never changed."""
    variant: str
    out: str
    data: List[str]                        # "kind=ROOT[:weight]" as given to --data
    val: List[str] = dataclasses.field(default_factory=list)
    backbone: Optional[str] = None
    weights: Optional[str] = None
    epochs: int = 170
    pairs_per_epoch: int = 131072
    batch_size: int = 128                  # global batch per optimiser step (over ranks and accumulation)
    lr: float = 1e-4
    weight_decay: float = 0.1
    min_lr: float = 1e-6
    warmup_lr: float = 1e-7
    warmup_epochs: Optional[float] = None  # None: the default (2, or half of a run of 2 epochs or fewer)
    clip: float = 1.0
    grad_accum: int = 1
    precision: str = "auto"                # auto = fp16 autocast + GradScaler on CUDA (official), else fp32
    seed: int = 0
    max_gap: int = 100
    val_pairs: int = 4096
    lora_rank: Optional[int] = None
    lora_alpha: Optional[float] = None
    rslora: Optional[bool] = None
    # --- not part of the run's identity
    device: Optional[str] = None
    workers: int = 4
    eval_every: int = 10
    checkpoint_every: int = 10
    keep_checkpoints: int = 5
    checkpoint_minutes: float = 30.0
    grad_checkpointing: bool = False
    progress: bool = True
    log_every: int = 0                     # a log line every N steps (0: none; the progress bar shows them)
    accept_changed_data: bool = False      # resume although the data under the same paths changed (logged)
    warmup_shortened: bool = dataclasses.field(default=False, init=False, repr=False, compare=False)

    IDENTITY = ("variant", "data", "val", "backbone", "weights", "epochs", "pairs_per_epoch", "batch_size", "lr",
                "weight_decay", "min_lr", "warmup_lr", "warmup_epochs", "clip", "grad_accum", "precision", "seed",
                "max_gap", "val_pairs", "lora_rank", "lora_alpha", "rslora")

    def __post_init__(self):
        if self.warmup_epochs is None:
            self.warmup_epochs = default_warmup_epochs(self.epochs)
            self.warmup_shortened = self.warmup_epochs != DEFAULT_WARMUP_EPOCHS

    @property
    def steps_per_epoch(self) -> int:
        return self.pairs_per_epoch // self.batch_size

    def identity(self) -> Dict[str, Any]:
        return {k: getattr(self, k) for k in self.IDENTITY}

    def check(self, world: int = 1) -> None:
        """Raise TrainingConfigError for values that cannot train (messages name the CLI flags)."""
        positive = {"epochs": self.epochs, "pairs-per-epoch": self.pairs_per_epoch, "batch-size": self.batch_size,
                    "grad-accum": self.grad_accum, "eval-every": self.eval_every,
                    "checkpoint-every": self.checkpoint_every, "keep-checkpoints": self.keep_checkpoints}
        for flag, value in positive.items():
            if value < 1:
                raise TrainingConfigError(f"--{flag} must be at least 1, got {value}")
        if self.log_every < 0:
            raise TrainingConfigError(f"--log-every must be 0 or more, got {self.log_every}")
        if self.workers < 0:
            raise TrainingConfigError(f"--workers must be 0 or more, got {self.workers}")
        for flag, value in {"lr": self.lr, "min-lr": self.min_lr, "warmup-lr": self.warmup_lr}.items():
            if not (math.isfinite(value) and value > 0):
                raise TrainingConfigError(f"--{flag} must be a positive number, got {value}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise TrainingConfigError(f"--weight-decay must be 0 or more, got {self.weight_decay}")
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise TrainingConfigError(f"--clip must be a positive number, got {self.clip}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise TrainingConfigError(f"--warmup-epochs must be in [0, --epochs), got {self.warmup_epochs}")
        if self.max_gap < 1:
            raise TrainingConfigError(f"--max-gap must be at least 1, got {self.max_gap}")
        if self.pairs_per_epoch < self.batch_size:
            raise TrainingConfigError(f"--pairs-per-epoch {self.pairs_per_epoch} is smaller than --batch-size "
                                      f"{self.batch_size}: an epoch would have no step")
        share = world * self.grad_accum
        if self.batch_size % share:
            raise TrainingConfigError(f"--batch-size {self.batch_size} must be divisible by the number of processes "
                                      f"({world}) times --grad-accum ({self.grad_accum})")
        if self.val and self.val_pairs < 1:
            raise TrainingConfigError(f"--val-pairs must be at least 1, got {self.val_pairs}")

    def warmup_note(self) -> Optional[str]:
        """The log line saying the default warm-up was shortened (None when it was not)."""
        if not self.warmup_shortened:
            return None
        unit = "epoch" if self.warmup_epochs == 1 else "epochs"
        return (f"note: warm-up shortened to {self.warmup_epochs:g} {unit} (the default {DEFAULT_WARMUP_EPOCHS} "
                f"does not fit --epochs {self.epochs}); pass --warmup-epochs to choose")


def absolute_sources(specs: Sequence[str]) -> List[str]:
    """The specs with absolute roots, so a rerun from another folder is the same run."""
    from ..datasets import parse_source

    out = []
    for spec in specs:
        s = parse_source(spec)
        out.append(f"{s.kind}={os.path.abspath(s.root)}:{_fmt_weight(s.weight)}")
    return out


def _fmt_weight(w: float) -> str:
    return str(int(w)) if float(w).is_integer() else repr(float(w))
