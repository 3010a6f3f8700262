"""What one ``lorat train`` run is: its options (``TrainConfig``), which of them define the run (its
identity, kept in ``run.json``), and the checks that refuse options that cannot train."""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Dict, List, Optional, Sequence

from ..constants import PRECISIONS
from ..errors import LoRATError
from ..options import cli_option

DEFAULT_WARMUP_EPOCHS = 2  # the official recipe's (of 170 epochs)


class TrainingConfigError(LoRATError, ValueError):
    """Training options that cannot work together (batch not divisible by ranks, no pairs, ...)."""


def default_workers() -> int:
    """Data loading processes per training process: one per core, at most 8."""
    return min(8, os.cpu_count() or 1)


def default_warmup_epochs(epochs: int) -> float:
    """The official 2 epochs, or half the run where 2 do not fit (a first short try, ``--epochs 1``):
    the schedule must reach its peak within the run."""
    return DEFAULT_WARMUP_EPOCHS if epochs > DEFAULT_WARMUP_EPOCHS else epochs / 2


@dataclasses.dataclass
class TrainConfig:
    """One training run. Fields above ``device`` define the run (kept in ``run.json``; a rerun with
    other values is refused); the rest may change between a run and its resumption. Each field is
    also its ``lorat train`` flag (``cli_option``: default, help and type written once).

    ``warmup_epochs=None`` means the default (``default_warmup_epochs``); it is resolved here, so the
    identity holds the number trained with, and ``warmup_shortened`` says whether it is not the official
    one. An explicit value is checked, never changed."""
    variant: str = cli_option(group="model", like="variant",
                              help="model variant: B-224, B-378, L-224, L-378, g-224, g-378 or a variant YAML file")
    out: str = cli_option(group="data", metavar="DIR", help="run folder: weights, checkpoint, metrics")
    data: List[str] = cli_option(  # "kind=ROOT[:weight]" as given to --data
        group="data", repeat=True, metavar="KIND=ROOT[:WEIGHT]",
        help="a training source (repeatable): folder, got10k, lasot, trackingnet or coco (layouts below)")
    val: List[str] = cli_option(
        group="data", repeat=True, metavar="KIND=ROOT", default_factory=list,
        help="validation sequences (repeatable, optional): folder, got10k (val), got10k-vot or coco (val2017); "
             "validation loss every epoch and a tracking evaluation (AO, SR) every --eval-every epochs")
    backbone: Optional[str] = cli_option(
        None, group="model", like="backbone",
        help="DINOv2 backbone file (e.g. dinov2_vitb14_pretrain.pth) or Hugging Face Dinov2Model folder; "
             "without it timm downloads it")
    weights: Optional[str] = cli_option(
        None, group="model", like="weights",
        help="start from these LoRAT weights (released .bin or a lorat train output: fine-tuning); "
             "without it LoRA and head start from the official initialisation")
    epochs: int = cli_option(170, group="recipe", metavar="E", help="default 170")
    pairs_per_epoch: int = cli_option(131072, group="recipe", metavar="P", help="default 131072")
    batch_size: int = cli_option(  # global batch per optimiser step (over ranks and accumulation)
        128, group="recipe", metavar="N", help="pairs per optimiser step, over all processes together (default 128)")
    lr: float = cli_option(1e-4, group="recipe", help="peak learning rate of AdamW (default 1e-4)")
    weight_decay: float = cli_option(0.1, group="recipe", metavar="WD", help="default 0.1")
    min_lr: float = cli_option(1e-6, group="recipe", metavar="LR", help="end of the cosine (default 1e-6)")
    warmup_lr: float = cli_option(1e-7, group="recipe", metavar="LR", help="start of the warm-up (default 1e-7)")
    warmup_epochs: Optional[float] = cli_option(  # None: the default (2, or half of a run of 2 epochs or fewer)
        None, group="recipe", metavar="E", help="linear warm-up (default 2; half the run for --epochs 2 or fewer)")
    clip: float = cli_option(1.0, group="recipe", metavar="NORM", help="gradient norm clipping (default 1.0)")
    grad_accum: int = cli_option(1, group="recipe", metavar="K",
                                 help="split each batch into K accumulated micro-batches (less memory, same result)")
    precision: str = cli_option(  # auto = fp16 autocast + GradScaler on CUDA (official), else fp32
        "auto", group="runtime", like="precision", choices=PRECISIONS,
        help="auto (default: fp16 autocast + grad scaler on CUDA as the official run, fp32 elsewhere), "
             "fp32, fp16 or bf16")
    seed: int = cli_option(0, group="recipe", help="seed of the pair sampling and augmentation (default 0)")
    max_gap: int = cli_option(100, group="data", metavar="N",
                              help="largest frame distance between template and search frame (default 100)")
    val_pairs: int = cli_option(4096, group="data", metavar="N",
                                help="validation pairs per epoch (default 4096, rounded down to whole batches)")
    lora_rank: Optional[int] = cli_option(None, group="model", metavar="R", help="LoRA rank (default: the variant's)")
    lora_alpha: Optional[float] = cli_option(None, group="model", metavar="A",
                                             help="LoRA alpha (default: the variant's)")
    rslora: Optional[bool] = cli_option(None, group="model",
                                        help="rank-stabilised LoRA scaling (default: the variant's)")
    # --- not part of the run's identity
    device: Optional[str] = cli_option(
        None, group="runtime", like="device",
        help="cpu, cuda, cuda:N or mps (default: cuda if available, else cpu; under torchrun cuda:LOCAL_RANK)")
    workers: int = cli_option(group="data", metavar="N", default_factory=default_workers,
                              help="data loading processes per training process (default: min(8, CPU count)); "
                                   "does not change what is trained")
    eval_every: int = cli_option(10, group="runtime", metavar="E",
                                 help="tracking evaluation on the --val sequences every E epochs and at the end "
                                      "(default 10)")
    checkpoint_every: int = cli_option(10, group="runtime", metavar="E",
                                       help="keep released-format weights OUT/checkpoints/epoch-NNNN.bin every E "
                                            "epochs (default 10)")
    keep_checkpoints: int = cli_option(5, group="runtime", metavar="N", help="how many of those to keep (default 5)")
    checkpoint_minutes: float = cli_option(
        30.0, group="runtime", metavar="M",
        help="also write the resume checkpoint every M minutes within an epoch (default 30; 0 = only at epoch ends "
             "and on Ctrl-C)")
    grad_checkpointing: bool = cli_option(
        False, group="runtime", help="recompute block activations in the backward pass (less memory, e.g. for g-224)")
    progress: bool = cli_option(True, group="runtime", flag="--no-progress", help="no progress bar (logs only)")
    log_every: int = cli_option(  # a log line every N steps (0: none; the progress bar shows them)
        0, group="runtime", metavar="N",
        help="also print a line every N steps (for logs without a terminal; default 0 = none)")
    accept_changed_data: bool = cli_option(  # resume although the data under the same paths changed (logged)
        False, group="data",
        help="resume although sequences were added, removed or re-annotated under the same --data / --val paths "
             "since the run started (refused otherwise, naming what changed)")
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
