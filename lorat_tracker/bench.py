"""``lorat bench``: which backend and precision to use on this machine, measured in about a minute.

For one variant (random weights of its size unless weights are given: speed does not depend on the
values), each backend and precision that can run here tracks the same synthetic sequence. Reported
per configuration: ms per frame (median of ``track()``), "x of the floor" (``roofline``: the frame's
products at this CPU's best GEMM rate in that precision, sampled right after each timed frame; the
median of the per-frame ratios) and the boxes' agreement with torch fp32.
"exact" means every box within ``EXACT_PX`` of torch fp32's; the advice is the fastest exact
configuration, and the fastest one overall with its agreement.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, List, Optional

import numpy as np

EXACT_PX = 1e-4  # fp32 backends differ from torch fp32 by summation order only: ~1e-5 px measured


@dataclasses.dataclass
class BenchRow:
    backend: str
    precision: str
    compile: Optional[str] = None       # torch's compile mode ("onednn"), None for none
    ms_per_frame: Optional[float] = None
    floor_ms: Optional[float] = None    # median of the floor sampled after each timed frame
    x_of_floor: Optional[float] = None  # median of (frame ms / the floor sampled right after it)
    max_box_dev_px: Optional[float] = None
    mean_iou: Optional[float] = None
    skipped: Optional[str] = None       # why it did not run here

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision}" + (f" {self.compile}" if self.compile else "")

    @property
    def exact(self) -> bool:
        return self.max_box_dev_px is not None and self.max_box_dev_px <= EXACT_PX


def candidates() -> List[tuple]:
    """(backend, precision, compile) worth timing on a CPU, in the order of the table."""
    return [("torch", "fp32", None), ("torch", "fp32", "onednn"), ("torch", "bf16", None),
            ("onnxruntime", "fp32", None), ("openvino", "fp32", None), ("openvino", "bf16", None),
            ("openvino", "int8", None)]


def random_model(variant: str, seed: int = 0):
    """A ``LoRATModel`` of ``variant`` with random weights of realistic magnitude (speed only): DINOv2-like
    LayerScale 0.1 rather than its 1e-5 init (the speed is the same)."""
    import torch

    from .config import load_config
    from .model import LoRATModel

    torch.manual_seed(seed)
    model = LoRATModel(load_config(variant))
    model.head.reset_buffers()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.1)
            elif "embed" in name:
                p.normal_(0, 0.02)
    return model.eval()


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, :2], b[:, :2])
    rb = np.minimum(a[:, :2] + a[:, 2:], b[:, :2] + b[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    union = np.prod(a[:, 2:], axis=1) + np.prod(b[:, 2:], axis=1) - inter
    return inter / np.maximum(union, 1e-12)


def load_model(variant: str = "B-224", weights: Optional[str] = None, backbone: Optional[str] = None,
               seed: int = 0):
    """The network to time: ``weights`` loaded (and checked), or random weights of ``variant``."""
    if weights:
        from .weights import build_model

        return build_model(variant, weights=weights, backbone=backbone, device="cpu")
    return random_model(variant, seed)


def run_bench(model, frames: int = 10, warmup: int = 2, only: Optional[List[str]] = None, seed: int = 0,
              log: Callable[[str], None] = print) -> dict:
    """Time every candidate (``only``: these backends) with ``model`` (a ``LoRATModel``, see
    ``load_model``) and return the report (rows, floors, machine)."""
    import tempfile

    import torch

    from . import roofline
    from .demo import render_sequence
    from .errors import LoRATError

    cfg = model.cfg
    seq = render_sequence(frames + warmup + 1, size_wh=(640, 480), seed=seed, object_size=(96, 72), speed=6.0)
    init_box = seq.boxes[0, 0].tolist()
    threads = torch.get_num_threads()
    flops = roofline.frame_flops(cfg)
    log(f"{cfg.name}: {flops.total:.1f} GFLOP per frame; measuring this CPU's GEMM rates ({threads} threads) ...")
    needed = {precision for backend, precision, _ in candidates() if not only or backend in only}
    probes = {p: roofline.FloorProbe.of(cfg, p) for p in ("fp32", "bf16", "int8") if p in needed}
    floors = {p: probe and probe.floor for p, probe in probes.items()}
    rows: List[BenchRow] = []
    reference = None
    with tempfile.TemporaryDirectory(prefix="lorat-bench-") as tmp:
        if only and "torch" not in only:  # the boxes are compared with torch fp32's: tracked, not timed
            log("  torch fp32 (the boxes' reference, not timed) ...")
            tracker = _build("torch", "fp32", None, model, tmp, seq, init_box)
            tracker.initialize(seq.frames[0], init_box)
            reference = np.asarray([tracker.track(frame).box for frame in seq.frames[1:]], dtype=np.float64)
        for backend, precision, compile in candidates():
            if only and backend not in only:
                continue
            row = BenchRow(backend, precision, compile)
            rows.append(row)
            probe = probes.get(precision)
            if precision == "bf16" and not roofline.has_bf16_units():
                row.skipped = "no bf16 units on this CPU (AVX512-BF16 / AMX): emulated, several times slower than fp32"
                continue
            if precision == "int8" and not roofline.has_int8_units():
                row.skipped = "no int8 dot-product units on this CPU (VNNI / AMX)"
                continue
            try:
                tracker = _build(backend, precision, compile, model, tmp, seq, init_box)
            except (LoRATError, ImportError) as e:
                row.skipped = str(e).split(" - ")[0].splitlines()[0]
                continue
            tracker.initialize(seq.frames[0], init_box)
            times, floor_ms, boxes = [], [], []
            for i, frame in enumerate(seq.frames[1:]):
                start = time.perf_counter()
                result = tracker.track(frame)
                elapsed = time.perf_counter() - start
                boxes.append(result.box)
                if i >= warmup:
                    times.append(elapsed * 1e3)
                    if probe is not None:  # the floor of this moment (a shared host's speed drifts)
                        floor_ms.append(probe.sample())
            row.ms_per_frame = float(np.median(times))
            if floor_ms:
                row.floor_ms = float(np.median(floor_ms))
                row.x_of_floor = roofline.x_of_floor(times, floor_ms)
            boxes = np.asarray(boxes, dtype=np.float64)
            if reference is None and (backend, precision, compile) == ("torch", "fp32", None):
                reference = boxes
            if reference is not None:
                row.max_box_dev_px = float(np.abs(boxes - reference).max())
                row.mean_iou = float(_iou(reference, boxes).mean())
            log(f"  {row.label}: {row.ms_per_frame:.1f} ms per frame" +
                (f", {row.x_of_floor:.2f}x of the floor" if row.x_of_floor else ""))
    return {"variant": cfg.name, "gflop_per_frame": flops.total, "threads": threads,
            "cpu": roofline.matrix_isa(), "frames": frames,
            "floors": {p: (None if f is None else {"ms": f.ms, "gflops": f.rate, "library": f.library,
                                                   "rates": f.rates}) for p, f in floors.items()},
            "rows": [dict(dataclasses.asdict(r), exact=r.exact) for r in rows]}


def _build(backend, precision, compile, model, tmp, seq, init_box):
    """The tracker of one configuration; the ONNX file (and its int8 version) made once in ``tmp``."""
    from .tracker import LoRATTracker

    if backend == "torch":
        return LoRATTracker(model, device="cpu", precision=precision, compile=compile or False)
    from .backends import import_runtime, load_network
    from .backends.onnx_file import export_onnx

    import_runtime(backend)
    path = os.path.join(tmp, "model.onnx")
    if not os.path.exists(path):
        export_onnx(model, path)
    if precision == "int8":
        from .backends.quantize import quantize_int8

        int8 = os.path.join(tmp, "model.int8.onnx")
        if not os.path.exists(int8):
            quantize_int8(path, [(seq.frames, init_box)], int8)
        path = int8
    import torch

    return LoRATTracker(load_network(backend, None, path, None, torch.device("cpu"), precision), device="cpu",
                        precision=precision, backend=backend)


def advice(report: dict) -> List[str]:
    """The lines saying which configuration to use."""
    def flags(r):
        return f"--backend {r['backend']} --precision {r['precision']}" + \
            (f" --compile {r['compile']}" if r["compile"] else "")

    ran = [r for r in report["rows"] if r["ms_per_frame"] is not None]
    if not ran:
        return ["nothing ran"]
    exact = [r for r in ran if r["exact"]]
    lines = []
    best_exact = min(exact, key=lambda r: r["ms_per_frame"]) if exact else None
    if best_exact:
        lines.append(f"exact boxes (within {EXACT_PX:g} px of torch fp32): use {flags(best_exact)} "
                     f"({best_exact['ms_per_frame']:.0f} ms per frame)")
    fastest = min(ran, key=lambda r: r["ms_per_frame"])
    if fastest is not best_exact and best_exact is not None:
        gain = best_exact["ms_per_frame"] / fastest["ms_per_frame"]
        lines.append(f"fastest: {flags(fastest)}, {gain:.2f}x the "
                     f"exact one; its boxes: mean IoU {fastest['mean_iou']:.3f} with fp32 on this synthetic "
                     "sequence (random weights make it pessimistic; check on your data)")
    return lines


def format_table(report: dict) -> str:
    head = f"{'backend precision':<24} {'ms/frame':>9} {'x of floor':>11}  boxes vs torch fp32"
    lines = [head, "-" * len(head)]
    for r in report["rows"]:
        label = f"{r['backend']} {r['precision']}" + (f" {r['compile']}" if r["compile"] else "")
        if r["ms_per_frame"] is None:
            lines.append(f"{label:<24} {'-':>9} {'-':>11}  skipped: {r['skipped']}")
            continue
        x = f"{r['x_of_floor']:.2f}x" if r["x_of_floor"] else "-"
        if (r["backend"], r["precision"], r["compile"]) == ("torch", "fp32", None):
            agree = "reference"
        elif r["exact"]:
            agree = f"exact (max {r['max_box_dev_px']:.1g} px)"
        else:
            agree = f"max {r['max_box_dev_px']:.3g} px, mean IoU {r['mean_iou']:.3f}"
        lines.append(f"{label:<24} {r['ms_per_frame']:>9.1f} {x:>11}  {agree}")
    return "\n".join(lines)
