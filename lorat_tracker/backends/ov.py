"""OpenVINO on the CPU: float32 (exact) or bf16 (AMX / AVX512-BF16 CPUs), one compiled model per batch size."""
from __future__ import annotations

from .base import OUTPUT_NAMES, Network, input_shapes, host_inputs, runtime_threads, to_device
from . import import_runtime
from ..errors import BackendError

# OpenVINO's own precision names; "auto" is fp32 because OpenVINO would otherwise pick bf16 by
# itself on CPUs that have it, which changes boxes without the user asking.
# int8 files: the quantised ops run int8 (the QDQ pairs say which), everything else f32.
_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


class OpenVINONetwork(Network):
    name = "openvino"

    def __init__(self, info, device, precision):
        super().__init__(info, device, precision)
        ov = import_runtime("openvino")
        self.core = ov.Core()
        if self.precision == "bf16" and "BF16" not in self.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise BackendError.naming("backend openvino precision bf16 needs a CPU with AMX or AVX512-BF16, which this "
                                      "one lacks - pass {precision:fp32}")
        # read_model copies the weights into memory: the file may go away afterwards (temporary exports).
        self.model = self.core.read_model(info.path)
        self.config = {"INFERENCE_PRECISION_HINT": _HINTS[self.precision], "PERFORMANCE_HINT": "LATENCY",
                       "INFERENCE_NUM_THREADS": runtime_threads()}
        self._compiled = {}
        self._compile(info.batch or 1)  # the usual batch now: a failure shows at construction, not mid-sequence

    def _compile(self, batch: int):
        """A static-shape compilation per batch size (faster than a dynamic one), as torch's CUDA graphs."""
        entry = self._compiled.get(batch)
        if entry is None:
            model = self.model
            if self.info.batch is None:
                model = self.model.clone()
                model.reshape(input_shapes(self.cfg, batch))
            compiled = self.core.compile_model(model, "CPU", self.config)
            entry = self._compiled[batch] = (compiled.create_infer_request(), [compiled.output(n) for n in OUTPUT_NAMES])
        return entry

    def run(self, z, x, z_feat_mask):
        request, outputs = self._compile(z.shape[0])
        result = request.infer(host_inputs(z, x, z_feat_mask))
        return to_device([result[o] for o in outputs], self.device)
