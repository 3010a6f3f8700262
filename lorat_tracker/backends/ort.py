"""ONNX Runtime: the ONNX file on the CPU (or CUDA with onnxruntime-gpu), float32 (or an int8 file as it is)."""
from __future__ import annotations

from .base import OUTPUT_NAMES, Network, host_inputs, runtime_threads, to_device
from . import import_runtime


class OnnxRuntimeNetwork(Network):
    name = "onnxruntime"

    def __init__(self, info, device, precision):
        super().__init__(info, device, precision)
        ort = import_runtime("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = runtime_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # warnings about unused initializers etc. are not the user's business
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                from ..errors import BackendError

                from ..spec import literal

                raise BackendError.naming(
                    "backend onnxruntime on cuda needs onnxruntime-gpu (this onnxruntime has only "
                    f"{literal(', '.join(ort.get_available_providers()))}) - install onnxruntime-gpu in place of "
                    "onnxruntime, or pass {device:cpu}")
            providers = [("CUDAExecutionProvider", {"device_id": device.index or 0})]
        self.session = ort.InferenceSession(info.path, sess_options=options, providers=providers)

    def run(self, z, x, z_feat_mask):
        return to_device(self.session.run(list(OUTPUT_NAMES), host_inputs(z, x, z_feat_mask)), self.device)
