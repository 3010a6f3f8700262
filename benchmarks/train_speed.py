"""Training throughput: a full ``TrainStep`` next to the bare forward + backward of the same batch,
pairs/s of one data worker, and peak memory.

- **step**: ``TrainStep`` exactly as ``lorat train`` runs it (autocast, grad scaler for fp16, backward,
  unscale, clip 1.0, AdamW step with the official parameter groups, zero_grad).
- **bare**: the same model's forward + loss + backward on the same batch, same autocast, no optimiser
  (what the step costs at the least); step / bare is the overhead of the optimisation around it.
- **data**: one process producing training pairs (``PairDataset``: pair sampling, JPEG decoding,
  crops with jitter, augmentation, labels) from generated 640x480 JPEG sequences; ``lorat train
  --workers N`` runs N of these in parallel, so the loader keeps up when N x data >= step pairs/s.
- **memory**: peak CUDA memory of the step (``torch.cuda.max_memory_allocated``), or on CPU the
  process's peak RSS (``ru_maxrss``, includes Python and torch themselves).

Random weights (no download, speed does not depend on them): the DINOv2 backbone is a randomly
initialised timm ViT of the variant's size written to a temporary file. Step and bare are measured
interleaved, round by round, so load from other processes hits both alike.

    python benchmarks/train_speed.py --variant B-224 --device cpu --precision fp32,bf16 --batch-size 8 \\
        --iterations 3 --warmup 1 --json train_speed.json
"""
from __future__ import annotations

import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lorat_tracker.config import load_config  # noqa: E402
import common  # noqa: E402
from speed import render_sequence  # noqa: E402

TIMM_NAMES = {384: "vit_small_patch14_dinov2", 768: "vit_base_patch14_dinov2", 1024: "vit_large_patch14_dinov2",
              1536: "vit_giant_patch14_dinov2"}


def random_backbone(cfg, folder: str) -> str:
    """A randomly initialised DINOv2 backbone file of the variant's size (timm layout)."""
    import timm

    b = cfg.backbone
    name = TIMM_NAMES.get(b.embed_dim)
    if name is None:  # a test-size variant: its bundled backbone file (random weights already)
        from lorat_tracker.selftest import DATA_DIR

        bundled = DATA_DIR / cfg.name.rsplit("-", 1)[0] / "backbone.pth"
        if bundled.is_file():
            return str(bundled)
        raise SystemExit(f"no random backbone for embed_dim {b.embed_dim}: pass --backbone")
    kwargs = {"img_size": 518, "patch_size": b.patch_size, "embed_dim": b.embed_dim, "depth": b.depth,
              "num_heads": b.num_heads, "init_values": 1e-5}
    if b.ffn == "swiglu":
        kwargs.update(mlp_layer=timm.layers.SwiGLUPacked, act_layer=torch.nn.SiLU, mlp_ratio=2.66667 * 2)
    torch.manual_seed(0)
    vit = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    path = os.path.join(folder, "backbone.pth")
    torch.save(vit.state_dict(), path)
    return path


def write_sequences(root: Path, count: int, frames: int) -> None:
    import cv2

    for i in range(count):
        images, boxes = render_sequence(frames, seed=100 + i)
        d = root / f"seq{i:03d}"
        d.mkdir(parents=True, exist_ok=True)
        for t, image in enumerate(images):
            cv2.imwrite(str(d / f"{t:08d}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        np.savetxt(d / "groundtruth.txt", boxes, fmt="%.1f", delimiter=",")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def data_speed(dataset, pairs: int) -> float:
    """Pairs per second of one process calling ``PairDataset.__getitem__`` (what one worker does)."""
    dataset[0]  # warm caches and imports
    start = time.perf_counter()
    for i in range(1, pairs + 1):
        dataset[i]
    return pairs / (time.perf_counter() - start)


def main(argv=None) -> int:
    ap = common.parser(__doc__, "variant", "backbone", "device", "precision", "batch_size", "warmup", "threads",
                       "json_out", batch_size="8", warmup=1)
    ap.add_argument("--iterations", type=int, default=3, help="timed rounds (each: one step and one bare pass)")
    ap.add_argument("--grad-checkpointing", action="store_true")
    ap.add_argument("--data-pairs", type=int, default=64, help="pairs timed for the data worker (0: skip)")
    args = ap.parse_args(argv)

    from lorat_tracker.datasets import read_source
    from lorat_tracker.training.data import PairDataset
    from lorat_tracker.training.loss import LoRATCriterion
    from lorat_tracker.training.model import build_training_model
    from lorat_tracker.training.optim import TrainStep, build_optimizer

    args.batch_size = int(args.batch_size)
    device = common.apply_runtime(args)
    cfg = load_config(args.variant)
    results = {"variant": cfg.name, "device": str(device), "batch_size": args.batch_size,
               "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
               "torch": torch.__version__, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        data_root = Path(tmp) / "data"
        write_sequences(data_root, count=4, frames=40)
        dataset = PairDataset([read_source("folder", str(data_root))], [1.0], cfg,
                              pairs_per_epoch=max(args.batch_size, args.data_pairs + 1), seed=0)
        dataset.set_epoch(0)
        if args.data_pairs:
            results["data_pairs_per_s"] = data_speed(dataset, args.data_pairs)
            print(f"data: one worker makes {results['data_pairs_per_s']:.1f} pairs/s", flush=True)
        batch = torch.utils.data.default_collate([dataset[i] for i in range(args.batch_size)])
        batch = {k: v.to(device) for k, v in batch.items()}
        backbone = args.backbone or random_backbone(cfg, tmp)

        for precision in args.precision.split(","):
            model = build_training_model(cfg, backbone=backbone, grad_checkpointing=args.grad_checkpointing,
                                         device=device)
            model.train()
            criterion = LoRATCriterion()
            optimizer = build_optimizer(model)
            step = TrainStep(model, criterion, optimizer, precision=precision, device=device)

            def bare():
                with step.autocast():
                    score_map, boxes = model(batch["z"], batch["x"], batch["z_feat_mask"])
                loss, _ = criterion(score_map.float(), boxes.float(), batch["positive_mask"], batch["label_boxes"])
                loss.backward()
                for p in model.parameters():
                    p.grad = None

            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            times = {"step": [], "bare": []}
            for i in range(args.warmup + args.iterations):
                for name, fn in (("step", lambda: step(batch)), ("bare", bare)):
                    sync(device)
                    start = time.perf_counter()
                    fn()
                    sync(device)
                    if i >= args.warmup:
                        times[name].append(time.perf_counter() - start)
            step_s, bare_s = float(np.median(times["step"])), float(np.median(times["bare"]))
            run = {"precision": precision, "step_s": step_s, "bare_s": bare_s,
                   "step_pairs_per_s": args.batch_size / step_s, "bare_pairs_per_s": args.batch_size / bare_s,
                   "step_over_bare": step_s / bare_s,
                   "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}
            if device.type == "cuda":
                run["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
            else:
                run["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
            results["runs"].append(run)
            mem = (f"peak GPU memory {run['peak_memory_gib']:.2f} GiB" if "peak_memory_gib" in run
                   else f"peak RSS {run['peak_rss_gib']:.2f} GiB")
            print(f"{cfg.name} {precision} batch {args.batch_size}: step {run['step_pairs_per_s']:.2f} pairs/s "
                  f"({step_s * 1000:.0f} ms), bare forward+backward {run['bare_pairs_per_s']:.2f} pairs/s "
                  f"({bare_s * 1000:.0f} ms), step/bare {run['step_over_bare']:.3f}, {mem}", flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
