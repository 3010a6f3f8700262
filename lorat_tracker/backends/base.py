"""The interface every non-torch backend implements: the model's call signature, torch in and out."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

from .onnx_file import OnnxInfo

INPUT_NAMES = ("z", "x", "z_feat_mask")
OUTPUT_NAMES = ("score_map", "boxes")


class Network:
    """``network(z, x, z_feat_mask) -> (score_map, boxes)`` like ``LoRATModel.forward``.

    Inputs are the tracker's torch tensors (on ``device``); outputs are float32 torch tensors on the
    same device. A file exported with a fixed batch N runs any number of targets: the batch is
    padded to a multiple of N with copies of its last row and cut back (rows are independent);
    ``max_batch`` (TensorRT's optimisation profile) splits larger batches into chunks.
    """

    name = "?"
    max_batch: Optional[int] = None

    def __init__(self, info: OnnxInfo, device: torch.device, precision: str, auto: str = "fp32"):
        """``precision``: the user's; "auto" = ``auto`` (the backend's default), or int8 for an int8 file."""
        if precision == "auto":
            precision = "int8" if info.precision == "int8" else auto
        if (precision == "int8") != (info.precision == "int8"):
            from ..errors import BackendError

            if precision == "int8":
                raise BackendError(f"{info.path} holds {info.precision} weights: precision int8 needs a file made "
                                   "by lorat_tracker.backends.quantize.quantize_int8 (calibrated on your frames)")
            from ..spec import literal

            raise BackendError.naming(f"{literal(info.path)} holds int8 weights (calibrated with NNCF): pass "
                                      f"{{precision:int8}} or auto, or the fp32 export for precision "
                                      f"{literal(repr(precision))}")
        self.info = info
        self.cfg = info.cfg
        self.device = device
        self.precision = precision

    def __call__(self, z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
        n = z.shape[0]
        step = self.info.batch or self.max_batch or n
        if n == step:
            return self.run(z, x, z_feat_mask)
        parts = []
        for start in range(0, n, step):
            chunk = [t[start:start + step] for t in (z, x, z_feat_mask)]
            short = step - chunk[0].shape[0]
            if short and self.info.batch:
                chunk = [torch.cat((t, t[-1:].expand(short, *t.shape[1:]))) for t in chunk]
            score_map, boxes = self.run(*chunk)
            parts.append((score_map[:step - short], boxes[:step - short]))
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def run(self, z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.name} ({self.precision}) on {self.device.type}: {self.info.path}"


def input_shapes(cfg, batch: int) -> dict:
    """The static input shapes for ``batch`` targets, by ONNX input name."""
    t, s, g = cfg.template.size, cfg.search.size, cfg.template_grid
    return {"z": [batch, 3, t, t], "x": [batch, 3, s, s], "z_feat_mask": [batch, g, g]}


def host_inputs(z: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> dict:
    """The three inputs as contiguous host numpy arrays (float32, float32, int64), by ONNX input name."""
    arrays = (z.detach().float(), x.detach().float(), mask.detach().long())
    return {name: np.ascontiguousarray(t.cpu().numpy()) for name, t in zip(INPUT_NAMES, arrays)}


def to_device(arrays, device: torch.device):
    # np.array copies: a runtime may reuse its output buffers on the next call.
    return tuple(torch.from_numpy(np.array(a, dtype=np.float32)).to(device) for a in arrays)


def runtime_threads() -> int:
    """The intra-op threads a runtime gets: torch's setting, so backends compare on equal terms and
    OMP_NUM_THREADS / torch.set_num_threads limit every backend alike."""
    return max(1, torch.get_num_threads())
