"""Seconds per object per frame of the SAM box-to-mask refiner (lorat_tracker.segmentation.BoxToMask)
for SAM ViT-B / L / H shapes with random weights, next to the tracker's own time per frame.

Each measurement is one full ``refiner(image, boxes)`` call (crop, one batched image-encoder
forward, prompt encoder + mask decoder per box, warp back), median over ``--repeats`` after
``--warmup`` calls. Low precisions are also compared with fp32 on the same boxes: the share of
mask pixels that differ, in % of the fp32 mask's on-pixels (random weights give logits close to 0
everywhere, so this is pessimistic; ``--fixture`` adds the same comparison for the tiny SAM of
tests/fixtures/segmentify, whose masks are the official ones).

    python benchmarks/sam_speed.py --types vit_b,vit_l,vit_h --precision fp32,bf16 --repeats 1 \
        --json benchmarks/results/sam-cpu.json

On a 2-core CPU ViT-H takes minutes per call: keep --repeats and --warmup small there.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lorat_tracker.segmentation import MODEL_TYPES, BoxToMask  # noqa: E402

import common  # noqa: E402  (benchmarks/common.py, beside this script)


def random_sam(model_type: str, seed: int = 0) -> torch.nn.Module:
    """Meta's SAM module of ``model_type`` with random weights (speed does not depend on the values).

    Built on the meta device and filled directly: the modules' own init of ViT-H's 632 M weights
    would take longer than the measurement."""
    from lorat_tracker.segmentation.sam_shim import build_empty_sam

    embed, depth, heads, global_idx = MODEL_TYPES[model_type]
    with torch.device("meta"):
        sam = build_empty_sam(embed, depth, heads, global_idx)
    sam.to_empty(device="cpu")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in list(sam.named_parameters()) + list(sam.named_buffers()):
            if p.ndim == 1 and name.endswith("weight"):  # LayerNorm scales
                p.fill_(1.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
        sam.pixel_mean.copy_(torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1))
        sam.pixel_std.copy_(torch.tensor([58.395, 57.12, 57.375]).view(-1, 1, 1))
        sam.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix.normal_(generator=g)
    return sam.eval()


def scene(num_objects: int, size_wh=(640, 480), seed: int = 0):
    rng = np.random.default_rng(seed)
    w, h = size_wh
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    boxes = [[rng.uniform(0, w - 120), rng.uniform(0, h - 90), rng.uniform(40, 120), rng.uniform(30, 90)]
             for _ in range(num_objects)]
    return image, np.array(boxes)


def time_calls(fn, warmup: int, repeats: int, device) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def disagreement(masks, reference) -> float:
    """Differing pixels in % of the reference masks' on-pixels (all masks pooled)."""
    diff = sum(int((m != r).sum()) for m, r in zip(masks, reference))
    on = sum(int(r.sum()) for r in reference)
    return 100.0 * diff / max(on, 1)


class TrackerClock:
    """LoRATTracker.track of one target (random weights, fp32), timed next to each refiner call: on a
    shared machine the load drifts, and the ratio of two back-to-back timings cancels most of it."""

    def __init__(self, variant: str, device):
        from speed import build_model, render_sequence

        from lorat_tracker.tracker import LoRATTracker

        args = argparse.Namespace(weights=None, backbone=None, variant=variant, seed=0)
        self.tracker = LoRATTracker(build_model(args), device=device, precision="fp32")
        self.frames, boxes = render_sequence(16)
        self.tracker.initialize(self.frames[0], boxes[0])
        self.device, self.k = device, 0

    def frame(self, calls: int = 3) -> float:
        """Median seconds of ``calls`` tracker frames."""
        def one():
            self.k = self.k % (len(self.frames) - 1) + 1
            self.tracker.track(self.frames[self.k])
        return time_calls(one, 0, calls, self.device)


def fixture_agreement(precision: str, device) -> dict:
    """The tiny SAM of tests/fixtures/segmentify in ``precision`` against the official fp32 masks."""
    import cv2
    from safetensors.numpy import load_file

    sys.path.insert(0, str(ROOT / "tests"))
    import tiny_sam

    fix = tiny_sam.FIXTURE
    boxes = json.loads((fix / "boxes.json").read_text())
    packed = load_file(str(fix / "masks_packed.safetensors"))
    refiner = tiny_sam.refiner(device=device, precision=precision)
    masks, reference = [], []
    for fr in boxes["frames"]:
        image = cv2.cvtColor(cv2.imread(str(fix / fr["file"])), cv2.COLOR_BGR2RGB)
        masks += refiner(image, np.array(fr["boxes_xyxy"]), box_format="xyxy")
        for key in fr["mask_keys"]:
            w = int(packed[key + ".shape"][1])
            reference.append(np.unpackbits(packed[key + ".packed"], axis=-1, count=w).astype(bool))
    per_mask = [disagreement([m], [r]) for m, r in zip(masks, reference)]
    return {"precision": precision, "masks": len(masks), "differing_pct_of_on_pixels": disagreement(masks, reference),
            "worst_mask_pct": max(per_mask), "masks_identical": sum(p == 0 for p in per_mask)}


def sam2_rows(args, image, boxes, device) -> list:
    """SAM 2.1 per size: one frame encode plus a box decode per object (Sam2BoxToMask, fp32)."""
    try:
        from sam2.build_sam import build_sam2
    except ImportError:
        print("sam2 not installed: no SAM 2.1 rows")
        return []
    from lorat_tracker.segmentation import Sam2BoxToMask
    from lorat_tracker.segmentation.sam2 import Sam2Architecture

    rows = []
    for size in args.sam2_sizes.split(","):
        letter = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}[size]
        torch.manual_seed(0)
        model = build_sam2(f"configs/sam2.1/sam2.1_hiera_{letter}.yaml", ckpt_path=None, device="cpu")
        params = sum(p.numel() for p in model.parameters())
        refiner = Sam2BoxToMask(model, device=device, name=f"SAM 2.1 {size}",
                                architecture=Sam2Architecture(size, "2.1", 0, 0))
        call = lambda: refiner(image, boxes, on_failure="box")  # noqa: E731
        for _ in range(args.warmup):
            call()
        t = statistics.median(time_calls(call, 0, 1, device) for _ in range(args.repeats))
        rows.append({"size": size, "params_millions": round(params / 1e6, 1), "seconds_per_frame": t,
                     "objects_per_frame": args.objects})
        print(f"SAM 2.1 {size} ({params / 1e6:.0f} M): {t:.2f} s per frame of {args.objects} object(s)", flush=True)
        refiner = model = None  # freed before the next size is built
    return rows


def main(argv=None) -> int:
    ap = common.parser(__doc__, "precision", "device", "warmup", "repeats", "threads", "json_out", precision="fp32,bf16",
                       warmup=1)
    ap.add_argument("--types", default="vit_b,vit_l,vit_h")
    ap.add_argument("--objects", type=int, default=1, help="objects per frame (one batched encoder forward)")
    ap.add_argument("--tracker-variant", default="B-224", help="time LoRATTracker.track of this variant too ('' = no)")
    ap.add_argument("--sam2-sizes", default="tiny,small,base_plus,large",
                    help="SAM 2.1 sizes to time through Sam2BoxToMask (random weights of the sam2 package's own "
                         "configs; '' = none; skipped when sam2 is not installed)")
    ap.add_argument("--fixture", action="store_true", help="also compare low precisions on the segmentify fixture")
    args = ap.parse_args(argv)
    device = common.apply_runtime(args)
    image, boxes = scene(args.objects)
    out = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                       "torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(device),
                       "load_average_at_start": list(os.getloadavg())},
           "objects_per_frame": args.objects, "warmup": args.warmup, "repeats": args.repeats, "refiner": []}
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} thread(s), {device}, {args.objects} object(s)/frame")
    clock = TrackerClock(args.tracker_variant, device) if args.tracker_variant else None
    if clock:
        clock.frame(1)  # warm-up
        t = clock.frame(5)
        out["tracker"] = {"variant": args.tracker_variant, "precision": "fp32", "seconds_per_frame": t}
        print(f"tracker {args.tracker_variant} fp32: {t:.3f} s/frame")
    for model_type in [t for t in args.types.split(",") if t]:
        t0 = time.perf_counter()
        sam = random_sam(model_type)
        print(f"{model_type}: built in {time.perf_counter() - t0:.1f} s", flush=True)
        reference = None
        for precision in args.precision.split(","):
            import copy

            module = sam if precision == "fp32" else copy.deepcopy(sam)
            refiner = BoxToMask(module, device=device, precision=precision)
            masks = {}

            def call():
                masks["out"] = refiner(image, boxes, on_failure="box")

            for _ in range(args.warmup):
                call()
            times, ratios = [], []
            for _ in range(args.repeats):
                before = clock.frame() if clock else None
                t = time_calls(call, 0, 1, device)
                after = clock.frame() if clock else None
                times.append(t)
                if clock:
                    ratios.append(t / args.objects / ((before + after) / 2))
            t = statistics.median(times)
            row = {"model_type": model_type, "precision": precision, "seconds_per_frame": t,
                   "seconds_per_object_per_frame": t / args.objects}
            if ratios:
                row["object_time_over_tracker_frame"] = statistics.median(ratios)
            if precision == "fp32":
                reference = masks["out"]
            elif reference is not None:
                row["differing_pct_vs_fp32_random_weights"] = disagreement(masks["out"], reference)
            out["refiner"].append(row)
            extra = (f", {row['differing_pct_vs_fp32_random_weights']:.2f} % of mask pixels differ from fp32"
                     if "differing_pct_vs_fp32_random_weights" in row else "")
            if ratios:
                extra += f", {row['object_time_over_tracker_frame']:.1f}x a {args.tracker_variant} tracker frame"
            print(f"{model_type} {precision}: {t / args.objects:.2f} s per object per frame{extra}", flush=True)
            refiner = module = None
        del sam
    out["sam2"] = sam2_rows(args, image, boxes, device) if args.sam2_sizes else []
    if args.fixture:
        out["fixture_agreement"] = [fixture_agreement(p, device) for p in args.precision.split(",")]
        for row in out["fixture_agreement"]:
            print(f"fixture (tiny SAM, {row['masks']} official masks) {row['precision']}: "
                  f"{row['differing_pct_of_on_pixels']:.3f} % of mask pixels differ, worst mask "
                  f"{row['worst_mask_pct']:.2f} %, {row['masks_identical']} identical")
    out["machine"]["load_average_at_end"] = list(os.getloadavg())
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
