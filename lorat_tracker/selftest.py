"""Reference fixtures bundled with the package, and the self-test that replays them."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from .constants import TOLERANCE_PX
from .video import read_rgb

DATA_DIR = Path(__file__).resolve().parent / "selftest_data"


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

