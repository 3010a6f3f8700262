"""Reference fixtures bundled with the package, and the self-test that replays them."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from .constants import TOLERANCE_PX  # noqa: F401  (re-exported: the selftest's standard, see below)
from .images import read_rgb

DATA_DIR = Path(__file__).resolve().parent / "selftest_data"
# TOLERANCE_PX (constants.py) is the reference fixtures' standard: the official pipeline's own boxes are
# float32 sums whose order depends on the CPU's kernels (measured here: 1.6e-05 px on an AMD EPYC with
# AVX-512, 3.1e-05 px on an Intel Xeon with AMX), so an exact match is not expected; a real pipeline
# difference (a crop off by a pixel, a wrong window) moves boxes by far more than 1e-3 px.


def describe_hardware(device="cpu") -> str:
    """What the deviation was measured on: CPU model and vector extensions (or GPU), torch, threads."""
    import platform

    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        where = f"GPU {torch.cuda.get_device_name(dev)}"
    else:
        name, flags = platform.processor() or platform.machine(), set()
        try:
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
                for line in f:
                    key, _, value = line.partition(":")
                    if key.strip() == "model name" and name in ("", platform.machine(), platform.processor()):
                        name = value.strip()
                    elif key.strip() == "flags":
                        flags = set(value.split())
                        break
        except OSError:
            pass
        # the widest matrix/vector unit, which decides how the kernels block (and sum) a GEMM
        isa = next((label for label, flag in (("AMX", "amx_tile"), ("AVX-512", "avx512f"), ("AVX2", "avx2"))
                    if flag in flags), None)
        where = f"CPU {name}" + (f" ({isa})" if isa else "")
        if dev.type == "mps":
            where = f"Apple MPS on {name}"
    return f"{where}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)"


@dataclasses.dataclass
class ReferenceCase:
    model: str           # tiny-mlp / tiny-swiglu
    geometry: str        # 224 / 378
    sequence: str
    frames: List[Path]
    init_box: List[float]
    boxes: np.ndarray    # (N, 4) expected 0-based xywh
    scores: np.ndarray   # (N,)

    @property
    def variant(self) -> str:
        return f"{self.model}-{self.geometry}"

    @property
    def weights(self) -> Path:
        return DATA_DIR / self.model / "lorat.bin"

    @property
    def backbone(self) -> Path:
        return DATA_DIR / self.model / "backbone.pth"


def reference_cases() -> Iterator[ReferenceCase]:
    golden = json.loads((DATA_DIR / "golden.json").read_text())
    for key, sequences in sorted(golden["models"].items()):
        model, geometry = key.rsplit("-", 1)
        for seq, expected in sorted(sequences.items()):
            folder = DATA_DIR / "sequences" / seq
            init = [float(v) for v in (folder / "init_box.txt").read_text().replace(",", " ").split()]
            yield ReferenceCase(model, geometry, seq, sorted(folder.glob("*.png")), init,
                                np.asarray(expected["boxes"], dtype=np.float64),
                                np.asarray(expected["scores"], dtype=np.float64))


@dataclasses.dataclass
class SelftestReport:
    max_box_deviation: float
    max_score_deviation: float
    frames: int
    per_case: Dict[str, Tuple[float, float]]


def run_case(tracker, case: ReferenceCase) -> Tuple[np.ndarray, np.ndarray]:
    """Track one reference sequence; returns (boxes (N, 4) xywh, scores (N,)) with frame 0 = init."""
    boxes, scores = [np.asarray(case.init_box)], [1.0]
    tracker.initialize(read_rgb(case.frames[0]), case.init_box)
    for f in case.frames[1:]:
        box, score = tracker.track(read_rgb(f))
        boxes.append(box)
        scores.append(score)
    return np.stack(boxes), np.asarray(scores)


def run_selftest(device="cpu", precision="fp32", log: Optional[Callable[[str], None]] = None) -> SelftestReport:
    from .tracker import LoRATTracker

    trackers = {}
    per_case, frames = {}, 0
    for case in reference_cases():
        if case.variant not in trackers:
            trackers[case.variant] = LoRATTracker.from_pretrained(
                case.variant, weights=case.weights, backbone=case.backbone,
                device=device, precision=precision)
        boxes, scores = run_case(trackers[case.variant], case)
        db = float(np.abs(boxes - case.boxes).max())
        ds = float(np.abs(scores - case.scores).max())
        per_case[f"{case.variant}/{case.sequence}"] = (db, ds)
        frames += len(case.frames)
        if log:
            log(f"{case.variant:16s} {case.sequence:12s} {len(case.frames):3d} frames  "
                f"max box deviation {db:.3g} px  max score deviation {ds:.3g}")
    return SelftestReport(max(v[0] for v in per_case.values()), max(v[1] for v in per_case.values()),
                          frames, per_case)

