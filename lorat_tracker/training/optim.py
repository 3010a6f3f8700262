"""Optimisation exactly as the official run (reference 4.7): parameter groups, AdamW, the timm cosine
schedule stepped per iteration, and one training step (autocast, GradScaler, clipping, accumulation).
"""
from __future__ import annotations

import contextlib
import math
from typing import Dict, List, Optional

import torch
from torch import nn

from .. import distributed, runtime
from ..constants import PRECISIONS  # noqa: F401  (the names inference uses too; runtime.PRECISION_POLICIES)
from ..errors import ConfigError
from ..runtime import resolve_device
from .loss import reduce_num_pos
from .model import unwrap_model

BATCH_KEYS = ("z", "x", "z_feat_mask", "positive_mask", "label_boxes")


def _named_trainable(model: nn.Module):
    inner = unwrap_model(model)
    if hasattr(inner, "named_trainable_parameters"):
        return list(inner.named_trainable_parameters())
    return [(n, p) for n, p in inner.named_parameters() if p.requires_grad]


def param_groups(model: nn.Module, weight_decay: float = 0.1) -> List[dict]:
    """The official three groups, in optimizer order, each with its official ``param_names``:

    0. weight decay ``weight_decay``: tensors with squeezed ndim > 1 and no "embed" in the name
       (every LoRA A/B, head layers 0/1 weights, ``head.reg_mlp.layers.2.weight``);
    1. weight decay 0: squeezed ndim <= 1 (head biases and ``head.cls_mlp.layers.2.weight``, (1, D));
    2. weight decay 0: names matching "embed" (``token_type_embed``).
    Rules as the official ``zero_1d_param_weight_decay`` then ``name_regex: embed`` (the later wins).
    """
    groups = [([], [], weight_decay), ([], [], 0.0), ([], [], 0.0)]
    for name, p in _named_trainable(model):
        if "embed" in name:
            g = groups[2]
        elif p.squeeze().ndim <= 1:
            g = groups[1]
        else:
            g = groups[0]
        g[0].append(p)
        g[1].append(name)
    return [{"params": params, "param_names": names, "weight_decay": wd} for params, names, wd in groups]


def build_optimizer(model: nn.Module, lr: float = 1e-4, weight_decay: float = 0.1) -> torch.optim.AdamW:
    """AdamW over the official groups: betas (0.9, 0.999), eps 1e-8, not fused (torch's default
    implementation per device: single-tensor on CPU, foreach on CUDA)."""
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.999), eps=1e-8,
                             weight_decay=weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, *, epochs: int, iters_per_epoch: int,
                    warmup_epochs: float = 2, lr: float = 1e-4, min_lr: float = 1e-6, warmup_lr: float = 1e-7):
    """timm's ``CosineLRScheduler`` configured as the official run, in iterations: ``t_initial`` =
    epochs x iters, linear warm-up over warmup_epochs x iters from ``warmup_lr`` *prefixed* to the
    cosine (so the cosine never reaches its end: last lr of the official run ~1.034e-6).

    Step it with ``scheduler.step_update(i)`` after optimizer step i (0-based), so steps 0 and 1 both
    run at ``warmup_lr``.
    """
    from timm.scheduler import CosineLRScheduler

    if epochs < 1 or iters_per_epoch < 1:
        raise ConfigError(f"the schedule needs epochs >= 1 and iterations per epoch >= 1 "
                          f"(got {epochs} and {iters_per_epoch}) - check --epochs / --pairs-per-epoch")
    if warmup_epochs < 0:
        raise ConfigError(f"warm-up epochs must be >= 0, got {warmup_epochs} (--warmup-epochs)")
    for group in optimizer.param_groups:
        group["lr"] = lr
        group["initial_lr"] = lr
    return CosineLRScheduler(optimizer, t_initial=epochs * iters_per_epoch, lr_min=min_lr,
                             warmup_t=int(round(warmup_epochs * iters_per_epoch)), warmup_lr_init=warmup_lr,
                             warmup_prefix=True, t_in_epochs=False)


def precision_name(precision: str, device) -> str:
    """The precision a run uses: "auto" is fp16 (official, with a GradScaler) on CUDA, fp32 elsewhere
    (the "training" row of ``runtime.PRECISION_POLICIES``)."""
    return runtime.precision_name(precision, device, "training")


def resolve_training_precision(precision: str, device) -> Optional[torch.dtype]:
    """None = float32; otherwise the autocast dtype. "auto": fp16 (official) on CUDA, else fp32; fp16
    is refused off CUDA / MPS."""
    dtype = runtime.resolve_precision(precision, device, "training")
    runtime.warn_if_precision_is_emulated(dtype, torch.device(device))
    return dtype


def _mean_over_ranks(metrics: Dict[str, float]) -> Dict[str, float]:
    """Loss metrics of the global batch: each rank's loss is its share of the global loss (divided by
    the mean positive count), so the mean over ranks equals the single-process loss of the whole batch."""
    if not distributed.is_initialized():
        return dict(metrics)
    keys = list(metrics)
    backend = torch.distributed.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    t = torch.tensor([metrics[k] for k in keys], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
    t /= torch.distributed.get_world_size()
    return dict(zip(keys, t.tolist()))


class TrainStep:
    """One optimisation step of the official recipe on one batch (a dict of ``BATCH_KEYS`` tensors):

    forward under autocast (fp16 + GradScaler, bf16, or none), loss in float32, backward; unscale;
    ``clip_grad_norm_`` over every optimised tensor (max norm ``clip``); optimizer step;
    ``zero_grad(set_to_none=True)``.

    ``accumulation`` k splits the batch into k micro-batches whose gradients add up before the one
    step. Each micro-batch loss is divided by the positive count of the *whole* batch (all-reduced),
    so the step equals the step on the whole batch up to float summation order. Under DDP the
    gradient all-reduce runs only on the last micro-batch (``no_sync``), and the returned loss
    metrics are averaged over ranks (= the loss of the global batch); grad_norm is that of the
    all-reduced gradients.
    """

    def __init__(self, model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer, *,
                 precision: str = "fp32", device="cpu", clip: Optional[float] = 1.0, accumulation: int = 1):
        self.model, self.criterion, self.optimizer = model, criterion, optimizer
        self.device = resolve_device(device)
        self.precision = precision
        self.autocast_dtype = resolve_training_precision(precision, self.device)
        if int(accumulation) < 1:
            raise ConfigError(f"gradient accumulation must be >= 1, got {accumulation}")
        self.accumulation = int(accumulation)
        self.clip = clip
        use_scaler = self.autocast_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type) if use_scaler else None
        self.params = [p for g in optimizer.param_groups for p in g["params"]]

    def autocast(self):
        """The autocast context of this step's precision (fp32: none)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def __call__(self, batch: Dict[str, torch.Tensor]) -> Dict[str, float]:
        missing = [k for k in BATCH_KEYS if k not in batch]
        if missing:
            raise KeyError(f"training batch lacks {', '.join(missing)} (expected {', '.join(BATCH_KEYS)})")
        b = {k: batch[k].to(self.device, non_blocking=True) for k in BATCH_KEYS}
        n = b["z"].shape[0]
        if n < self.accumulation:
            raise ConfigError(f"batch of {n} pairs cannot be split into {self.accumulation} accumulation "
                              "steps - use a larger batch or fewer accumulation steps")
        self.model.train()
        num_pos = reduce_num_pos(b["positive_mask"])
        bounds = [round(i * n / self.accumulation) for i in range(self.accumulation + 1)]
        totals = {"loss": 0.0, "Loss/bce": 0.0, "Loss/iou": 0.0}
        for i in range(self.accumulation):
            sl = slice(bounds[i], bounds[i + 1])
            last = i == self.accumulation - 1
            sync = contextlib.nullcontext() if last or not hasattr(self.model, "no_sync") else self.model.no_sync()
            with sync:
                with self.autocast():
                    score_map, boxes = self.model(b["z"][sl], b["x"][sl], b["z_feat_mask"][sl])
                loss, metrics = self.criterion(score_map, boxes, b["positive_mask"][sl], b["label_boxes"][sl],
                                               num_pos=num_pos)
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            for k in totals:
                totals[k] += metrics[k]
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        max_norm = self.clip if self.clip else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, max_norm))
        skipped = False
        if self.scaler is not None:
            scale = self.scaler.get_scale()
            self.scaler.step(self.optimizer)     # skips the step on inf/NaN gradients
            self.scaler.update()
            skipped = self.scaler.get_scale() < scale
        elif math.isfinite(grad_norm):
            self.optimizer.step()
        else:
            skipped = True                       # a NaN/inf gradient would destroy the weights
        self.optimizer.zero_grad(set_to_none=True)
        out = _mean_over_ranks(totals)
        out.update(grad_norm=grad_norm, lr=self.optimizer.param_groups[0]["lr"], num_pos=float(num_pos),
                   skipped=float(skipped))
        if self.scaler is not None:
            out["loss_scale"] = float(self.scaler.get_scale())
        return out

    def state_dict(self) -> dict:
        return {"scaler": self.scaler.state_dict() if self.scaler is not None else None}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


__all__ = ["param_groups", "build_optimizer", "build_scheduler", "TrainStep", "resolve_training_precision",
           "PRECISIONS", "BATCH_KEYS", "precision_name"]
