"""What a run saves (after timm's ``CheckpointSaver``): the resume checkpoint with every RNG, the
periodic released-format snapshots (the last ``keep`` kept) and the final weights.

- ``checkpoint.pth``: everything a resumed run needs - the trainable tensors, the state of every
  stateful part (optimiser, scheduler, grad scaler ...), every RNG, the data position (epoch + step)
  and whatever the loop adds (its running sums and curves). Read back with ``weights_only=True``: a
  checkpoint is tensors and plain values, never code.
- ``checkpoints/epoch-NNNN.bin`` and ``lorat.bin``: the released format (``save_lorat_bin``).

Every file goes through ``lorat_tracker.io`` (atomic, umask honoured): a kill at any moment leaves
the previous checkpoint or the new one, never half of one. Only rank 0 writes.
"""
from __future__ import annotations

import os
import random
import time
from typing import Any, Dict, Mapping, Optional

import numpy as np
import torch

from .run_folder import CHECKPOINT_FILE, RunFolderError

CHECKPOINT_FORMAT = 1
WEIGHTS_FILE = "lorat.bin"
SNAPSHOT_FOLDER = "checkpoints"


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


def trainable(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def read_checkpoint(path: str) -> Dict[str, Any]:
    """The checkpoint at ``path``; RunFolderError (one line, what to do) when it is unreadable or of
    another format."""
    try:  # weights_only: a checkpoint is tensors and plain values, never code
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign file: torch raises several types
        raise RunFolderError(f"{path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:200]}) - "
                             "delete it to start the run over, or pass another --out") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise RunFolderError(f"{path} was written by another version of lorat train - pass another --out")
    return ckpt


def load_trainable(model: torch.nn.Module, ckpt: Mapping[str, Any], path: str) -> None:
    """The checkpoint's trainable tensors into the live parameters (in place: an optimiser keeps them)."""
    params = trainable(model)
    missing = set(params) ^ set(ckpt["model"])
    if missing:
        raise RunFolderError(f"{path} does not hold this model's trainable tensors ({sorted(missing)[:3]} ...) - "
                             "pass another --out")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(ckpt["model"][n].to(p.device, p.dtype))


def save_weights(model: torch.nn.Module, path: str) -> None:
    """``path`` in the released format (the same merge code as released files)."""
    from .model import save_lorat_bin

    save_lorat_bin(model, path)


class CheckpointSaver:
    """Saves and restores one run in ``out``.

    ``parts`` are the stateful objects besides the model (``state_dict`` / ``load_state_dict``: the
    optimiser, the scheduler, the train step's grad scaler), saved under their names. ``keep`` is how
    many ``checkpoints/epoch-NNNN.bin`` snapshots stay; ``minutes`` how often ``due()`` asks for a
    checkpoint within an epoch (0: never). ``main`` False (ranks other than 0): nothing is written.
    """

    def __init__(self, out: str, model: torch.nn.Module, parts: Mapping[str, Any], identity: Dict[str, Any],
                 keep: int = 5, minutes: float = 30.0, main: bool = True):
        self.out, self.model, self.parts, self.identity = out, model, dict(parts), identity
        self.keep, self.minutes, self.main = keep, minutes, main
        self.path = os.path.join(out, CHECKPOINT_FILE)
        self.last_save = time.monotonic()

    def state_dict(self, epoch: int, step: int, extra: Mapping[str, Any] = ()) -> Dict[str, Any]:
        state = {"format": CHECKPOINT_FORMAT, "identity": self.identity,
                 "epoch": epoch, "step": step,  # the next step to run: step `step` of epoch `epoch`
                 "model": {n: p.detach().cpu().clone() for n, p in trainable(self.model).items()}}
        state.update((name, part.state_dict()) for name, part in self.parts.items())
        state["rng"] = rng_state()
        state.update(extra)
        return state

    def save(self, epoch: int, step: int, extra: Mapping[str, Any] = ()) -> None:
        """``checkpoint.pth`` resuming at step ``step`` of epoch ``epoch``, with ``extra`` entries."""
        from ..io import atomic_open

        if not self.main:
            return
        state = self.state_dict(epoch, step, extra)
        with atomic_open(self.path, "wb") as f:
            torch.save(state, f)
        self.last_save = time.monotonic()

    def due(self) -> bool:
        """Whether ``minutes`` have passed since the last checkpoint (the within-epoch safety net)."""
        return self.minutes > 0 and time.monotonic() - self.last_save > 60 * self.minutes

    def restore(self, ckpt: Mapping[str, Any]) -> None:
        """Model, parts and RNGs from ``ckpt`` (the caller reads its own ``extra`` entries)."""
        self.load_model(ckpt)
        for name, part in self.parts.items():
            part.load_state_dict(ckpt[name])
        set_rng_state(ckpt["rng"])

    def load_model(self, ckpt: Mapping[str, Any]) -> None:
        load_trainable(self.model, ckpt, self.path)

    def save_weights(self, path: Optional[str] = None) -> str:
        """The released-format weights (default ``OUT/lorat.bin``); returns the path."""
        path = path or os.path.join(self.out, WEIGHTS_FILE)
        if self.main:
            save_weights(self.model, path)
        return path

    def save_snapshot(self, number: int) -> None:
        """``checkpoints/epoch-NNNN.bin`` after epoch ``number``; older ones beyond ``keep`` are removed."""
        if not self.main:
            return
        folder = os.path.join(self.out, SNAPSHOT_FOLDER)
        os.makedirs(folder, exist_ok=True)
        save_weights(self.model, os.path.join(folder, f"epoch-{number:04d}.bin"))
        kept = sorted(f for f in os.listdir(folder) if f.startswith("epoch-") and f.endswith(".bin"))
        for old in kept[:-self.keep]:
            os.unlink(os.path.join(folder, old))
