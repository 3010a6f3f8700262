"""What a run reports as it goes, as callbacks (after ``transformers``' ``TrainerCallback``): the
metrics table ``metrics.csv``, the loss curves ``curves.png``, TensorBoard (when installed) and the
progress bar / progress lines.

The Trainer calls every hook on rank 0 only, in this order::

    on_train_begin
    on_evaluate(row 0)              the starting weights, when --val is given (not on resume)
    per epoch: on_epoch_begin -> on_step_end (each step) -> on_epoch_steps_end (also when stopped)
               -> on_epoch_end(row) (after the epoch's validation and its checkpoint)
    on_train_end                    once on_train_begin has run: also after Ctrl-C or an error

A hook reads what it needs from ``trainer``: ``trainer.cfg`` (TrainConfig), ``trainer.history`` (per
step: ``step``, ``loss``, ``lr``), ``trainer.rows`` (per epoch: the metrics rows so far) and
``trainer.log``. Callbacks write files only: what is trained never depends on them.
"""
from __future__ import annotations

import csv
import dataclasses
import os
import sys
from typing import Any, Callable, Dict, List, Sequence

import numpy as np

METRICS_FILE = "metrics.csv"
CURVES_FILE = "curves.png"
TENSORBOARD_FOLDER = "tensorboard"
CSV_COLUMNS = ("epoch", "step", "lr", "loss", "loss_bce", "loss_iou", "grad_norm", "pairs_per_s", "seconds",
               "val_loss", "val_AO", "val_SR50", "val_SR75")


@dataclasses.dataclass
class StepLog:
    """One optimiser step as the loop saw it: ``epoch`` and ``step`` 0-based, ``metrics`` = loss terms and
    grad norm (all ranks' mean), ``lr`` the rate the step used, ``pairs_per_s`` the epoch's mean speed."""
    epoch: int
    step: int
    global_step: int
    lr: float
    metrics: Dict[str, float]
    pairs_per_s: float


class TrainerCallback:
    """The hooks; each does nothing unless overridden."""

    def on_train_begin(self, trainer) -> None:
        pass

    def on_evaluate(self, trainer, row: Dict[str, Any]) -> None:
        pass

    def on_epoch_begin(self, trainer, epoch: int, start_step: int) -> None:
        pass

    def on_step_end(self, trainer, log: StepLog) -> None:
        pass

    def on_epoch_steps_end(self, trainer, epoch: int) -> None:
        pass

    def on_epoch_end(self, trainer, row: Dict[str, Any]) -> None:
        pass

    def on_train_end(self, trainer) -> None:
        pass


class CallbackList:
    """Calls a hook on every callback, in order."""

    def __init__(self, callbacks: Sequence[TrainerCallback]):
        self.callbacks = list(callbacks)

    def __getattr__(self, hook: str) -> Callable[..., None]:
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def call(*args, **kwargs):
            for cb in self.callbacks:
                getattr(cb, hook)(*args, **kwargs)
        return call


# ------------------------------------------------------------------------------------ metrics.csv

def write_metrics_csv(rows: List[Dict[str, Any]], path: str) -> None:
    """One line per row, the columns of CSV_COLUMNS; floats with 6 significant digits, missing = empty."""
    from ..io import atomic_open

    with atomic_open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in
                        ((k, r.get(k, "")) for k in CSV_COLUMNS)})


class MetricsCSV(TrainerCallback):
    """``OUT/metrics.csv``, rewritten whole after every row (a resumed run rewrites the rows it resumed with)."""

    def _write(self, trainer, row) -> None:
        write_metrics_csv(trainer.rows, os.path.join(trainer.cfg.out, METRICS_FILE))

    on_evaluate = on_epoch_end = _write


# ------------------------------------------------------------------------------------ curves.png

def plot_curves(history: List[Dict[str, Any]], rows: List[Dict[str, Any]], path: str) -> None:
    """Loss (per step, with a running mean, and validation loss per epoch) and learning rate."""
    import matplotlib

    from ..io import atomic_open

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([h["step"] for h in history], dtype=np.float64)
    loss = np.array([h["loss"] for h in history], dtype=np.float64)
    lr = np.array([h["lr"] for h in history], dtype=np.float64)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    try:
        if len(steps):
            ax1.plot(steps, loss, color="0.75", linewidth=0.6, label="train (step)")
            k = max(1, min(len(loss) // 10, 100))
            smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
            ax1.plot(steps[k - 1:], smooth, color="C0", label=f"train (mean of {k})")
            ax2.plot(steps, lr, color="C1")
        val = [(float(r["step"]), float(r["val_loss"])) for r in rows
               if str(r.get("val_loss", "")) not in ("", "nan")]
        if val:
            ax1.plot(*zip(*val), "o-", color="C2", label="validation (epoch)")
        ax1.set_ylabel("loss")
        ax1.legend(loc="upper right")
        ax2.set_ylabel("learning rate")
        ax2.set_xlabel("step")
        ax2.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        fig.tight_layout()
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
    finally:
        plt.close(fig)


class LossCurves(TrainerCallback):
    """``OUT/curves.png``, redrawn with every row; skipped when matplotlib is missing (the CSV has everything)."""

    def _draw(self, trainer, row) -> None:
        try:
            plot_curves(trainer.history, trainer.rows, os.path.join(trainer.cfg.out, CURVES_FILE))
        except ImportError:
            pass

    on_evaluate = on_epoch_end = _draw


# ------------------------------------------------------------------------------------ TensorBoard

class TensorBoard(TrainerCallback):
    """``OUT/tensorboard/``: train/loss and train/lr per step, epoch/* per epoch; a no-op without the
    ``tensorboard`` package."""

    def __init__(self):
        self.writer = None

    def on_train_begin(self, trainer) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return
        self.writer = SummaryWriter(os.path.join(trainer.cfg.out, TENSORBOARD_FOLDER))

    def on_step_end(self, trainer, log: StepLog) -> None:
        if self.writer is not None:
            self.writer.add_scalar("train/loss", log.metrics["loss"], log.global_step)
            self.writer.add_scalar("train/lr", log.lr, log.global_step)

    def on_epoch_end(self, trainer, row) -> None:
        if self.writer is not None:
            for k, v in row.items():
                if k not in ("epoch", "step"):
                    self.writer.add_scalar(f"epoch/{k}", v, row["epoch"])
            self.writer.flush()

    def on_train_end(self, trainer) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


# ------------------------------------------------------------------------------------ progress

class Progress(TrainerCallback):
    """A tqdm bar per epoch on stderr (``bar``), and a log line every ``log_every`` steps (for logs
    without a terminal; 0 = none)."""

    def __init__(self, bar: bool = True, log_every: int = 0):
        self.bar, self.log_every = bar, log_every
        self._bar = None

    def on_epoch_begin(self, trainer, epoch: int, start_step: int) -> None:
        if self.bar:
            from tqdm import tqdm

            self._bar = tqdm(total=trainer.cfg.steps_per_epoch, initial=start_step,
                             desc=f"epoch {epoch + 1}/{trainer.cfg.epochs}", unit="step", dynamic_ncols=True,
                             leave=False, file=sys.stderr)

    def on_step_end(self, trainer, log: StepLog) -> None:
        loss = log.metrics["loss"]
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix_str(f"loss {loss:.4f}  lr {log.lr:.2e}  {log.pairs_per_s:.1f} pairs/s")
        if self.log_every and (log.step + 1) % self.log_every == 0:
            trainer.log(f"epoch {log.epoch + 1} step {log.step + 1}/{trainer.cfg.steps_per_epoch}: loss {loss:.4f}  "
                        f"lr {log.lr:.3g}  {log.pairs_per_s:.1f} pairs/s")

    def on_epoch_steps_end(self, trainer, epoch: int) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_train_end(self, trainer) -> None:
        self.on_epoch_steps_end(trainer, -1)


def default_callbacks(cfg) -> List[TrainerCallback]:
    """The outputs of every ``lorat train`` run (``Trainer`` puts any callbacks it is given after these)."""
    return [MetricsCSV(), LossCurves(), TensorBoard(), Progress(bar=cfg.progress, log_every=cfg.log_every)]
