"""The training loop of ``lorat train``; everything else is a part it calls or is given.

It only calls the parts (as timm's ``train.py`` calls its loader, scheduler and saver)::

    sources -> PairDataset -> DataLoader (this rank's share of each global batch) -> TrainStep
            -> scheduler.step_update -> CheckpointSaver -> callbacks (metrics.csv, curves.png, ...)

- ``config.py``: the options and which of them define the run; ``run_folder.py``: new / resume /
  refuse, ``run.json``; ``checkpoint.py``: ``checkpoint.pth`` (with every RNG), snapshots, ``lorat.bin``;
  ``loader.py``: the data position; ``signals.py``: Ctrl-C / SIGTERM; ``validation.py``: the
  validation loss; ``callbacks.py``: the reporting outputs.
- ``Trainer`` takes any part ready-made (model, data, loss, optimizer, scheduler) and builds the others
  from the config (``setup()``).
- The tracking evaluation of ``--val`` is passed in (``evaluator=``): the CLI gives the GOT-10k
  toolkit's, so this package never imports a harness.

Reproducibility: a pair is a pure function of (seed, epoch, index) and step ``s`` trains on indices
``[s * B, (s + 1) * B)`` (``loader.py``); the loss is normalised by the positive count all-reduced over
ranks, so the averaged DDP gradient equals the one-process gradient of the whole batch. Model-side
randomness (drop path) is reseeded from (seed, step, rank) at every step, so it too is a function of
the data position; a resumed run restores every RNG (``checkpoint.py``) and continues bit-identically.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch

from .. import distributed
from .callbacks import CallbackList, StepLog, TrainerCallback, default_callbacks
from .checkpoint import CHECKPOINT_FILE, WEIGHTS_FILE, CheckpointSaver, load_trainable, read_checkpoint, save_weights
from .config import TrainConfig, TrainingConfigError
from .loader import make_loader
from .run_folder import check_run_folder, check_same_data, data_fingerprint, write_run_file
from .signals import StopRequest
from .validation import Evaluator, EvaluatorUnavailable, print_tracking_table, validation_loss


def _seed_step(seed: int, step: int, rank: int) -> None:
    torch.manual_seed((seed * 1_000_003 + step * 7919 + rank) % (2 ** 63))


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


class Trainer:
    """Runs (or resumes) the loop of a TrainConfig on its parts. ``run()`` returns 0 when the run is
    complete, 130 when it stopped on Ctrl-C / SIGTERM after writing a checkpoint.

    The parts may be passed in, as to transformers' ``Trainer``; each one not given is built from the
    config by ``setup()`` (the default assembly, which is what ``lorat train`` runs):

    - ``model``: a ``TrainingModel`` (``build_training_model``) of the config's variant; it is moved to
      the run's device. ``cfg.backbone`` / ``cfg.weights`` are then not read.
    - ``train_data`` / ``val_data``: map-style datasets of training pairs with ``set_epoch(epoch)``
      (``PairDataset``); ``cfg.data`` / ``cfg.val`` are then not read. A ``PairDataset``'s sequences
      are fingerprinted in ``run.json`` like sources (a resume on changed data is refused), and its
      validation sequences are the ones the ``evaluator`` tracks.
    - ``criterion``: the loss (``LoRATCriterion``).
    - ``optimizer`` and ``scheduler``: a torch optimizer over the model's trainable parameters, and a
      per-step scheduler with timm's ``step_update(step)``; without a scheduler the default one (cosine
      with warm-up, ``cfg.lr`` ...) drives the given optimizer. A scheduler needs its optimizer.
    - ``evaluator``: the tracking evaluation of the validation sequences (see ``validation.py``; None:
      validation loss only). ``callbacks``: run after the default ones (``callbacks.default_callbacks``),
      on rank 0. ``log``: where the log lines go (rank 0; default print).

    A resumed run restores the state of whatever parts it is given (``state_dict`` / ``load_state_dict``),
    so give it the same kinds of part as the run that wrote the checkpoint.
    """

    def __init__(self, cfg: TrainConfig, evaluator: Union[Evaluator, EvaluatorUnavailable, None] = None,
                 callbacks: Sequence[TrainerCallback] = (), log: Callable[[str], None] = None, *,
                 model: Optional[torch.nn.Module] = None, train_data=None, val_data=None,
                 criterion: Optional[torch.nn.Module] = None, optimizer: Optional[torch.optim.Optimizer] = None,
                 scheduler=None):
        if scheduler is not None and optimizer is None:
            raise TrainingConfigError("a scheduler was given without its optimizer: pass optimizer= too "
                                      "(the scheduler drives that optimizer's learning rate)")
        self.cfg = cfg
        self.evaluator = evaluator
        self.parts = {"model": model, "train_data": train_data, "val_data": val_data, "criterion": criterion,
                      "optimizer": optimizer, "scheduler": scheduler}
        self.rank, self.world = distributed.rank_and_world()
        self.main = self.rank == 0
        self._log = log or (lambda s: print(s, flush=True))
        self.callbacks = CallbackList([*default_callbacks(cfg), *callbacks])
        self.stop = StopRequest(announce=self.main)

    def log(self, message: str) -> None:
        if self.main:
            self._log(message)

    def _emit(self, hook: str, *args) -> None:
        if self.main:
            getattr(self.callbacks, hook)(self, *args)

    # ---------------------------------------------------------------- set-up (validates, writes nothing)

    def setup(self) -> str:
        """Validate the config and the run folder and assemble the parts not passed in (writes nothing).
        Returns the run folder's state: "new", "restart", "resume" or "finished"."""
        from ..config import load_config
        from ..datasets import parse_source, read_source
        from ..runtime import resolve_device
        from .data import PairDataset
        from .loss import LoRATCriterion
        from .model import build_training_model
        from .optim import TrainStep, build_optimizer, build_scheduler, precision_name

        cfg, parts = self.cfg, self.parts
        cfg.check(self.world)
        self.state = check_run_folder(cfg)
        self.checkpoint = None
        if self.state == "resume":
            self.checkpoint = read_checkpoint(os.path.join(cfg.out, CHECKPOINT_FILE))
            if self.checkpoint["epoch"] >= cfg.epochs:
                self.state = "finished"
        self.variant_cfg = load_config(cfg.variant)
        if parts["model"] is not None:
            given = getattr(parts["model"], "cfg", None)
            if getattr(given, "name", None) != self.variant_cfg.name:
                raise TrainingConfigError(f"the model given is variant {getattr(given, 'name', '(unknown)')}, "
                                          f"the config's variant is {self.variant_cfg.name}: pass the model of "
                                          "the config's variant, or set the variant to the model's")
            self.variant_cfg = given
        if self.state == "finished" and os.path.isfile(os.path.join(cfg.out, WEIGHTS_FILE)):
            return self.state
        self.device = distributed.device_for_rank(resolve_device(cfg.device))
        self.precision = precision_name(cfg.precision, self.device)

        # Every annotation line of every source is parsed here, before anything is written.
        train_labels, self.train_sets, self.sources = self._sequences(parts["train_data"], cfg.data, "train",
                                                                      parse_source, read_source)
        val_labels, self.val_sets, self.val_sources = self._sequences(
            parts["val_data"], cfg.val, "val", parse_source,
            # --val got10k=ROOT means GOT-10k val (the official validation set), coco=ROOT val2017, a folder
            # the whole folder; LaSOT and TrackingNet have no validation split and are refused (read_source).
            lambda source: read_source(source, split="val"))
        self.data_fingerprint = data_fingerprint([*train_labels, *(f"val:{v}" for v in val_labels)],
                                                 [*self.train_sets, *self.val_sets])
        if self.state in ("resume", "restart"):  # every rank decides alike (same files); rank 0 writes
            check_same_data(cfg, self.data_fingerprint, self.log, write=self.main)
        self.model = parts["model"]
        if self.model is None:
            self.model = build_training_model(self.variant_cfg, backbone=cfg.backbone, weights=cfg.weights,
                                              rank=cfg.lora_rank, alpha=cfg.lora_alpha, rslora=cfg.rslora,
                                              grad_checkpointing=cfg.grad_checkpointing, device=self.device,
                                              seed=cfg.seed)
        else:
            self.model.to(self.device)
        if self.state == "finished":
            return self.state
        self.train_data = parts["train_data"]
        if self.train_data is None:
            self.train_data = PairDataset(self.train_sets, [s.weight for s in self.sources], self.variant_cfg,
                                          pairs_per_epoch=cfg.pairs_per_epoch, seed=cfg.seed, max_gap=cfg.max_gap)
        elif len(self.train_data) < cfg.steps_per_epoch * cfg.batch_size:
            raise TrainingConfigError(f"the training data given has {len(self.train_data)} pairs, an epoch takes "
                                      f"{cfg.steps_per_epoch * cfg.batch_size} (--pairs-per-epoch rounded down to "
                                      "whole batches): give a dataset at least that long, or fewer pairs per epoch")
        self.val_data = parts["val_data"]
        if self.val_data is None and self.val_sets:
            # Validation pairs: fixed (epoch 0 of their own seed), so the val loss of two epochs compares.
            n = max(cfg.batch_size, cfg.val_pairs // cfg.batch_size * cfg.batch_size)
            self.val_data = PairDataset(self.val_sets, [s.weight for s in self.val_sources], self.variant_cfg,
                                        pairs_per_epoch=n, seed=cfg.seed + 1, max_gap=cfg.max_gap)
            self.val_data.set_epoch(0)
        self.criterion = parts["criterion"] if parts["criterion"] is not None else LoRATCriterion()
        self.optimizer = parts["optimizer"]
        if self.optimizer is None:
            self.optimizer = build_optimizer(self.model, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = parts["scheduler"]
        if self.scheduler is None:
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
        self.saver = CheckpointSaver(cfg.out, self.model, {"optimizer": self.optimizer, "scheduler": self.scheduler,
                                                           "train_step": self.train_step},
                                     identity=cfg.identity(), keep=cfg.keep_checkpoints,
                                     minutes=cfg.checkpoint_minutes, main=self.main)
        return self.state

    @staticmethod
    def _sequences(dataset, specs: Sequence[str], what: str, parse, read):
        """(fingerprint labels, sequence lists, parsed sources) of the sources ``specs``, or of a dataset
        passed in: a ``PairDataset``'s sequence lists (labelled "given train data 0", ...), none otherwise."""
        if dataset is None:
            sources = [parse(s) for s in specs]
            return list(specs), [read(s) for s in sources], sources
        sets = [list(d) for d in getattr(dataset, "datasets", [])]
        return [f"given {what} data {i}" for i in range(len(sets))], sets, []

    # ---------------------------------------------------------------- state

    def save_checkpoint(self, epoch: int, step: int) -> None:
        self.saver.save(epoch, step, {"epoch_stats": dataclasses.asdict(self.stats), "history": self.history,
                                      "rows": self.rows})

    def load_state(self, ckpt: Dict[str, Any]) -> None:
        self.saver.restore(ckpt)
        self.stats = EpochStats(**ckpt["epoch_stats"])
        self.history = ckpt["history"]
        self.rows = ckpt["rows"]

    # ---------------------------------------------------------------- the loop

    def run(self) -> int:
        cfg = self.cfg
        state = self.setup()
        out = cfg.out
        if state == "finished":
            weights = os.path.join(out, WEIGHTS_FILE)
            if not os.path.isfile(weights):  # stopped between the last checkpoint and the weights file
                load_trainable(self.model, self.checkpoint, os.path.join(out, CHECKPOINT_FILE))
                if self.main:
                    save_weights(self.model, weights)
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
            write_run_file(cfg, self.world, self.data_fingerprint)
        distributed.barrier()
        self.saver.last_save = time.monotonic()
        try:
            self._emit("on_train_begin")
            if cfg.warmup_note():
                self.log(cfg.warmup_note())
            self.log(self._describe())
            if state != "resume" and self.val_data is not None:
                self.evaluate_start()
            with self.stop:
                return self._loop(epoch, step)
        finally:
            self._emit("on_train_end")

    def _loop(self, epoch: int, step: int) -> int:
        cfg, out = self.cfg, self.cfg.out
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
        weights = self.saver.save_weights()
        self.log(f"lorat train: finished {cfg.epochs} epochs; weights: {weights}")
        return 0

    def run_epoch(self, epoch: int, start_step: int) -> Optional[int]:
        """Steps ``start_step..`` of ``epoch``; returns the next step's index if a stop was requested."""
        cfg = self.cfg
        steps = range(start_step, cfg.steps_per_epoch)
        self.train_data.set_epoch(epoch)
        loader = make_loader(self.train_data, steps, cfg.batch_size, self.rank, self.world, cfg.workers,
                             pin_memory=self.device.type == "cuda")
        self._emit("on_epoch_begin", epoch, start_step)
        self.model.train()
        next_step = start_step
        try:
            tick = time.perf_counter()
            for step, batch in self._batches(steps, loader, lambda: next_step):
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
                speed = cfg.batch_size * self.stats.steps / max(self.stats.seconds, 1e-9)
                self._emit("on_step_end", StepLog(epoch, step, global_step, lr, metrics, speed))
                next_step = step + 1
                if stop:
                    return step + 1
                if self.saver.due():
                    self.save_checkpoint(epoch, step + 1)
            if self.stop.requested and next_step < cfg.steps_per_epoch:
                return next_step  # the data workers ended with the Ctrl-C (see _batches)
            return None
        finally:
            self._emit("on_epoch_steps_end", epoch)
            del loader

    def _batches(self, steps, loader, position):
        """``zip(steps, loader)``, ended quietly when the data workers die of the same Ctrl-C that asked the
        loop to stop (one process): a terminal signals the whole process group, and a worker or the fork
        server hit in the instant before it ignores SIGINT ends the loader with EOFError / "worker exited
        unexpectedly". The loop then writes its stop checkpoint at ``position()``, as with ``--workers 0``."""
        try:
            yield from zip(steps, loader)
        except (EOFError, ConnectionError, RuntimeError):
            if not (self.stop.requested and self.world == 1):
                raise
            self.log(f"data workers ended with the interrupt; stopping at step {position()}")

    def _reduce(self, metrics: Dict[str, Any]):
        """The step's metrics (TrainStep already averages the loss terms over ranks: the global batch's
        loss) and whether any rank was asked to stop (one all-reduce, so all ranks stop at the same step)."""
        out = {k: float(metrics[k]) for k in ("loss", "Loss/bce", "Loss/iou") if k in metrics}
        out["grad_norm"] = float(metrics.get("grad_norm", float("nan")))
        return out, self._any_stop()

    def _any_stop(self) -> bool:
        if self.world == 1:
            return self.stop.requested
        t = torch.tensor([float(self.stop.requested)], device=self.device if self.device.type == "cuda" else "cpu")
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
        """The one-line summary, the callbacks' outputs and the periodic snapshot (rank 0)."""
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
        self._emit("on_epoch_end", row)
        if number % cfg.checkpoint_every == 0 and number < cfg.epochs:
            self.saver.save_snapshot(number)

    def evaluate_start(self) -> None:
        """Validation loss and tracking evaluation of the starting weights: row 0 of metrics.csv, the
        baseline the fine-tuned epochs compare with."""
        row = {"epoch": 0, "step": 0, "val_loss": self.validation_loss()}
        row.update(self.tracking_evaluation(0))
        self.log(f"epoch 0 (starting weights): val loss {row['val_loss']:.4f}"
                 + (f"  val AO {row['val_AO']:.3f}" if "val_AO" in row else ""))
        self.rows.append(row)
        self._emit("on_evaluate", row)

    # ---------------------------------------------------------------- validation

    def validation_loss(self) -> float:
        return validation_loss(self.model, self.criterion, self.val_data, self.cfg.batch_size, rank=self.rank,
                               world=self.world, workers=self.cfg.workers, device=self.device,
                               autocast=self.train_step.autocast)

    def tracking_evaluation(self, number: int) -> Dict[str, float]:
        """Track the validation sequences with the current weights (rank 0) through ``self.evaluator``;
        ``{}`` when there is none (or it has nothing to track)."""
        result: Dict[str, float] = {}
        if self.main and self.evaluator is not None:
            if isinstance(self.evaluator, EvaluatorUnavailable):
                self.log(self.evaluator.note)
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    weights = self.saver.save_weights(os.path.join(tmp, WEIGHTS_FILE))
                    table = self.evaluator([seq for data in self.val_sets for seq in data], weights=weights,
                                           device=self.device)
                if table is None:
                    self.log("note: tracking evaluation skipped: no --val sequence has two or more frames")
                else:
                    title = (f"tracking evaluation after epoch {number}" if number
                             else "tracking evaluation of the starting weights")
                    print_tracking_table(table, title, self.log)
                    result = {"val_AO": table["AO"], "val_SR50": table["SR0.50"], "val_SR75": table["SR0.75"]}
        distributed.barrier()
        return result

    def _describe(self) -> str:
        cfg = self.cfg
        n_train = sum(len(d) for d in self.train_sets)
        n_val = sum(len(d) for d in self.val_sets)
        data = f"{n_train} training sequences"
        if not self.train_sets:  # a dataset passed in without sequence lists
            data = f"given training data of {len(self.train_data)} pairs"
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        who = f", {self.world} processes" if self.world > 1 else ""
        return (f"lorat train: {cfg.variant}, {trainable:,} trainable parameters, {data}"
                f"{f', {n_val} validation sequences' if n_val else ''}; {cfg.epochs} epochs x {cfg.steps_per_epoch} "
                f"steps of {cfg.batch_size} pairs on {self.device} ({self.precision}{who}); run folder {cfg.out}")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def train(cfg: TrainConfig, evaluator: Union[Evaluator, EvaluatorUnavailable, None] = None,
          callbacks: Sequence[TrainerCallback] = (), log: Callable[[str], None] = None, **parts) -> int:
    """Run (or resume) ``cfg``; under torchrun every rank calls this. Returns 0 or 130 (interrupted).
    ``parts``: any of ``Trainer``'s (model=, train_data=, val_data=, criterion=, optimizer=, scheduler=)."""
    from ..runtime import resolve_device

    distributed.init(cfg.device or resolve_device(None))  # the default device decides the backend
    try:
        return Trainer(cfg, evaluator=evaluator, callbacks=callbacks, log=log, **parts).run()
    finally:
        distributed.cleanup()
