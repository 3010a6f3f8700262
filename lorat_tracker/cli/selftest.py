"""``lorat selftest``: run the bundled reference fixtures through the public API.

The fixtures are tiny models in the official file formats and the official pipeline's boxes for
them (fp32 on a CPU; see ``lorat_tracker/selftest_data``). Passing means this installation
reproduces the official LoRAT pipeline to within 1e-3 px on this hardware. It is not bit-exact:
float32 sums run in another order on other CPUs' kernels, which moves boxes by ~1e-5 px (measured:
1.6e-05 px on an AMD EPYC with AVX-512, 3.1e-05 px on an Intel Xeon with AMX); a real difference
in the pipeline moves them by far more than the tolerance.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from ..constants import PRECISIONS, TOLERANCE_PX
from ..options import add_arguments, cli_option, from_args
from . import help_text


@dataclasses.dataclass
class SelftestOptions:
    """``lorat selftest``'s options (each field is its flag)."""
    device: str = cli_option("cpu", group="runtime", like="device", help="cpu (default), cuda, cuda:N or mps")
    precision: str = cli_option("fp32", group="runtime", like="precision", choices=PRECISIONS,
                                help="fp32 (default) is the precision the fixtures were made in")
    tolerance: float = cli_option(TOLERANCE_PX, group="check",
                                  help=f"largest allowed box deviation in pixels (default {TOLERANCE_PX:g})")


def add_parser(sub) -> None:
    p = sub.add_parser("selftest", help="check this installation against the official pipeline's outputs",
                       description=help_text(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="example:\n  lorat selftest --device cpu")
    add_arguments(p, SelftestOptions)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..runtime import resolve_device
    from ..selftest import describe_hardware, run_selftest

    args = from_args(SelftestOptions, args)

    print(f"measured on {describe_hardware(resolve_device(args.device))}, precision {args.precision}")
    report = run_selftest(device=args.device, precision=args.precision, log=print)
    worst = report.max_box_deviation
    ok = worst <= args.tolerance
    print(f"largest deviation from the official pipeline: {worst:.3g} px (boxes), "
          f"{report.max_score_deviation:.3g} (scores) over {report.frames} frames - "
          f"{'PASS' if ok else 'FAIL'} (tolerance {args.tolerance:g} px; not bit-exact: float32 summation "
          "order differs between CPUs and GPUs, ~1e-5 px)")
    if not ok:
        print("selftest failed: this installation does not reproduce the official boxes", file=sys.stderr)
    return 0 if ok else 1
