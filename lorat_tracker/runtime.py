"""Where and how the networks run: device resolution, the precision policy, opt-in CUDA graphs.

Shared by the tracker, training and the SAM mask refiner, so that ``device="cuda:3"`` and
``precision="auto"`` mean one thing everywhere they are accepted.

The precision policy is data (``PRECISION_POLICIES``): for each user of a network, which names it
accepts, what "auto" becomes on each device type, and which (name, device) pairs it refuses and
with what message. Today's table:

==========  ========================  ================================  ==============================
user        names                     "auto"                            refused
==========  ========================  ================================  ==============================
tracker     auto, fp32, fp16, bf16    fp16 autocast on CUDA, else fp32  -
training    auto, fp32, fp16, bf16    fp16 (+ GradScaler) on CUDA,      fp16 off CUDA / MPS
                                      else fp32
sam         fp32, bf16, fp16          (no "auto"; the default is fp32)  fp16 on the CPU
==========  ========================  ================================  ==============================
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import warnings
from typing import Dict, Optional, Tuple

import torch

from .constants import COMPILE_MODES, PRECISIONS, SAM_PRECISIONS
from .errors import ConfigError
from .spec import SpecError

# The dtype each precision name computes in; fp32 is plain float32 (no autocast).
DTYPES: Dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class CompileWarning(UserWarning):
    """``compile`` was asked where it cannot run (no CUDA, capture failed); the tracker runs eagerly."""


class SlowPrecisionWarning(UserWarning):
    """A reduced precision asked on a CPU without its units: it runs emulated, slower than fp32."""


# Measured (benchmarks/speed.py, B-224, 2 threads): torch bf16 matmuls on an AMD Zen 3 (AVX2, no bf16
# units) took about 7x the fp32 time; fp32 is also the exact path.
BF16_EMULATED_COST = 7


def warn_if_precision_is_emulated(dtype, device: torch.device) -> None:
    """``SlowPrecisionWarning`` for bf16 on a CPU without AVX512-BF16 or AMX (torch then emulates it)."""
    if dtype is not torch.bfloat16 or device.type != "cpu":
        return
    from .roofline import has_bf16_units, matrix_isa

    if not has_bf16_units():
        import warnings

        warnings.warn(SlowPrecisionWarning(
            f"precision bf16 on this CPU ({matrix_isa()}, no AVX512-BF16 or AMX units) is emulated: about "
            f"{BF16_EMULATED_COST}x slower than fp32 where measured - use precision fp32 (exact, and faster here)"),
            stacklevel=3)


# ------------------------------------------------------------------------------------------ devices

def resolve_device(device) -> torch.device:
    """``None`` -> the best device here (CUDA, MPS, CPU); a name -> that device, or ConfigError."""
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {device!r}: use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SpecError("device", "{self} asked but CUDA is not available here - use {device:cpu}", str(device))
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device {device!r} does not exist: {torch.cuda.device_count()} GPU(s) visible")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise SpecError("device", "{self} asked but MPS is not available here - use {device:cpu}", str(device))
    return dev


# ---------------------------------------------------------------------------------------- precision

@dataclasses.dataclass(frozen=True)
class DeviceRule:
    """``precision`` is refused on a device type outside ``only_on`` (when given) or inside ``not_on``."""
    precision: str
    message: str                               # may name the device type as {device}
    only_on: Optional[Tuple[str, ...]] = None
    not_on: Tuple[str, ...] = ()

    def refuses(self, device_type: str) -> bool:
        return device_type in self.not_on or (self.only_on is not None and device_type not in self.only_on)


@dataclasses.dataclass(frozen=True)
class PrecisionPolicy:
    """How one user of a network names and picks its precision."""
    names: Tuple[str, ...]          # accepted names, in the order error messages list them
    auto: Dict[str, str]            # device type -> what "auto" is there; "*" = any other type
    unknown: str                    # message for a name not in ``names``: {precision!r}, {names}
    rules: Tuple[DeviceRule, ...] = ()

    def validate(self, precision: str) -> None:
        if precision not in self.names:
            raise ConfigError(self.unknown.format(precision=precision, names=", ".join(self.names)))

    def name(self, precision: str, device_type: str) -> str:
        """The concrete name (fp32 / fp16 / bf16) ``precision`` stands for on ``device_type``."""
        self.validate(precision)
        if precision == "auto":
            return self.auto.get(device_type, self.auto["*"])
        return precision

    def check(self, name: str, device_type: str) -> None:
        """ConfigError when the concrete ``name`` must not run on ``device_type``."""
        for rule in self.rules:
            if rule.precision == name and rule.refuses(device_type):
                raise ConfigError(rule.message.format(device=device_type))


PRECISION_POLICIES: Dict[str, PrecisionPolicy] = {
    # The official evaluation runs fp16 autocast on CUDA; on the CPU plain fp32 is exact and safe.
    "tracker": PrecisionPolicy(
        names=PRECISIONS, auto={"cuda": "fp16", "*": "fp32"},
        unknown="unknown precision {precision!r}: use one of {names}"),
    # The official run trains in fp16 with a GradScaler on CUDA.
    "training": PrecisionPolicy(
        names=PRECISIONS, auto={"cuda": "fp16", "*": "fp32"},
        unknown="unknown precision {precision!r}: use one of {names} (--precision)",
        rules=(DeviceRule("fp16", only_on=("cuda", "mps"),
                          message="fp16 training needs a GPU (its GradScaler and half kernels); on {device} "
                                  "use --precision bf16 or fp32"),)),
    # fp32 reproduces the official masks; measured: the tiny SAM took 100+ s per frame in fp16 on the
    # CPU against 3 s in fp32.
    "sam": PrecisionPolicy(
        names=SAM_PRECISIONS, auto={"*": "fp32"},
        unknown="unknown SAM precision {precision!r}: use one of {names}",
        rules=(DeviceRule("fp16", not_on=("cpu",),
                          message="SAM precision fp16 is for CUDA; torch's CPU fp16 kernels are ~30x slower than "
                                  "fp32 - use fp32 (the official masks) or bf16 on the CPU"),)),
}


def check_precision_name(precision: str, user: str = "tracker") -> None:
    """ConfigError when ``precision`` is not one of ``user``'s names (no device needed)."""
    PRECISION_POLICIES[user].validate(precision)


def precision_name(precision: str, device, user: str = "tracker") -> str:
    """The concrete precision name for ``user`` ("tracker", "training", "sam") on ``device``; checks the
    name only (not whether it may run there: ``check_precision``)."""
    return PRECISION_POLICIES[user].name(precision, torch.device(device).type)


def check_precision(precision: str, device, user: str = "tracker") -> None:
    """ConfigError when ``user``'s policy refuses the concrete ``precision`` on ``device``."""
    PRECISION_POLICIES[user].check(precision, torch.device(device).type)


def resolve_precision(precision: str, device, user: str = "tracker") -> Optional[torch.dtype]:
    """The autocast dtype for ``precision`` on ``device`` (None = plain float32), after every check."""
    name = precision_name(precision, device, user)
    check_precision(name, device, user)
    return None if name == "fp32" else DTYPES[name]


# ------------------------------------------------------------------------------- faster inference

def check_compile_mode(compile) -> None:
    if compile not in COMPILE_MODES:
        raise ConfigError(f"unknown compile mode {compile!r}: use False, True, 'cudagraph', 'inductor' or 'onednn'")


def onednn_linears(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` layers run on oneDNN with their weights prepacked once
    (``torch.utils.mkldnn.MkldnnLinear``), for fp32 on the CPU; the input model is not modified.

    Why: the PyPI torch wheels run an fp32 Linear through MKL, which on AMD CPUs reaches about half
    of what the same CPU's oneDNN does (Zen 4, 2 threads: a 2048 square product 182 GFLOP/s in torch,
    377 in OpenVINO's oneDNN; B-224 forward 478 -> 316 ms). oneDNN sums in another order than MKL:
    outputs differ by ~1e-7, boxes by ~1e-5 px (tested: within fp32 rounding of the default path,
    ``tests/conftest.py``'s ``fp32_box_bound``)."""
    import copy

    from torch.utils.mkldnn import MkldnnLinear

    out = copy.deepcopy(model)
    for module in list(out.modules()):
        for name, child in list(module.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(module, name, MkldnnLinear(child, torch.float32))
    return out


def low_precision_weights(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A copy of ``model`` whose Linear / Conv2d parameters are stored in ``dtype``; all else shared.

    Why: autocast casts every fp32 weight to the low-precision dtype on each call (its cast cache
    lives for one autocast region, i.e. one ``step``), which is ~9% of a CPU bf16 forward of B-224
    and ~170 extra kernels per frame on GPU. Autocast rounds exactly like ``Tensor.to``, so running
    the copy under the same autocast gives bit-identical outputs, faster. Norms, embeddings and the
    head's offsets stay float32 and autocast still decides every op's precision. The input model is
    not modified (another tracker may use it in fp32); its other tensors are shared, not copied.
    """
    memo = {}
    for module in model.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            for p in module.parameters(recurse=False):
                memo[id(p)] = torch.nn.Parameter(p.detach().to(dtype), requires_grad=False)
    for t in itertools.chain(model.parameters(), model.buffers()):
        memo.setdefault(id(t), t)
    return copy.deepcopy(model, memo)


class CudaGraphForward:
    """``model(z, x, mask)`` replayed from one CUDA graph per batch size (opt-in, ``compile=True``).

    At batch 1 a LoRAT forward is a few hundred small kernels, so GPU time is set by launch
    overhead; a graph launches them all at once. Each batch size is captured the first time it is
    seen (after a warm-up on a side stream, as torch.cuda.graphs asks), in its own private memory
    pool, under whatever autocast / inference mode the caller has active (the tracker's). Inputs are
    copied into static buffers; the returned tensors are the graph's static outputs, valid until the
    next call with the same batch size (``step`` reads them at once). Same kernels as eager.
    """

    def __init__(self, model: torch.nn.Module, warmup: int = 2):
        self.model = model
        self.warmup = warmup
        self._graphs = {}
        self._failed = False

    def __call__(self, z: torch.Tensor, x: torch.Tensor, mask: torch.Tensor):
        if self._failed:
            return self.model(z, x, mask)
        key = (tuple(z.shape), tuple(x.shape), tuple(mask.shape), z.dtype, x.dtype)
        entry = self._graphs.get(key)
        if entry is None:
            try:
                entry = self._graphs[key] = self._capture(z, x, mask)
            except Exception as e:  # not capturable here (op, build, device): stay correct; a genuine
                # model error is raised again by the eager call below
                warnings.warn(f"CUDA graph capture failed ({e}); running eagerly", CompileWarning, stacklevel=3)
                self._failed = True
                return self.model(z, x, mask)
        graph, static_in, static_out = entry
        for buf, value in zip(static_in, (z, x, mask)):
            buf.copy_(value)
        graph.replay()
        return static_out

    def _capture(self, z, x, mask):
        static_in = (z.clone(), x.clone(), mask.clone())
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup):  # cuBLAS / cuDNN lazy init must not happen during capture
                self.model(*static_in)
        torch.cuda.current_stream(x.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: CUDA work on other threads (another tracker, a harness) must not break capture.
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            static_out = self.model(*static_in)
        return graph, static_in, static_out
