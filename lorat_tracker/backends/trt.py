"""TensorRT on an NVIDIA GPU: an engine built from the ONNX file (fp16 or fp32), cached beside it.

The engine is specific to the GPU model, the TensorRT version, the precision and the ONNX file, so
its cache name carries all four: ``<file>.onnx.<gpu>-sm<cc>.trt<version>.<precision>.<digest>.engine``.
Building takes minutes for B-224, loading a cached engine seconds. Inputs and outputs stay torch
CUDA tensors (TensorRT reads and writes their memory on torch's current stream): no host copies.

Not measured in this project's CI (no GPU was available where it was written): see docs/backends.md.
"""
from __future__ import annotations

import os
import re

import torch

from . import import_runtime
from .base import INPUT_NAMES, OUTPUT_NAMES, Network, input_shapes
from ..errors import BackendError
from ..io import atomic_path

MAX_BATCH = 32  # the optimisation profile's upper end; larger batches are split (Network.__call__)


def engine_path(info, precision: str, device: torch.device, trt_version: str) -> str:
    props = torch.cuda.get_device_properties(device)
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", props.name).strip("-").lower()
    digest = info.digest.split(":")[-1][:12]
    return f"{info.path}.{gpu}-sm{props.major}{props.minor}.trt{trt_version}.{precision}.{digest}.engine"


class TensorRTNetwork(Network):
    name = "tensorrt"

    def __init__(self, info, device, precision):
        super().__init__(info, device, precision, auto="fp16")
        trt = import_runtime("tensorrt")
        if device.type != "cuda" or not torch.cuda.is_available():
            raise BackendError.naming("backend tensorrt runs on CUDA GPUs only - pass {device:cuda} on a machine "
                                      "with an NVIDIA GPU")
        if self.precision == "int8":
            raise BackendError(f"{info.path} is an NNCF int8 file, which backend tensorrt does not take - pass the "
                               "fp32 export (TensorRT builds its own fp16 engine)")
        self.trt = trt
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.max_batch = None if info.batch else MAX_BATCH
        path = engine_path(info, self.precision, device, trt.__version__)
        data = None
        if os.path.exists(path):
            with open(path, "rb") as f:
                data = f.read()
        self.runtime = trt.Runtime(self.logger)  # must outlive the engine
        engine = self.runtime.deserialize_cuda_engine(data) if data else None
        if engine is None:  # no cache, or one this TensorRT cannot load: build (and cache) it
            data = self._build()
            engine = self.runtime.deserialize_cuda_engine(data)
            try:
                with atomic_path(path) as tmp, open(tmp, "wb") as f:
                    f.write(data)
            except OSError:
                pass  # a read-only folder only costs the next run a rebuild
        if engine is None:
            raise BackendError(f"TensorRT could not load the engine it built from {info.path}")
        self.engine = engine
        self.context = engine.create_execution_context()

    def _build(self) -> bytes:
        trt, info = self.trt, self.info
        builder = trt.Builder(self.logger)
        network = builder.create_network(0)  # explicit batch (the only mode of TensorRT >= 10)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(info.path):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendError(f"TensorRT cannot parse {info.path}: {errors[:300]}")
        config = builder.create_builder_config()
        if self.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        if info.batch is None:
            profile = builder.create_optimization_profile()
            low, best, high = (input_shapes(self.cfg, b) for b in (1, 1, MAX_BATCH))
            for name in INPUT_NAMES:
                profile.set_shape(name, low[name], best[name], high[name])
            config.add_optimization_profile(profile)
        data = builder.build_serialized_network(network, config)
        if data is None:
            raise BackendError(f"TensorRT failed to build an engine from {info.path} (see its log above)")
        return bytes(data)

    def run(self, z, x, z_feat_mask):
        ctx = self.context
        inputs = dict(zip(INPUT_NAMES, (z.float().contiguous(), x.float().contiguous(),
                                        z_feat_mask.long().contiguous())))
        for name, t in inputs.items():
            ctx.set_input_shape(name, tuple(t.shape))
            ctx.set_tensor_address(name, t.data_ptr())
        outputs = []
        for name in OUTPUT_NAMES:
            out = torch.empty(tuple(ctx.get_tensor_shape(name)), dtype=torch.float32, device=self.device)
            ctx.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        stream = torch.cuda.current_stream(self.device)
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise BackendError("TensorRT failed to run the engine (see its log above)")
        return tuple(outputs)
