"""lorat bench: which backend and precision to use on this machine, measured in about a minute.

Each backend and precision that can run here (torch fp32, with and without --compile onednn, and bf16;
ONNX Runtime fp32; OpenVINO fp32 / bf16 / int8) tracks the same synthetic sequence with the variant's network: random weights of its size
unless --weights is given (speed does not depend on the values). The table gives ms per frame, "x of
the floor" (the frame's matrix products at this CPU's best GEMM rate in that precision, sampled right
after each timed frame; see docs/benchmarks.md) and the boxes' agreement with torch fp32, then says which to use. bf16 and int8
run only on CPUs with their units (AVX512-BF16 / AMX, VNNI / AMX).
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Optional

from ..options import add_arguments, cli_option, from_args
from . import help_text


@dataclasses.dataclass
class BenchCommandOptions:
    """``lorat bench``'s options (each field is its flag)."""
    variant: str = cli_option("B-224", group="model", like="variant",
                              help="the variant to time (default B-224)")
    weights: Optional[str] = cli_option(None, group="model", like="weights",
                                        help="LoRAT weights to time (default: random weights of the variant)")
    backbone: Optional[str] = cli_option(None, group="model", like="backbone")
    threads: Optional[int] = cli_option(None, group="runtime", like="threads")
    frames: int = cli_option(10, group="timing", metavar="N", help="timed frames per configuration (default 10)")
    backends: Optional[str] = cli_option(None, group="timing", metavar="A,B",
                                         help="only these backends (comma list: torch, onnxruntime, openvino; "
                                              "default: every one installed)")
    json_out: Optional[str] = cli_option(None, group="output", flag="--json", metavar="FILE",
                                         help="also write the report as JSON to FILE")


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="time every backend and precision on this machine and say which to use",
                       description=help_text(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  lorat bench\n  lorat bench --variant L-224 --threads 4 --json bench.json")
    add_arguments(p, BenchCommandOptions)
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    opts = from_args(BenchCommandOptions, args)
    from ..bench import candidates
    from ..spec import TrackerSpec
    from . import UsageError

    only = [b.strip() for b in opts.backends.split(",") if b.strip()] if opts.backends else None
    known = sorted({backend for backend, _, _ in candidates()})
    unknown = [b for b in only or () if b not in known]
    if unknown:
        raise UsageError(f"--backends {opts.backends}: {', '.join(unknown)} is not one of {', '.join(known)}")

    if opts.weights:
        TrackerSpec(variant=opts.variant, weights=opts.weights, backbone=opts.backbone, threads=opts.threads).check()
    else:
        from ..config import load_config

        load_config(opts.variant)  # an unknown variant: one line, before any timing
    import torch

    from ..bench import advice, format_table, load_model, run_bench
    from ..io import atomic_write_text, check_writable

    if opts.json_out:
        check_writable(opts.json_out)  # a read-only or forbidden --json: now, not after a minute of timing
    from ..selftest import describe_hardware
    from . import job_started

    if opts.threads:
        torch.set_num_threads(opts.threads)
    model = load_model(opts.variant, opts.weights, opts.backbone)  # damaged weights: exit 2, before any timing
    print(f"measured on {describe_hardware(torch.device('cpu'))}")
    job_started()
    report = run_bench(model, frames=opts.frames, only=only)
    print()
    print(format_table(report))
    floors = ", ".join(f"{p} {f['ms']:.3g} ms ({f['library']} {f['gflops']:.0f} GFLOP/s)" for p, f in report["floors"].items() if f)
    print(f"floor of a frame ({report['gflop_per_frame']:.1f} GFLOP), at the start; x of the floor pairs each frame "
          f"with the floor sampled right after it: {floors}")
    for line in advice(report):
        print(line)
    if opts.json_out:
        atomic_write_text(opts.json_out, json.dumps(report, indent=2) + "\n")
    return 0
