"""What the benchmarks share: their common options, declared once as fields of ``BenchOptions``.

Each script takes the fields it uses and its own defaults for them::

    ap = common.parser(__doc__, "variant", "device", "threads", "warmup", "json_out", warmup=3)
    ap.add_argument("--frames", ...)      # what only this benchmark has
    args = ap.parse_args(argv)
    device = common.apply_runtime(args)

The model and runtime flags take their spelling from ``TrackerSpec`` (``like=``), so ``--device``
or ``--threads`` reads the same here as in ``lorat track``. Several fields are comma lists here
(``--precision fp32,bf16``): a benchmark compares configurations.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Optional, Union

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lorat_tracker.options import add_arguments, cli_option  # noqa: E402


@dataclasses.dataclass
class BenchOptions:
    variant: str = cli_option("B-224", group="model", like="variant",
                              help="variant (a comma list where the benchmark compares several; default %(default)s)")
    weights: Optional[str] = cli_option(None, group="model", like="weights",
                                        help="real LoRAT weights (default: random weights, fine for speed)")
    backbone: Optional[str] = cli_option(None, group="model", like="backbone",
                                         help="DINOv2 backbone file, with --weights (default: random weights)")
    device: str = cli_option("cpu", group="runtime", like="device", help="cpu (default), cuda, cuda:N or mps")
    precision: str = cli_option("fp32", group="runtime", like="precision", choices=(),
                                help="comma list of fp32, bf16, fp16, auto (default %(default)s)")
    batch_size: str = cli_option("1", group="runtime", metavar="N[,N]",
                                 help="batch size, a comma list (default %(default)s)")
    compile: Union[bool, str] = cli_option(False, group="runtime", like="compile")
    threads: Optional[int] = cli_option(None, group="runtime", like="threads",
                                        help="torch.set_num_threads; every runtime gets the same (default: torch's "
                                             "own, one per core)")
    warmup: int = cli_option(2, group="timing", metavar="N", help="untimed rounds first (default %(default)s)")
    repeats: int = cli_option(1, group="timing", metavar="N", help="timed repeats (default %(default)s)")
    iou_frames: int = cli_option(12, group="timing", metavar="N",
                                 help="synthetic frames for the box agreement with fp32 (0: skip; default %(default)s)")
    seed: int = cli_option(0, group="timing", help="seed of the synthetic sequences (default %(default)s)")
    json_out: Optional[str] = cli_option(None, group="output", flag="--json", metavar="FILE",
                                         help="write the results here")
    progress: bool = cli_option(True, group="output", flag="--no-progress", help="no progress bars on stderr")


def parser(doc: str, *names: str, **defaults) -> argparse.ArgumentParser:
    """An argument parser with the ``BenchOptions`` fields ``names``, ``defaults`` replacing theirs."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    add_arguments(ap, BenchOptions, names=names)
    unknown = set(defaults) - set(names)
    if unknown:
        raise TypeError(f"defaults for options not taken: {sorted(unknown)}")
    ap.set_defaults(**defaults)
    return ap


def apply_runtime(args):
    """``--threads`` applied, and the ``torch.device`` of ``--device``."""
    import torch

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    return torch.device(getattr(args, "device", "cpu"))


def probes(cfg, precisions, device) -> dict:
    """precision -> ``roofline.FloorProbe`` (its ``floor`` measured now; ``sample()`` after each timed
    round pairs the round with the floor of that moment); None off the CPU or without the units."""
    from lorat_tracker import roofline

    if device.type != "cpu":
        return {}
    out = {}
    for p in precisions:
        name = "fp32" if p == "auto" else p
        out[p] = roofline.FloorProbe.of(cfg, name) if name in roofline.LIBRARIES else None
    return out


def paired_floor(probe, frame_ms, floor_ms) -> tuple:
    """(floor ms: the median of the samples, x of the floor: the median of the per-round ratios), or
    (None, None) without a probe."""
    import numpy as np

    from lorat_tracker import roofline

    if probe is None or not floor_ms:
        return None, None
    return float(np.median(floor_ms)), roofline.x_of_floor(frame_ms, floor_ms)


def x_of_floor(x) -> str:
    return f"{x:.2f}x" if x is not None else "-"


def comma_list(text: str, kind=str) -> list:
    return [kind(v.strip()) for v in text.split(",") if v.strip()]
