"""Where the network runs: PyTorch (the default), ONNX Runtime, OpenVINO or TensorRT.

Only the network call changes between backends. Crops, Hann window and box decoding stay the
tracker's own code (``lorat_tracker.tracker``), so every backend gets exactly the same inputs and
its outputs are post-processed identically. A backend network is a callable with the model's
signature, ``network(z, x, z_feat_mask) -> (score_map, boxes)``, taking and returning torch
tensors on the tracker's device (see ``base.Network``).

The input of a non-torch backend is an ONNX file written by ``lorat export --format onnx``
(``onnx_file.export_onnx``), or a merged export, converted to ONNX on first use and cached beside it.

    tracker = LoRATTracker.from_pretrained(None, weights="lorat-B-224.onnx", backend="openvino")
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Optional, Tuple

from ..constants import BACKEND_NAMES, PRECISIONS
from ..errors import BackendError, BackendNotInstalledError
from ..spec import literal


@dataclasses.dataclass(frozen=True)
class BackendSpec:
    name: str
    extra: Optional[str]        # lorat-tracker[extra] installs the runtime
    package: str                # the module a missing runtime fails to import
    devices: Tuple[str, ...]    # torch device types it can run on
    precisions: Tuple[str, ...]  # accepted ``precision=`` values ("auto" = the backend's default)
    auto_precision: str         # what "auto" means for it
    network: Optional[str]      # "module:Class" of its Network (None: the tracker's own torch path)
    install_hint: str = ""      # the project's one install-hint form, spelled out (tests grep for it)


BACKENDS = {
    "torch": BackendSpec("torch", None, "torch", ("cpu", "cuda", "mps"), PRECISIONS, "auto", None),
    "onnxruntime": BackendSpec("onnxruntime", "onnx", "onnxruntime", ("cpu", "cuda"), ("auto", "fp32", "int8"), "fp32",
                               "lorat_tracker.backends.ort:OnnxRuntimeNetwork", 'pip install "lorat-tracker[onnx]"'),
    # OpenVINO's "GPU" is an Intel GPU, which torch does not address: CPU only here.
    "openvino": BackendSpec("openvino", "openvino", "openvino", ("cpu",), ("auto", "fp32", "bf16", "int8"), "fp32",
                            "lorat_tracker.backends.ov:OpenVINONetwork", 'pip install "lorat-tracker[openvino]"'),
    # "auto" = fp16, as the official evaluation runs fp16 autocast on CUDA.
    "tensorrt": BackendSpec("tensorrt", "tensorrt", "tensorrt", ("cuda",), ("auto", "fp16", "fp32"), "fp16",
                            "lorat_tracker.backends.trt:TensorRTNetwork", 'pip install "lorat-tracker[tensorrt]"'),
}
assert tuple(BACKENDS) == BACKEND_NAMES


def backend_spec(name) -> BackendSpec:
    spec = BACKENDS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise BackendError(f"unknown backend {name!r}: use one of {', '.join(BACKENDS)}")
    return spec


def check_backend(name, device, precision: str) -> BackendSpec:
    """Fail fast (before any load) on a backend that cannot run on ``device`` or in ``precision``."""
    spec = backend_spec(name)
    if device.type not in spec.devices:
        if spec.devices == ("cuda",):
            raise BackendError.naming(f"backend {spec.name} runs on CUDA GPUs only, not on {device.type} - pass "
                                      "{device:cuda} on a machine with an NVIDIA GPU, or use {backend:onnxruntime} "
                                      "or {backend:openvino} on the CPU")
        raise BackendError.naming(f"backend {spec.name} cannot run on {device.type}: it runs on "
                                  f"{' or '.join(spec.devices)} - pass {{device:{spec.devices[0]}}} or another backend")
    if precision not in spec.precisions:
        choices = " or ".join(p for p in spec.precisions if p != "auto")
        runs_it = [b.name for b in BACKENDS.values() if precision in b.precisions]
        elsewhere = " or ".join(f"{{backend:{b}}}" for b in runs_it)
        int8 = " (int8: a file from quantize_int8)" if "int8" in (precision, *spec.precisions) else ""
        raise BackendError.naming(f"backend {spec.name} runs precision {choices}, not {literal(repr(precision))} - "
                                  f"pass one of those, or {elsewhere} for {literal(precision)}{int8}")
    return spec


def default_device(name) -> str:
    """The device a backend runs on when none is given: CUDA where it needs or can use it, else the CPU."""
    spec = backend_spec(name)
    if spec.devices == ("cpu",):
        return "cpu"
    import torch

    if torch.cuda.is_available() and (name != "onnxruntime" or _ort_has_cuda()):
        return "cuda"
    return "cpu"  # tensorrt: check_backend then says it needs a GPU


def resolve_backend_device(name, device):
    """The torch device backend ``name`` runs on: ``device`` if given, else ``default_device(name)``."""
    from ..runtime import resolve_device

    return resolve_device(default_device(name) if device is None else device)


def _ort_has_cuda() -> bool:
    try:
        import onnxruntime

        return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    except ImportError:
        return False


def import_runtime(name: str):
    """The runtime package of backend ``name``, or one line naming the extra that installs it."""
    spec = backend_spec(name)
    try:
        return importlib.import_module(spec.package)
    except ImportError as e:
        raise BackendNotInstalledError(f"backend {spec.name} needs the {spec.package} package ({e}) - install "
                                       f"it with: {spec.install_hint}") from None


def load_network(name: str, variant, weights, backbone, device, precision: str):
    """The backend's network for ``weights``: an ONNX file, or a merged export (converted once and cached
    beside it as ``<file>.onnx``), or any other LoRAT weights (exported to a temporary ONNX each time)."""
    from . import onnx_file

    spec = check_backend(name, device, precision)
    import_runtime(name)  # a missing runtime is reported before a (slow) conversion
    if weights is not None and onnx_file.is_onnx_path(weights):
        path = weights
    else:
        path = onnx_file.onnx_for_weights(weights)
        if path is None:  # not a merged export: build in torch and convert, uncached
            from ..weights import build_model

            return network_from_model(name, build_model(variant, weights=weights, backbone=backbone), device,
                                      precision)
    info = onnx_file.read_onnx(path, variant=variant)
    return _network_class(spec)(info, device, precision)


def network_from_model(name: str, model, device, precision: str):
    """A backend network for an in-memory ``LoRATModel`` (exported to a temporary ONNX file)."""
    import os
    import tempfile

    from . import onnx_file

    spec = check_backend(name, device, precision)
    import_runtime(name)
    with tempfile.TemporaryDirectory(prefix="lorat-onnx-") as folder:
        path = os.path.join(folder, "model.onnx")
        onnx_file.export_onnx(model, path, batch=None)
        info = onnx_file.read_onnx(path, variant=model.cfg)
        # Every runtime has read the file (and its weights) into memory once the network is built.
        return _network_class(spec)(info, device, precision)


def _network_class(spec: BackendSpec):
    module, cls = spec.network.split(":")
    return getattr(importlib.import_module(module), cls)
