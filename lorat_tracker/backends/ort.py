"""ONNX Runtime: the ONNX file on the CPU (or CUDA with onnxruntime-gpu), float32 (or an int8 file as it is)."""
from __future__ import annotations

from .base import OUTPUT_NAMES, Network, host_inputs, runtime_threads, to_device
from . import import_runtime


# Above this, the model stays a file: a protobuf in memory cannot exceed 2 GiB (the g variants).
FUSE_MAX_BYTES = 7 << 28  # 1.75 GiB


def fused_gelu_model(path: str, cfg):
    """The ONNX file's model with every exact GELU (``x * (0.5 * (1 + erf(x / sqrt 2)))``, as torch's
    exporter writes it; ONNX Runtime's own graph optimiser does not match that form) as one
    ``com.microsoft.Gelu`` node, by ONNX Runtime's transformer optimiser with only its GELU fusion on;
    serialized bytes for ``InferenceSession``. The same erf formula in one kernel: outputs within ~1e-7
    of the unfused graph (measured); on B-224, 1.33x of the floor against 1.42x (docs/backends.md). Files over
    ``FUSE_MAX_BYTES`` (weights included) are returned as their path, unchanged."""
    import os

    import onnx
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    folder = os.path.dirname(os.path.abspath(path))
    size = os.path.getsize(path) + sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)
                                       if f.startswith(os.path.basename(path)) and f != os.path.basename(path))
    if size > FUSE_MAX_BYTES:
        return path
    options = FusionOptions("vit")
    for name, value in vars(options).items():
        if name.startswith("enable_") and isinstance(value, bool):
            setattr(options, name, name == "enable_gelu")
    fused = optimizer.optimize_model(onnx.load(path), model_type="vit", num_heads=cfg.backbone.num_heads,
                                     hidden_size=cfg.backbone.embed_dim, opt_level=0,
                                     optimization_options=options).model
    if not any(op.domain == "com.microsoft" for op in fused.opset_import):
        fused.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return fused.SerializeToString()


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
        model = info.path
        if device.type == "cpu" and self.precision == "fp32":
            model = fused_gelu_model(info.path, info.cfg)
        self.session = ort.InferenceSession(model, sess_options=options, providers=providers)

    def run(self, z, x, z_feat_mask):
        return to_device(self.session.run(list(OUTPUT_NAMES), host_inputs(z, x, z_feat_mask)), self.device)
