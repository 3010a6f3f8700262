"""The training loop of ``lorat train``: run folder, resume, DDP, metrics, validation, outputs.

It only calls the parts (as timm's ``train.py`` calls its loader, scheduler and saver)::

    sources -> PairDataset -> DataLoader (this rank's share of each global batch) -> TrainStep
            -> scheduler.step_update -> checkpoint.pth / metrics.csv / curves.png -> lorat.bin

The run folder ``OUT`` holds:

- ``run.json``: the configuration that defines the run. Running the same command again resumes; a
  command that would change what is trained (another data set, batch, learning rate, ...) is refused
  with the field that differs, and nothing in ``OUT`` is touched.
- ``checkpoint.pth``: everything a resumed run needs (trainable tensors, optimiser, scheduler, grad
  scaler, every RNG, the data position = epoch + step, the curves so far). Written at every epoch
  end, every ``checkpoint_minutes`` and on Ctrl-C / SIGTERM.
- ``checkpoints/epoch-NNNN.bin``: released-format weights every ``checkpoint_every`` epochs (the
  last ``keep_checkpoints`` kept), ``lorat.bin``: the final weights in the released format.
- ``metrics.csv`` (one row per epoch), ``curves.png`` (loss and learning rate per step), and
  ``tensorboard/`` when TensorBoard is installed.

Reproducibility: the pairs of global step ``s`` of epoch ``e`` are the dataset indices
``[s * B, (s + 1) * B)`` (``B`` = global batch), and a pair is a pure function of (seed, epoch,
index) (see ``PairDataset``), so neither the number of data workers nor the number of ranks changes
what is trained: rank ``r`` of ``W`` takes the ``r``-th contiguous ``B / W`` slice of every global
batch, and the loss is normalised by the positive count all-reduced over ranks, so the averaged DDP
gradient equals the one-process gradient of the whole batch. Model-side randomness (drop path) is
reseeded from (seed, step, rank) at every step, so it too is a function of the data position.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import random
import signal
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from .. import distributed
from ..errors import LoRATError

RUN_FILE = "run.json"
CHECKPOINT_FILE = "checkpoint.pth"
WEIGHTS_FILE = "lorat.bin"
METRICS_FILE = "metrics.csv"
CURVES_FILE = "curves.png"
CHECKPOINT_FORMAT = 1
VAL_SPLIT_KINDS = ("got10k", "got10k-vot", "coco")  # sources with a validation split of their own


class RunFolderError(LoRATError, ValueError):
    """``--out`` holds something else: another run's configuration, or files that are not a run."""


class TrainingConfigError(LoRATError, ValueError):
    """Training options that cannot work together (batch not divisible by ranks, no pairs, ...)."""


# ---------------------------------------------------------------------------------- configuration

@dataclasses.dataclass
class TrainConfig:
    """One training run. Fields above ``device`` define the run (kept in ``run.json``; a rerun with
    other values is refused); the rest may change between a run and its resumption."""
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
    warmup_epochs: float = 2
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

    IDENTITY = ("variant", "data", "val", "backbone", "weights", "epochs", "pairs_per_epoch", "batch_size", "lr",
                "weight_decay", "min_lr", "warmup_lr", "warmup_epochs", "clip", "grad_accum", "precision", "seed",
                "max_gap", "val_pairs", "lora_rank", "lora_alpha", "rslora")

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


# ---------------------------------------------------------------------------------- run folder

def check_run_folder(cfg: TrainConfig) -> str:
    """What ``cfg.out`` holds: "new", "resume" (a checkpoint of this run) or "restart" (run.json of this
    run but no checkpoint yet). Raises RunFolderError when it holds anything else; reads, never writes."""
    out = cfg.out
    if not os.path.exists(out):
        return "new"
    if not os.path.isdir(out):
        raise RunFolderError(f"--out {out} is a file: pass a folder for the run")
    run_file = os.path.join(out, RUN_FILE)
    if not os.path.isfile(run_file):
        if os.listdir(out):
            raise RunFolderError(f"--out {out} is not empty and holds no {RUN_FILE} (not a lorat train run) - "
                                 "pass a new or empty folder")
        return "new"
    try:
        with open(run_file) as f:
            saved = json.load(f)["identity"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RunFolderError(f"{run_file} is unreadable ({e}) - pass another --out, or delete that folder to "
                             "start over") from None
    mine = json.loads(json.dumps(cfg.identity()))  # through JSON, as saved (tuples -> lists...)
    for key in TrainConfig.IDENTITY:
        if saved.get(key) != mine.get(key):
            flag = "--" + key.replace("_", "-")
            raise RunFolderError(f"--out {out} holds a run with {flag} {_show(saved.get(key))}, not "
                                 f"{_show(mine.get(key))} - rerun with the same options to resume it, or pass "
                                 "another --out")
    return "resume" if os.path.isfile(os.path.join(out, CHECKPOINT_FILE)) else "restart"


def _show(value) -> str:
    if isinstance(value, list):
        return " ".join(value) if value else "(none)"
    return "(none)" if value is None else str(value)


def atomic_write(path: str, write: Callable[[Any], None], binary: bool = True) -> None:
    """``write(f)`` into ``path`` through the project's one atomic writer (a reader or a resumed run
    never sees half a file; the umask decides the mode)."""
    from ..io import atomic_open

    with atomic_open(path, "wb" if binary else "w", **({} if binary else {"newline": ""})) as f:
        write(f)


# ---------------------------------------------------------------------------------- data position

def step_indices(step: int, batch_size: int, rank: int = 0, world: int = 1) -> List[int]:
    """Dataset indices of this rank's share of global step ``step``: a contiguous ``batch_size / world``
    slice of ``[step * batch_size, (step + 1) * batch_size)``."""
    per = batch_size // world
    start = step * batch_size + rank * per
    return list(range(start, start + per))


def _worker_init(_):
    # Ctrl-C is the main process's business: it finishes the step and writes a checkpoint, and a
    # worker dying of the same SIGINT would turn that into a DataLoader crash.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


def make_loader(dataset, steps: Sequence[int], batch_size: int, rank: int, world: int, workers: int,
                pin_memory: bool = False):
    batches = [step_indices(s, batch_size, rank, world) for s in steps]
    return torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                                       worker_init_fn=_worker_init if workers else None,
                                       pin_memory=pin_memory, persistent_workers=False,
                                       prefetch_factor=4 if workers else None)


def _seed_step(seed: int, step: int, rank: int) -> None:
    torch.manual_seed((seed * 1_000_003 + step * 7919 + rank) % (2 ** 63))


def rng_state() -> Dict[str, Any]:
    """Every RNG of the process, as tensors and plain values (so ``torch.load(weights_only=True)`` reads it)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                    cached],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------- the trainer

@dataclasses.dataclass
class EpochStats:
    """Running sums of one epoch (kept in the checkpoint, so a resumed epoch reports the whole epoch)."""
    steps: int = 0
    loss: float = 0.0
    bce: float = 0.0
    iou: float = 0.0
    grad_norm: float = 0.0
    seconds: float = 0.0

    def add(self, m: Dict[str, float], seconds: float) -> None:
        self.steps += 1
        self.loss += m["loss"]
        self.bce += m.get("Loss/bce", float("nan"))
        self.iou += m.get("Loss/iou", float("nan"))
        self.grad_norm += m.get("grad_norm", float("nan"))
        self.seconds += seconds

    def mean(self, key: str) -> float:
        return getattr(self, key) / self.steps if self.steps else float("nan")


CSV_COLUMNS = ("epoch", "step", "lr", "loss", "loss_bce", "loss_iou", "grad_norm", "pairs_per_s", "seconds",
               "val_loss", "val_AO", "val_SR50", "val_SR75")


class Trainer:
    """Builds everything from a TrainConfig and runs (or resumes) the loop. ``run()`` returns 0 when the
    run is complete, 130 when it stopped on Ctrl-C / SIGTERM after writing a checkpoint."""

    def __init__(self, cfg: TrainConfig, log: Callable[[str], None] = None):
        self.cfg = cfg
        self.rank, self.world = distributed.rank_and_world()
        self.main = self.rank == 0
        self._log = log or (lambda s: print(s, flush=True))
        self._stop_requested = False
        self._interrupts = 0

    def log(self, message: str) -> None:
        if self.main:
            self._log(message)

    # ---------------------------------------------------------------- set-up (validates, writes nothing)

    def setup(self) -> str:
        from ..config import load_config
        from ..datasets import parse_source, read_source
        from ..runtime import resolve_device
        from .data import PairDataset
        from .loss import LoRATCriterion
        from .model import build_training_model
        from .optim import TrainStep, build_optimizer, build_scheduler, precision_name

        cfg = self.cfg
        cfg.check(self.world)
        self.state = check_run_folder(cfg)
        path = os.path.join(cfg.out, CHECKPOINT_FILE)
        if self.state == "resume":
            try:  # weights_only: a checkpoint is tensors and plain values, never code
                self.checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:  # truncated or foreign file: torch raises several types
                raise RunFolderError(f"{path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:200]}) - "
                                     "delete it to start the run over, or pass another --out") from None
            if self.checkpoint.get("format") != CHECKPOINT_FORMAT:
                raise RunFolderError(f"{path} was written by another version of lorat train - pass another --out")
            if self.checkpoint["epoch"] >= cfg.epochs:
                self.state = "finished"
        else:
            self.checkpoint = None
        self.variant_cfg = load_config(cfg.variant)
        if self.state == "finished" and os.path.isfile(os.path.join(cfg.out, WEIGHTS_FILE)):
            return self.state
        self.device = distributed.device_for_rank(resolve_device(cfg.device))
        self.precision = precision_name(cfg.precision, self.device)

        # Every annotation line of every source is parsed here, before anything is written.
        self.sources = [parse_source(s) for s in cfg.data]
        self.train_sets = [read_source(s) for s in self.sources]
        self.val_sources = [parse_source(s) for s in cfg.val]
        # --val got10k=ROOT means GOT-10k val (the official validation set), coco=ROOT val2017.
        self.val_sets = [read_source(s, split="val" if s.kind in VAL_SPLIT_KINDS else "train")
                         for s in self.val_sources]
        self.model = build_training_model(self.variant_cfg, backbone=cfg.backbone, weights=cfg.weights,
                                          rank=cfg.lora_rank, alpha=cfg.lora_alpha, rslora=cfg.rslora,
                                          grad_checkpointing=cfg.grad_checkpointing, device=self.device,
                                          seed=cfg.seed)
        if self.state == "finished":
            return self.state
        self.train_data = PairDataset(self.train_sets, [s.weight for s in self.sources], self.variant_cfg,
                                      pairs_per_epoch=cfg.pairs_per_epoch, seed=cfg.seed, max_gap=cfg.max_gap)
        self.val_data = None
        if self.val_sets:
            # Validation pairs: fixed (epoch 0 of their own seed), so the val loss of two epochs compares.
            n = max(cfg.batch_size, cfg.val_pairs // cfg.batch_size * cfg.batch_size)
            self.val_data = PairDataset(self.val_sets, [s.weight for s in self.val_sources], self.variant_cfg,
                                        pairs_per_epoch=n, seed=cfg.seed + 1, max_gap=cfg.max_gap)
            self.val_data.set_epoch(0)
        self.criterion = LoRATCriterion()
        self.optimizer = build_optimizer(self.model, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = build_scheduler(self.optimizer, epochs=cfg.epochs, iters_per_epoch=cfg.steps_per_epoch,
                                         warmup_epochs=cfg.warmup_epochs, lr=cfg.lr, min_lr=cfg.min_lr,
                                         warmup_lr=cfg.warmup_lr)
        self.net = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.train_step = TrainStep(self.net, self.criterion, self.optimizer, precision=self.precision,
                                    device=self.device, clip=cfg.clip, accumulation=cfg.grad_accum)
        return self.state

    # ---------------------------------------------------------------- state

    def trainable(self) -> Dict[str, torch.Tensor]:
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def state_dict(self, epoch: int, step: int) -> Dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "identity": self.cfg.identity(),
            "epoch": epoch, "step": step,  # the next step to run: step `step` of epoch `epoch`
            "model": {n: p.detach().cpu().clone() for n, p in self.trainable().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "train_step": self.train_step.state_dict(),
            "rng": rng_state(),
            "epoch_stats": dataclasses.asdict(self.stats),
            "history": self.history,
            "rows": self.rows,
        }

    def load_model(self, ckpt: Dict[str, Any]) -> None:
        """The checkpoint's trainable tensors into the live parameters (in place: the optimizer keeps them)."""
        params = self.trainable()
        missing = set(params) ^ set(ckpt["model"])
        if missing:
            raise RunFolderError(f"{os.path.join(self.cfg.out, CHECKPOINT_FILE)} does not hold this model's trainable "
                                 f"tensors ({sorted(missing)[:3]} ...) - pass another --out")
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(ckpt["model"][n].to(p.device, p.dtype))

    def load_state(self, ckpt: Dict[str, Any]) -> None:
        self.load_model(ckpt)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.train_step.load_state_dict(ckpt["train_step"])
        set_rng_state(ckpt["rng"])
        self.stats = EpochStats(**ckpt["epoch_stats"])
        self.history = ckpt["history"]
        self.rows = ckpt["rows"]

    def save_checkpoint(self, epoch: int, step: int) -> None:
        if not self.main:
            return
        state = self.state_dict(epoch, step)
        atomic_write(os.path.join(self.cfg.out, CHECKPOINT_FILE), lambda f: torch.save(state, f))
        self._last_save = time.monotonic()

    def write_run_file(self) -> None:
        if not self.main:
            return
        info = {"identity": self.cfg.identity(), "command": " ".join(sys.argv),
                "created": time.strftime("%Y-%m-%d %H:%M:%S"), "world_size": self.world,
                "steps_per_epoch": self.cfg.steps_per_epoch}
        atomic_write(os.path.join(self.cfg.out, RUN_FILE),
                     lambda f: f.write(json.dumps(info, indent=2).encode() + b"\n"))

    def save_weights(self, path: str) -> None:
        from .model import save_lorat_bin

        if self.main:
            save_lorat_bin(self.model, path)

    # ---------------------------------------------------------------- signals

    def _on_signal(self, signum, frame):
        self._interrupts += 1
        if self._interrupts > 1:  # a second Ctrl-C: stop now, without a checkpoint
            raise KeyboardInterrupt
        self._stop_requested = True
        if self.main:
            print("\nlorat train: stopping after this step and writing a checkpoint (Ctrl-C again to abort)",
                  file=sys.stderr, flush=True)

    def _install_signals(self):
        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                old[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread (e.g. called from a notebook worker)
                pass
        return old

    # ---------------------------------------------------------------- the loop

    def run(self) -> int:
        cfg = self.cfg
        state = self.setup()
        out = cfg.out
        if state == "finished":
            weights = os.path.join(out, WEIGHTS_FILE)
            if not os.path.isfile(weights):  # stopped between the last checkpoint and the weights file
                self.load_model(self.checkpoint)
                self.save_weights(weights)
            self.log(f"lorat train: the run in {out} is finished ({cfg.epochs} epochs); weights: {weights}")
            return 0

        self.history: List[Dict[str, Any]] = []  # per step: loss, lr (the curves)
        self.rows: List[Dict[str, Any]] = []     # per epoch: the rows of metrics.csv
        self.stats = EpochStats()
        epoch, step = 0, 0
        if state == "resume":
            self.load_state(self.checkpoint)
            epoch, step = self.checkpoint["epoch"], self.checkpoint["step"]
            self.checkpoint = None
            self.log(f"resuming {out} at epoch {epoch + 1}, step {step} of {cfg.steps_per_epoch}")
        elif self.main:
            os.makedirs(out, exist_ok=True)
            self.write_run_file()
        distributed.barrier()
        self._last_save = time.monotonic()
        self.writer = self._tensorboard()
        self.log(self._describe())
        if state != "resume" and self.val_data is not None:
            self.evaluate_start()
        old = self._install_signals()
        try:
            while epoch < cfg.epochs:
                stopped_at = self.run_epoch(epoch, step)
                if stopped_at is not None:
                    self.save_checkpoint(epoch, stopped_at)
                    self.log(f"lorat train: interrupted at epoch {epoch + 1}, step {stopped_at}; checkpoint written to "
                             f"{os.path.join(out, CHECKPOINT_FILE)} - run the same command again to resume")
                    return 130
                row = self.end_epoch(epoch)
                epoch, step = epoch + 1, 0
                self.stats = EpochStats()
                self.save_checkpoint(epoch, 0)  # first: a kill after the summary line below loses nothing
                self.report_epoch(row)
                if epoch < cfg.epochs and self._any_stop():  # Ctrl-C during validation
                    self.log(f"lorat train: interrupted after epoch {epoch}; checkpoint written to "
                             f"{os.path.join(out, CHECKPOINT_FILE)} - run the same command again to resume")
                    return 130
            self.save_weights(os.path.join(out, WEIGHTS_FILE))
            self.log(f"lorat train: finished {cfg.epochs} epochs; weights: {os.path.join(out, WEIGHTS_FILE)}")
            return 0
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            if self.writer is not None:
                self.writer.close()

    def run_epoch(self, epoch: int, start_step: int) -> Optional[int]:
        """Steps ``start_step..`` of ``epoch``; returns the next step's index if a stop was requested."""
        cfg = self.cfg
        steps = range(start_step, cfg.steps_per_epoch)
        self.train_data.set_epoch(epoch)
        loader = make_loader(self.train_data, steps, cfg.batch_size, self.rank, self.world, cfg.workers,
                             pin_memory=self.device.type == "cuda")
        bar = self._bar(epoch, start_step)
        self.model.train()
        try:
            tick = time.perf_counter()
            for step, batch in zip(steps, loader):
                global_step = epoch * cfg.steps_per_epoch + step
                _seed_step(cfg.seed, global_step, self.rank)
                lr = self.optimizer.param_groups[0]["lr"]
                metrics = self.train_step(batch)
                self.scheduler.step_update(global_step)
                metrics, stop = self._reduce(metrics)
                now = time.perf_counter()
                self.stats.add(metrics, now - tick)
                tick = now
                self.history.append({"step": global_step, "loss": metrics["loss"], "lr": lr})
                if self.writer is not None:
                    self.writer.add_scalar("train/loss", metrics["loss"], global_step)
                    self.writer.add_scalar("train/lr", lr, global_step)
                speed = cfg.batch_size * self.stats.steps / max(self.stats.seconds, 1e-9)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(f"loss {metrics['loss']:.4f}  lr {lr:.2e}  {speed:.1f} pairs/s")
                if cfg.log_every and (step + 1) % cfg.log_every == 0:
                    self.log(f"epoch {epoch + 1} step {step + 1}/{cfg.steps_per_epoch}: loss {metrics['loss']:.4f}  "
                             f"lr {lr:.3g}  {speed:.1f} pairs/s")
                if stop:
                    return step + 1
                if cfg.checkpoint_minutes > 0 and time.monotonic() - self._last_save > 60 * cfg.checkpoint_minutes:
                    self.save_checkpoint(epoch, step + 1)
            return None
        finally:
            if bar is not None:
                bar.close()
            del loader

    def _reduce(self, metrics: Dict[str, Any]):
        """The step's metrics (TrainStep already averages the loss terms over ranks: the global batch's
        loss) and whether any rank was asked to stop (one all-reduce, so all ranks stop at the same step)."""
        out = {k: float(metrics[k]) for k in ("loss", "Loss/bce", "Loss/iou") if k in metrics}
        out["grad_norm"] = float(metrics.get("grad_norm", float("nan")))
        return out, self._any_stop()

    def _any_stop(self) -> bool:
        if self.world == 1:
            return self._stop_requested
        t = torch.tensor([float(self._stop_requested)], device=self.device if self.device.type == "cuda" else "cpu")
        torch.distributed.all_reduce(t)
        return bool(t.item() > 0)

    def end_epoch(self, epoch: int) -> Dict[str, Any]:
        """The epoch's metrics row (with validation when --val is given); kept in ``self.rows``."""
        cfg = self.cfg
        number = epoch + 1
        s = self.stats
        row = {"epoch": number, "step": number * cfg.steps_per_epoch, "lr": self.optimizer.param_groups[0]["lr"],
               "loss": s.mean("loss"), "loss_bce": s.mean("bce"), "loss_iou": s.mean("iou"),
               "grad_norm": s.mean("grad_norm"), "seconds": s.seconds,
               "pairs_per_s": s.steps * cfg.batch_size / s.seconds if s.seconds > 0 else float("nan")}
        if self.val_data is not None:
            row["val_loss"] = self.validation_loss()
            if number % cfg.eval_every == 0 or number == cfg.epochs:
                row.update(self.tracking_evaluation(number))
        self.rows.append(row)
        return row

    def report_epoch(self, row: Dict[str, Any]) -> None:
        """The one-line summary, metrics.csv, curves.png, TensorBoard and the periodic snapshot (rank 0)."""
        if not self.main:
            return
        cfg = self.cfg
        number = row["epoch"]
        left = (cfg.epochs - number) * row["seconds"]
        summary = (f"epoch {number}/{cfg.epochs}: loss {row['loss']:.4f} (bce {row['loss_bce']:.4f}, "
                   f"giou {row['loss_iou']:.4f})  lr {row['lr']:.3g}  {row['pairs_per_s']:.1f} pairs/s")
        if "val_loss" in row:
            summary += f"  val loss {row['val_loss']:.4f}"
        if "val_AO" in row:
            summary += f"  val AO {row['val_AO']:.3f}"
        summary += f"  ({_duration(row['seconds'])}, {_duration(left)} left)"
        self.log(summary)
        self.write_metrics()
        if self.writer is not None:
            for k, v in row.items():
                if k not in ("epoch", "step"):
                    self.writer.add_scalar(f"epoch/{k}", v, number)
            self.writer.flush()
        if number % cfg.checkpoint_every == 0 and number < cfg.epochs:
            self.save_snapshot(number)

    def evaluate_start(self) -> None:
        """Validation loss and tracking evaluation of the starting weights: row 0 of metrics.csv, the
        baseline the fine-tuned epochs compare with."""
        row = {"epoch": 0, "step": 0, "val_loss": self.validation_loss()}
        row.update(self.tracking_evaluation(0))
        if self.main:
            self.log(f"epoch 0 (starting weights): val loss {row['val_loss']:.4f}"
                     + (f"  val AO {row['val_AO']:.3f}" if "val_AO" in row else ""))
        self.rows.append(row)
        if self.main:
            self.write_metrics()

    def save_snapshot(self, number: int) -> None:
        folder = os.path.join(self.cfg.out, "checkpoints")
        os.makedirs(folder, exist_ok=True)
        self.save_weights(os.path.join(folder, f"epoch-{number:04d}.bin"))
        kept = sorted(f for f in os.listdir(folder) if f.startswith("epoch-") and f.endswith(".bin"))
        for old in kept[:-self.cfg.keep_checkpoints]:
            os.unlink(os.path.join(folder, old))

    # ---------------------------------------------------------------- validation

    @torch.no_grad()
    def validation_loss(self) -> float:
        """Mean loss over the fixed validation pairs (same transform as training, as the official run)."""
        from .optim import BATCH_KEYS

        cfg = self.cfg
        steps = range(len(self.val_data) // cfg.batch_size)
        loader = make_loader(self.val_data, steps, cfg.batch_size, self.rank, self.world, cfg.workers)
        self.model.eval()
        total, count = 0.0, 0
        for batch in loader:
            batch = {k: batch[k].to(self.device, non_blocking=True) for k in BATCH_KEYS}
            with self.train_step.autocast():
                score_map, boxes = self.model(batch["z"], batch["x"], batch["z_feat_mask"])
            loss, _ = self.criterion(score_map.float(), boxes.float(), batch["positive_mask"], batch["label_boxes"])
            total += float(loss)
            count += 1
        self.model.train()
        t = torch.tensor([total, count], dtype=torch.float64)
        if self.world > 1:
            t = t.to(self.device if self.device.type == "cuda" else "cpu")
            torch.distributed.all_reduce(t)
        return float(t[0] / t[1])

    def tracking_evaluation(self, number: int) -> Dict[str, float]:
        """Track the validation sequences with the current weights (rank 0) and score them with the
        GOT-10k toolkit's AO / success rates. Skipped with a note when got10k is not installed."""
        result: Dict[str, float] = {}
        if self.main:
            try:
                from ..integrations.got10k.training import evaluate_sequences
            except ImportError as e:
                self.log(f"note: tracking evaluation skipped ({e.name} is not installed): "
                         'pip install "lorat-tracker[got10k]"')
                evaluate_sequences = None
            if evaluate_sequences is not None:
                with tempfile.TemporaryDirectory() as tmp:
                    weights = os.path.join(tmp, "lorat.bin")
                    self.save_weights(weights)
                    table = evaluate_sequences(
                        [seq for data in self.val_sets for seq in data], variant=self.variant_cfg, weights=weights,
                        backbone=self.cfg.backbone, device=self.device,
                        precision="auto" if self.device.type == "cuda" else "fp32")
                if table is None:
                    self.log("note: tracking evaluation skipped: no --val sequence has two or more frames")
                else:
                    title = (f"tracking evaluation after epoch {number}" if number
                             else "tracking evaluation of the starting weights")
                    print_tracking_table(table, title, self.log)
                    result = {"val_AO": table["AO"], "val_SR50": table["SR0.50"], "val_SR75": table["SR0.75"]}
        distributed.barrier()
        return result

    # ---------------------------------------------------------------- outputs

    def write_metrics(self) -> None:
        path = os.path.join(self.cfg.out, METRICS_FILE)
        rows = [{k: r.get(k, "") for k in CSV_COLUMNS} for r in self.rows]

        def write(f):
            w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            w.writeheader()
            for r in rows:
                w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
        atomic_write(path, write, binary=False)
        try:
            plot_curves(self.history, rows, os.path.join(self.cfg.out, CURVES_FILE))
        except ImportError:
            pass  # matplotlib missing: the CSV has everything

    def _tensorboard(self):
        if not self.main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return SummaryWriter(os.path.join(self.cfg.out, "tensorboard"))

    def _bar(self, epoch: int, start_step: int):
        if not (self.main and self.cfg.progress):
            return None
        from tqdm import tqdm

        return tqdm(total=self.cfg.steps_per_epoch, initial=start_step, desc=f"epoch {epoch + 1}/{self.cfg.epochs}",
                    unit="step", dynamic_ncols=True, leave=False, file=sys.stderr)

    def _describe(self) -> str:
        cfg = self.cfg
        n_train = sum(len(d) for d in self.train_sets)
        n_val = sum(len(d) for d in self.val_sets)
        trainable = sum(p.numel() for p in self.trainable().values())
        who = f", {self.world} processes" if self.world > 1 else ""
        return (f"lorat train: {cfg.variant}, {trainable:,} trainable parameters, {n_train} training sequences"
                f"{f', {n_val} validation sequences' if n_val else ''}; {cfg.epochs} epochs x {cfg.steps_per_epoch} "
                f"steps of {cfg.batch_size} pairs on {self.device} ({self.precision}{who}); run folder {cfg.out}")


def plot_curves(history: List[Dict[str, Any]], rows: List[Dict[str, Any]], path: str) -> None:
    """Loss (per step, with a running mean, and validation loss per epoch) and learning rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([h["step"] for h in history], dtype=np.float64)
    loss = np.array([h["loss"] for h in history], dtype=np.float64)
    lr = np.array([h["lr"] for h in history], dtype=np.float64)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    if len(steps):
        ax1.plot(steps, loss, color="0.75", linewidth=0.6, label="train (step)")
        k = max(1, min(len(loss) // 10, 100))
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax1.plot(steps[k - 1:], smooth, color="C0", label=f"train (mean of {k})")
        ax2.plot(steps, lr, color="C1")
    val = [(float(r["step"]), float(r["val_loss"])) for r in rows if str(r.get("val_loss", "")) not in ("", "nan")]
    if val:
        ax1.plot(*zip(*val), "o-", color="C2", label="validation (epoch)")
    ax1.set_ylabel("loss")
    ax1.legend(loc="upper right")
    ax2.set_ylabel("learning rate")
    ax2.set_xlabel("step")
    ax2.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def print_tracking_table(table: Dict[str, Any], title: str, log: Callable[[str], None]) -> None:
    log(f"{title} ({table['sequences']} sequences, {table['frames']} frames)")
    log("  ".join(c.rjust(7) for c in ("AO", "SR0.50", "SR0.75")))
    log("  ".join(f"{table[c]:.3f}".rjust(7) for c in ("AO", "SR0.50", "SR0.75")))


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def train(cfg: TrainConfig, log: Callable[[str], None] = None) -> int:
    """Run (or resume) ``cfg``; under torchrun every rank calls this. Returns 0 or 130 (interrupted)."""
    from ..runtime import resolve_device

    distributed.init(cfg.device or resolve_device(None))  # the default device decides the backend
    try:
        return Trainer(cfg, log=log).run()
    finally:
        distributed.cleanup()
