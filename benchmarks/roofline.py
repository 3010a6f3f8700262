"""The floor of a frame on this machine: each variant's matrix products at the best dense-GEMM rate.

For every precision the CPU has units for (fp32; bf16 with AVX512-BF16 / AMX; int8 with VNNI / AMX),
a 2048 x 2048 product is timed in every GEMM library installed (torch; ONNX Runtime's MLAS and
OpenVINO's oneDNN, which run the project's ONNX backends), with the tracker's thread count, and
the best rate is the floor's. The model's own batch-1 products (qkv, proj, fc1, fc2, attention) are
timed in torch too: the gap between the two rates is what the shapes cost before any framework
overhead. See lorat_tracker/roofline.py for what is counted.

    python benchmarks/roofline.py --variant B-224,L-224 --threads 2 --json roofline.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lorat_tracker import roofline  # noqa: E402
from lorat_tracker.config import load_config  # noqa: E402
from lorat_tracker.io import atomic_write_text  # noqa: E402

import common  # noqa: E402  (benchmarks/common.py, beside this script)


def main(argv=None) -> int:
    ap = common.parser(__doc__, "variant", "threads", "json_out", variant="B-224")
    ap.add_argument("--seconds", type=float, default=1.0, help="timing per rate (default 1)")
    args = ap.parse_args(argv)
    common.apply_runtime(args)
    threads = torch.get_num_threads()
    print(f"CPU {roofline.matrix_isa()}, {threads} threads, torch {torch.__version__}")
    rates = {p: roofline.rates(p, args.seconds, threads) for p in roofline.LIBRARIES}
    for p, found in rates.items():
        text = ", ".join(f"{lib} {r:.0f}" for lib, r in found.items()) or "no units on this CPU: no floor"
        print(f"square {roofline.SQUARE_N} GEMM {p}: {text} GFLOP/s")
    report = {"cpu": roofline.matrix_isa(), "threads": threads, "torch": torch.__version__, "rates": rates,
              "variants": []}
    print(f"\n{'variant':<8} {'GFLOP':>6} {'blocks':>6} {'fp32 ms':>8} {'bf16 ms':>8} {'int8 ms':>8} "
          f"{'torch shapes GFLOP/s':>21}")
    for variant in common.comma_list(args.variant):
        cfg = load_config(variant)
        flops = roofline.frame_flops(cfg)
        floors = {p: roofline.floor(cfg, p, args.seconds, threads) for p in roofline.LIBRARIES}
        shapes = roofline.shape_rate(cfg, "fp32", args.seconds)
        cells = [f"{floors[p].ms:8.1f}" if floors[p] else f"{'-':>8}" for p in ("fp32", "bf16", "int8")]
        print(f"{variant:<8} {flops.total:6.1f} {flops.total - flops.embed_and_head:6.1f} {' '.join(cells)} "
              f"{shapes['all']:21.0f}")
        report["variants"].append({"variant": variant, "gflop": flops.total, "flops": flops.__dict__,
                                   "floor_ms": {p: f.ms if f else None for p, f in floors.items()},
                                   "torch_shape_rates": shapes})
    if args.json_out:
        atomic_write_text(args.json_out, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
