"""int8: a quantised copy of a LoRAT ONNX file, calibrated with NNCF on the user's own frames.

NNCF's post-training quantisation (``nncf.quantize``, transformer preset: SmoothQuant + fast bias
correction) inserts QuantizeLinear / DequantizeLinear pairs into the ONNX graph; OpenVINO runs such a
graph with int8 kernels (ONNX Runtime runs it too). The calibration inputs are exactly what the
tracker feeds the network: each of the user's sequences is tracked with the fp32 file and every
``(z, x, z_feat_mask)`` of that run is recorded. The result is an ordinary LoRAT ONNX file (metadata,
digest over the new graph) whose metadata also says ``precision: int8`` and what it was calibrated on.

Reduced precision claims nothing about accuracy: measure its agreement with fp32 on your frames
(``benchmarks/backends.py`` reports per-frame IoU).
"""
from __future__ import annotations

import os
from typing import Iterable, Sequence, Tuple

import numpy as np

from ..errors import BackendError, BackendNotInstalledError, ConfigError
from ..io import atomic_path
from .onnx_file import OnnxInfo, import_onnx, onnx_digest, read_onnx

NNCF_HINT = 'pip install "lorat-tracker[openvino]"'


def import_nncf():
    try:
        import nncf
    except ImportError as e:
        raise BackendNotInstalledError(f"int8 calibration needs the nncf package ({e}) - install it with: "
                                       f"{NNCF_HINT}") from None
    return nncf


def calibration_inputs(onnx_path, sequences: Iterable[Tuple[Sequence[np.ndarray], Sequence[float]]],
                       max_samples: int = 300) -> list:
    """The network inputs of tracking each ``(frames, init_box)`` with the fp32 file (ONNX Runtime)."""
    from ..tracker import LoRATTracker

    tracker = LoRATTracker.from_pretrained(None, weights=onnx_path, backend="onnxruntime")
    samples = []

    def record(z, x, z_feat_mask):
        if len(samples) < max_samples:
            samples.append({"z": z.cpu().numpy().copy(), "x": x.cpu().numpy().copy(),
                            "z_feat_mask": z_feat_mask.cpu().numpy().copy()})

    with tracker.recording_network_inputs(record):
        for frames, init_box in sequences:
            if len(samples) >= max_samples:
                break
            tracker.initialize(frames[0], init_box)
            for frame in frames[1:]:
                tracker.track(frame)
    if not samples:
        raise ConfigError("int8 calibration needs frames: pass at least one sequence of two or more frames "
                          "(frames, init_box)")
    return samples


def quantize_int8(onnx_path, sequences, out, max_samples: int = 300) -> OnnxInfo:
    """Write an int8 copy of the fp32 LoRAT ONNX file ``onnx_path`` to ``out``, calibrated on
    ``sequences`` (an iterable of ``(frames, init_box)``: RGB uint8 frames, 0-based [x, y, w, h])."""
    onnx = import_onnx()
    nncf = import_nncf()
    info = read_onnx(onnx_path)
    if info.precision != "fp32":
        raise ConfigError(f"{onnx_path} is already {info.precision}: calibrate from the fp32 export")
    if info.batch not in (None, 1):
        raise ConfigError(f"{onnx_path} has a fixed batch of {info.batch}: calibrate a batch-1 or "
                          "--dynamic-batch export (the quantised copy keeps its batch)")
    samples = calibration_inputs(onnx_path, sequences, max_samples)
    proto = onnx.load(os.fspath(onnx_path))
    props = {p.key: p.value for p in proto.metadata_props}
    try:
        quantized = nncf.quantize(proto, nncf.Dataset(samples), subset_size=len(samples),
                                  model_type=nncf.ModelType.TRANSFORMER)
    except Exception as e:  # noqa: BLE001  (NNCF reports unsupported graphs with many types)
        raise BackendError(f"NNCF could not quantise {onnx_path} ({type(e).__name__}: {str(e)[:200]})") from None
    props.update(precision="int8", source_digest=props["digest"],
                 calibration=f"{len(samples)} tracker inputs, nncf {nncf.__version__} (transformer preset)")
    props["digest"] = onnx_digest(quantized, props)
    del quantized.metadata_props[:]
    for key, value in props.items():
        quantized.metadata_props.add(key=key, value=value)
    with atomic_path(out) as tmp:
        onnx.save_model(quantized, tmp)
    return read_onnx(out)

