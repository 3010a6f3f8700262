"""Whole-benchmark throughput: sequential loop vs lockstep batches (lorat_tracker.batched), frames/s.

Writes synthetic sequences as JPEG files (so decoding is real work), then tracks them all with
``track_sequential`` (decode on the calling thread, batch 1) and with ``run_batched`` at each batch
size (decode on the prefetch thread), alternating the runs ``--repeats`` times; prints frames/s, the
gain over sequential, and how far each batch size's boxes are from the sequential ones (max px, and
how many sequences differ at all). Bit-identical boxes are expected only where this machine's GEMM
kernels sum batched rows like single ones (it prints which); elsewhere (Intel AMX, GPUs) float32
summation order moves boxes by ~1e-5 px. It exits 1 only beyond ``BATCH_TOLERANCE_PX`` (1e-3 px).

    python benchmarks/batched.py --variant B-224 --precision fp32 --batch-size 8 --sequences 8 --frames 12
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lorat_tracker.batched import (BATCH_TOLERANCE_PX, SequenceJob, blas_rows_match_batch_one,  # noqa: E402
                                   run_batched, track_sequential)
from lorat_tracker.tracker import LoRATTracker  # noqa: E402
import common  # noqa: E402
from speed import build_model, render_sequence  # noqa: E402


def make_jobs(root: Path, count: int, frames: int, seed: int):
    import cv2

    jobs = []
    for i in range(count):
        n = max(2, frames - (i % 3) * max(1, frames // 4))  # different lengths, like a real benchmark
        images, boxes = render_sequence(n, seed=seed + i)
        paths = []
        for t, image in enumerate(images):
            path = root / f"seq{i:03d}" / f"{t:08d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
            paths.append(path)
        jobs.append(SequenceJob(f"seq{i:03d}", paths, boxes[0].tolist()))
    return jobs


def main(argv=None) -> int:
    ap = common.parser(__doc__, "variant", "weights", "backbone", "device", "precision", "batch_size", "threads",
                       "repeats", "seed", "json_out", batch_size="8")
    ap.add_argument("--sequences", type=int, default=8)
    ap.add_argument("--frames", type=int, default=12, help="frames of the longest sequence")
    ap.add_argument("--prefetch", type=int, help="frames decoded ahead (default 2 x batch; 0: no thread)")
    args = ap.parse_args(argv)
    common.apply_runtime(args)
    batches = common.comma_list(args.batch_size, int)
    tracker = LoRATTracker(build_model(args), device=args.device, precision=args.precision)
    with tempfile.TemporaryDirectory() as tmp:
        jobs = make_jobs(Path(tmp), args.sequences, args.frames, args.seed)
        total = sum(len(j) for j in jobs)
        # Warm-up (allocator, oneDNN kernels) at every batch size, untimed.
        warm = [SequenceJob(j.name, j.frames[:2], j.init_box) for j in jobs]
        track_sequential(tracker, warm[0])
        for b in batches:
            run_batched(tracker, warm[:b], batch_size=b)
        timings = {"sequential": []} | {f"batch{b}": [] for b in batches}
        deviation = {f"batch{b}": {"max_px": 0.0, "sequences_differing": set()} for b in batches}
        reference = None
        for _ in range(args.repeats):
            start = time.perf_counter()
            seq = [track_sequential(tracker, job) for job in jobs]
            timings["sequential"].append(time.perf_counter() - start)
            reference = {r.name: r.boxes for r in seq}
            for b in batches:
                start = time.perf_counter()
                results = run_batched(tracker, jobs, batch_size=b, prefetch=args.prefetch)
                timings[f"batch{b}"].append(time.perf_counter() - start)
                dev = deviation[f"batch{b}"]
                for r in results:
                    diff = float(np.abs(r.boxes - reference[r.name]).max())
                    dev["max_px"] = max(dev["max_px"], diff)
                    if diff > 0:
                        dev["sequences_differing"].add(r.name)
    rows = {k: {"seconds": float(np.median(v)), "fps": total / float(np.median(v))} for k, v in timings.items()}
    base = rows["sequential"]["fps"]
    exact = blas_rows_match_batch_one(args.device)
    print(f"{args.variant} {args.precision} on {args.device}, {torch.get_num_threads()} threads: "
          f"{len(jobs)} sequences, {total} frames, median of {args.repeats}; this machine's GEMM kernels "
          f"{'give' if exact else 'do not give'} batched rows bit-identically to batch 1")
    worst = 0.0
    for k, r in rows.items():
        r["gain_vs_sequential"] = r["fps"] / base
        line = f"{k:>12}: {r['seconds']:7.1f} s  {r['fps']:6.2f} frames/s  x{r['gain_vs_sequential']:.2f}"
        if k in deviation:
            dev = deviation[k]
            r["max_box_deviation_px"] = dev["max_px"]
            r["sequences_differing"] = sorted(dev["sequences_differing"])
            worst = max(worst, dev["max_px"])
            line += (f"  boxes vs sequential: max {dev['max_px']:.2g} px in {len(dev['sequences_differing'])} of "
                     f"{len(jobs)} sequences" if dev["max_px"] > 0 else "  boxes identical to sequential")
        print(line)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"args": vars(args), "frames": total, "gemm_rows_exact": exact,
                                                   "runs": rows}, indent=2))
    if worst > BATCH_TOLERANCE_PX:
        print(f"batched boxes differ from the sequential run by {worst:.3g} px, more than float32 summation order "
              f"explains (bound {BATCH_TOLERANCE_PX:g} px): a bug", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
