"""Whole-benchmark throughput: sequential loop vs lockstep batches (lorat_tracker.batched), frames/s.

Writes synthetic sequences as JPEG files (so decoding is real work), then tracks them all with
``track_sequential`` (decode on the calling thread, batch 1) and with ``run_batched`` at each batch
size (decode on the prefetch thread), alternating the runs ``--repeats`` times; checks that every
run's boxes equal the sequential ones and prints frames/s and the gain over sequential.

    python benchmarks/batched.py --variant B-224 --precision fp32 --batch-size 8 --sequences 8 --frames 12
"""
from __future__ import annotations

import argparse
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

from lorat_tracker.batched import SequenceJob, run_batched, track_sequential  # noqa: E402
from lorat_tracker.tracker import LoRATTracker  # noqa: E402
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
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", default="B-224")
    ap.add_argument("--weights")
    ap.add_argument("--backbone")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--batch-size", default="8", help="comma list")
    ap.add_argument("--sequences", type=int, default=8)
    ap.add_argument("--frames", type=int, default=12, help="frames of the longest sequence")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--prefetch", type=int, help="frames decoded ahead (default 2 x batch; 0: no thread)")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batch_size.split(",")]
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
                for r in results:
                    if not np.array_equal(r.boxes, reference[r.name]):
                        raise SystemExit(f"batch {b}: boxes of {r.name} differ from the sequential run")
    rows = {k: {"seconds": float(np.median(v)), "fps": total / float(np.median(v))} for k, v in timings.items()}
    base = rows["sequential"]["fps"]
    print(f"{args.variant} {args.precision} on {args.device}, {torch.get_num_threads()} threads: "
          f"{len(jobs)} sequences, {total} frames, median of {args.repeats}; boxes identical to sequential")
    for k, r in rows.items():
        r["gain_vs_sequential"] = r["fps"] / base
        print(f"{k:>12}: {r['seconds']:7.1f} s  {r['fps']:6.2f} frames/s  x{r['gain_vs_sequential']:.2f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"args": vars(args), "frames": total, "runs": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
