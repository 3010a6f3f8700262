"""How fast a frame can be on this machine: the GEMM floor of a LoRAT variant.

A frame's network is one ViT pass over the template and search tokens, and almost all of its work
is matrix products. Its floor is

    floor = FLOPs per frame / the machine's best dense-GEMM rate in that precision

with the rate measured here, on this CPU, with the tracker's thread count: a large square matmul
(``square_rate``), which no real layer beats, in every GEMM library installed (torch, ONNX Runtime's
MLAS, OpenVINO's oneDNN) and the best of them taken. They differ by up to 1.8x on one CPU (an AMD
Zen 4, 2 threads: torch's MKL 187 GFLOP/s fp32, OpenVINO 299, ONNX Runtime 333), so a floor from
torch's rate alone would flatter torch. ``shape_rate`` times the model's own products at batch 1
(qkv, proj, fc1, fc2, the two attention products): the gap between the two is what the shapes cost,
before any framework overhead. "x of the floor" in the speed tables is ``ms per frame / floor``.

FLOPs count a multiply-add as 2 and cover the products only (``frame_flops``): qkv, proj, fc1, fc2 and
attention's QK^T and AV per block over template + search tokens, plus the patch embedding and the
head. Softmax, GELU, LayerNorm and the crops are not counted: they are what the floor leaves out.

On a shared host the speed of the same product changes by up to 2x within minutes (measured: ONNX
Runtime's 2048 x 2048 fp32 product at 197 to 453 GFLOP/s on one 2-core Zen 4 VM in one hour), so a
floor measured once and a frame timed a minute later do not compare. ``FloorProbe`` samples the floor
right after each timed frame instead, and "x of the floor" is the median of the per-frame ratios.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Callable, Dict, List, Optional

SQUARE_N = 2048  # 17 GFLOP per fp32 product: ~0.1 s on 2 cores, large enough for every kernel's peak


@dataclasses.dataclass(frozen=True)
class FrameFlops:
    """Multiply-add FLOPs (x2) of one frame, by part, in GFLOP."""
    qkv: float
    proj: float
    fc1: float
    fc2: float
    attention: float
    embed_and_head: float

    @property
    def total(self) -> float:
        return self.qkv + self.proj + self.fc1 + self.fc2 + self.attention + self.embed_and_head


def frame_flops(cfg, batch: int = 1) -> FrameFlops:
    """The products of one frame (or ``batch`` frames) of the variant ``cfg`` (a ``VariantConfig``)."""
    b = cfg.backbone
    d, depth, hidden = b.embed_dim, b.depth, b.ffn_hidden
    nz, nx = cfg.template_grid ** 2, cfg.search_grid ** 2
    n = nz + nx
    fc1_out = 2 * hidden if b.ffn == "swiglu" else hidden  # SwiGLU's fused w12
    g = 1e-9 * batch
    per_block = dict(qkv=2 * n * d * 3 * d, proj=2 * n * d * d, fc1=2 * n * d * fc1_out, fc2=2 * n * hidden * d,
                     attention=2 * 2 * n * n * d)
    embed = 2 * n * (3 * b.patch_size ** 2) * d
    head = 2 * nx * (2 * (2 * d * d) + d * 1 + d * 4)  # two 3-layer MLPs: score (1) and box (4)
    return FrameFlops(**{k: v * depth * g for k, v in per_block.items()}, embed_and_head=(embed + head) * g)


# ------------------------------------------------------------------------------------------ the CPU

@functools.lru_cache(maxsize=None)
def cpu_flags() -> frozenset:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def has_bf16_units() -> bool:
    """AVX512-BF16 or AMX: a CPU whose bf16 GEMMs run faster than fp32 (elsewhere torch emulates them)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def has_int8_units() -> bool:
    """VNNI (AVX-512 or AVX) or AMX int8 dot products."""
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & cpu_flags())


def matrix_isa() -> str:
    """The widest matrix/vector unit, which decides the GEMM rate: AMX, AVX-512 (+BF16), AVX2 or other."""
    flags = cpu_flags()
    if "amx_tile" in flags:
        return "AMX"
    if "avx512f" in flags:
        return "AVX-512" + (" BF16" if "avx512_bf16" in flags else "") + (" VNNI" if "avx512_vnni" in flags else "")
    if "avx2" in flags:
        return "AVX2" + (" VNNI" if "avx_vnni" in flags else "")
    return "other"


# ---------------------------------------------------------------------------------------- the rates

def _best_seconds(fn, seconds: float, min_calls: int = 3) -> float:
    fn()  # warm-up: kernel selection, packing buffers
    best, calls, start = float("inf"), 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
        calls += 1
    return best


def square_rate(precision: str = "fp32", n: int = SQUARE_N, seconds: float = 0.3, library: str = "torch",
                threads: Optional[int] = None) -> Optional[float]:
    """GFLOP/s of an n x n product in ``library``, best of the calls within ``seconds``; None where the
    library is not installed or has no such kernels.

    torch: ``torch.mm`` (fp32 through its BLAS, MKL in the PyPI wheels; bf16 through oneDNN).
    onnxruntime: one ONNX MatMul (MLAS), fp32. openvino: the same MatMul (oneDNN), fp32 or bf16 by its
    precision hint, or int8 as a quantize-dequantize graph around it, as NNCF writes them."""
    run = square_product(precision, n, library, threads)
    return None if run is None else 2 * n ** 3 / _best_seconds(run, seconds) / 1e9


def square_product(precision: str = "fp32", n: int = SQUARE_N, library: str = "torch",
                   threads: Optional[int] = None) -> Optional[Callable[[], object]]:
    """A callable computing one n x n product in ``library`` and ``precision`` (see ``square_rate``), or
    None where the library is not installed or has no such kernels."""
    if library == "torch":
        return _torch_product(precision, n)
    if library == "onnxruntime" and precision == "fp32":
        return _onnx_product(n, threads, "onnxruntime", precision)
    if library == "openvino" and precision in ("fp32", "bf16", "int8"):
        return _onnx_product(n, threads, "openvino", precision)
    return None


LIBRARIES = {"fp32": ("torch", "onnxruntime", "openvino"), "bf16": ("torch", "openvino"), "int8": ("openvino",)}


def _torch_product(precision: str, n: int):
    import torch

    from .runtime import DTYPES

    if precision not in DTYPES:
        return None
    dtype = DTYPES[precision]
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(dtype)
    b = torch.randn(n, n, generator=gen).to(dtype)

    def run():
        with torch.inference_mode():
            return torch.mm(a, b)
    return run


def _gemm_onnx(n: int, int8: bool):
    """An ONNX model y = a @ W (W a constant n x n), or its int8 quantize-dequantize form."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if int8:
        inits = [numpy_helper.from_array(rng.integers(-127, 128, size=(n, n), dtype=np.int8), "w_q"),
                 numpy_helper.from_array(np.array(0.01, np.float32), "w_s"),
                 numpy_helper.from_array(np.array(0, np.int8), "w_z"),
                 numpy_helper.from_array(np.array(0.02, np.float32), "a_s"),
                 numpy_helper.from_array(np.array(0, np.uint8), "a_z")]
        nodes = [helper.make_node("QuantizeLinear", ["a", "a_s", "a_z"], ["a_q"]),
                 helper.make_node("DequantizeLinear", ["a_q", "a_s", "a_z"], ["a_d"]),
                 helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w_d"]),
                 helper.make_node("MatMul", ["a_d", "w_d"], ["y"])]
    else:
        inits = [numpy_helper.from_array(rng.standard_normal((n, n), dtype=np.float32), "w_d")]
        nodes = [helper.make_node("MatMul", ["a", "w_d"], ["y"])]
    graph = helper.make_graph(nodes, "gemm", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _onnx_product(n: int, threads: Optional[int], library: str, precision: str):
    import tempfile

    import numpy as np

    try:
        import onnx

        if library == "openvino":
            import openvino as ov
        else:
            import onnxruntime as ort
    except ImportError:
        return None
    import torch

    threads = threads or torch.get_num_threads()
    a = np.random.default_rng(1).random((n, n), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="lorat-roofline-") as tmp:
        path = f"{tmp}/gemm.onnx"
        onnx.save(_gemm_onnx(n, int8=precision == "int8"), path)
        if library == "openvino":
            core = ov.Core()
            if precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
                return None
            config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                      "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
            request = core.compile_model(core.read_model(path), "CPU", config).create_infer_request()
            return lambda: request.infer({0: a})
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        return lambda: session.run(None, {"a": a})


def shape_rate(cfg, precision: str = "fp32", seconds: float = 0.3) -> Dict[str, float]:
    """GFLOP/s of the model's own products at batch 1, per part and together (``"all"``): each timed as
    the model calls it (``F.linear`` with the weight as stored; attention as batched products per head)."""
    import torch
    import torch.nn.functional as F

    from .runtime import DTYPES

    dtype = DTYPES[precision]
    b = cfg.backbone
    d, hidden, heads = b.embed_dim, b.ffn_hidden, b.num_heads
    n = cfg.template_grid ** 2 + cfg.search_grid ** 2
    fc1_out = 2 * hidden if b.ffn == "swiglu" else hidden
    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=gen).to(dtype)

    x, h = rand(1, n, d), rand(1, n, hidden)
    weights = {"qkv": (x, rand(3 * d, d)), "proj": (x, rand(d, d)), "fc1": (x, rand(fc1_out, d)),
               "fc2": (h, rand(d, hidden))}
    q, k, attn = rand(heads, n, d // heads), rand(heads, d // heads, n), rand(heads, n, n)
    flops = frame_flops(cfg)
    depth = b.depth
    out, total_s, total_flops = {}, 0.0, 0.0
    with torch.inference_mode():
        for part, (inp, w) in weights.items():
            s = _best_seconds(lambda: F.linear(inp, w), seconds / 5)
            out[part] = getattr(flops, part) / depth / s
            total_s, total_flops = total_s + s, total_flops + getattr(flops, part) / depth
        s = _best_seconds(lambda: torch.bmm(q, k), seconds / 10) + _best_seconds(lambda: torch.bmm(attn, q),
                                                                                seconds / 10)  # QK^T, AV
        out["attention"] = flops.attention / depth / s
        total_s, total_flops = total_s + s, total_flops + flops.attention / depth
    out["all"] = total_flops / total_s
    return out


@dataclasses.dataclass(frozen=True)
class Floor:
    """The floor of one variant in one precision on this machine: its FLOPs at the best rate measured."""
    variant: str
    precision: str
    gflop: float            # per frame
    rate: float             # GFLOP/s of the best square product
    library: str            # whose product that was
    rates: Dict[str, float] # every library's square-product rate (GFLOP/s)
    threads: int

    @property
    def ms(self) -> float:
        return self.gflop / self.rate * 1e3

    def times(self, ms_per_frame: float) -> float:
        """``ms_per_frame`` as a multiple of the floor ("x of the floor")."""
        return ms_per_frame / self.ms


_RATES: Dict[tuple, Dict[str, float]] = {}


def rates(precision: str, seconds: float = 0.3, threads: Optional[int] = None) -> Dict[str, float]:
    """Every installed library's square-product rate in ``precision`` (GFLOP/s), measured once per
    process and thread count; empty where this CPU has no such units (bf16: AVX512-BF16 / AMX, int8:
    VNNI / AMX: elsewhere the kernels emulate them, and no floor is claimed)."""
    import torch

    threads = threads or torch.get_num_threads()
    key = (precision, threads)
    if key not in _RATES:
        units = {"bf16": has_bf16_units, "int8": has_int8_units}.get(precision, lambda: True)
        found = {}
        if units():
            for library in LIBRARIES.get(precision, ()):
                rate = square_rate(precision, seconds=seconds, library=library, threads=threads)
                if rate is not None:
                    found[library] = rate
        _RATES[key] = found
    return _RATES[key]


def floor(cfg, precision: str = "fp32", seconds: float = 0.3, threads: Optional[int] = None) -> Optional[Floor]:
    """The ``Floor`` of ``cfg`` (a ``VariantConfig``) in ``precision`` (fp32, bf16, int8): its frame's
    FLOPs at the best of ``rates``; None where no library has such kernels here."""
    import torch

    threads = threads or torch.get_num_threads()
    found = rates(precision, seconds, threads)
    if not found:
        return None
    library = max(found, key=found.get)
    return Floor(cfg.name, precision, frame_flops(cfg).total, found[library], library, dict(found), threads)


class FloorProbe:
    """The floor of ``cfg`` in ``precision`` sampled at the moment: ``sample()`` times the best
    library's square product (best of two calls, ~0.1 s fp32 on 2 cores) and returns the floor in ms
    now. Call it right after each timed frame; ``x_of_floor(frame_ms, floor_ms)`` then pairs them.
    ``None`` from ``FloorProbe.of`` where ``floor`` is None (no such units or library here)."""

    def __init__(self, floor: Floor, n: int = SQUARE_N):
        self.floor, self.n = floor, n
        self._run = square_product(floor.precision, n, floor.library, floor.threads)

    @classmethod
    def of(cls, cfg, precision: str, threads: Optional[int] = None) -> Optional["FloorProbe"]:
        found = floor(cfg, precision, threads=threads)
        return None if found is None else cls(found)

    def sample(self) -> float:
        best = float("inf")
        for _ in range(2):
            t = time.perf_counter()
            self._run()
            best = min(best, time.perf_counter() - t)
        return self.floor.gflop / (2 * self.n ** 3 / best / 1e9) * 1e3


def x_of_floor(frame_ms: List[float], floor_ms: List[float]) -> float:
    """"x of the floor" of frames each timed next to a floor sample: the median of the per-pair ratios."""
    import numpy as np

    return float(np.median(np.asarray(frame_ms, dtype=np.float64) / np.asarray(floor_ms, dtype=np.float64)))
