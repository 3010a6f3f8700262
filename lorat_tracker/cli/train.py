"""lorat train: fine-tune LoRAT on your own videos (or train it from DINOv2) with the official recipe.

Trains the LoRA adapters, the head and the token-type embedding of a frozen DINOv2 backbone on
template/search pairs drawn from the --data sources, exactly as the official training does (pair
sampling, crops with jitter, augmentation, labels, IoU-aware BCE + GIoU loss, AdamW with the
official parameter groups, cosine schedule with warm-up, gradient clipping). The defaults are the
official recipe (170 epochs x 131,072 pairs, batch 128); for a small domain set fewer epochs and pairs.

Writes OUT/lorat.bin in the released format (every lorat command and the official code load it),
OUT/checkpoint.pth, OUT/metrics.csv, OUT/curves.png and, with TensorBoard installed, OUT/tensorboard/.
Running the same command again resumes from the last checkpoint; Ctrl-C writes one and exits 130.
Under torchrun every process trains its share of each global batch (the result equals one process
with the same --batch-size).
"""
from __future__ import annotations

import argparse
import os

from ..constants import PRECISIONS
from . import UsageError

DATA_HELP = """data sources (--data KIND=ROOT[:WEIGHT], repeatable; WEIGHT = relative share of the pairs, default 1):
  folder        ROOT/<sequence>/{frames (*.jpg|*.png, in name order), groundtruth.txt (one 0-based x,y,w,h line
                per frame), absence.label (optional: one 0/1 per frame, 1 = target absent)}
  got10k        ROOT/train/list.txt, ROOT/train/GOT-10k_Train_000001/...  (GOT-10k train; as --val: ROOT/val/)
  got10k-vot    the same, restricted to the official 7,086-sequence split that excludes VOT sequences
                (needs the full GOT-10k train list; as --val: the 1,249-sequence remainder)
  lasot         ROOT/<class>/<class>-<n>/{img/, groundtruth.txt, full_occlusion.txt, out_of_view.txt}
  trackingnet   ROOT/TRAIN_0..TRAIN_11/{anno/<seq>.txt, frames/<seq>/0.jpg...}
  coco          ROOT/annotations/instances_train2017.json, ROOT/train2017/*.jpg  (every object a one-frame track;
                as --val: val2017, validation loss only)
"""

EPILOG = DATA_HELP + """
examples:
  lorat train --variant B-224 --backbone dinov2_vitb14_pretrain.pth --weights base.bin \\
      --data folder=data/my_videos --val folder=data/my_val --out runs/my-b224 \\
      --epochs 20 --pairs-per-epoch 8192 --batch-size 32 --lr 2e-5 --warmup-epochs 1 --eval-every 5
  torchrun --nproc_per_node 4 -m lorat_tracker train ...same options...   (several GPUs)

Run the same command again to resume; a finished run says so and exits.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="fine-tune LoRAT on your own videos (official recipe, resumable, torchrun)",
                       description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("model")
    g.add_argument("--variant", metavar="V", required=True,
                   help="model variant: B-224, B-378, L-224, L-378, g-224, g-378 or a variant YAML file")
    g.add_argument("--backbone", metavar="B",
                   help="DINOv2 backbone file (e.g. dinov2_vitb14_pretrain.pth); without it timm downloads it")
    g.add_argument("--weights", metavar="W",
                   help="start from these LoRAT weights (released .bin or a lorat train output: fine-tuning); "
                        "without it LoRA and head start from the official initialisation")
    g.add_argument("--lora-rank", type=int, metavar="R", help="LoRA rank (default: the variant's)")
    g.add_argument("--lora-alpha", type=float, metavar="A", help="LoRA alpha (default: the variant's)")
    g.add_argument("--rslora", action=argparse.BooleanOptionalAction, default=None,
                   help="rank-stabilised LoRA scaling (default: the variant's)")
    g = p.add_argument_group("data")
    g.add_argument("--data", action="append", required=True, metavar="KIND=ROOT[:WEIGHT]",
                   help="a training source (repeatable): folder, got10k, lasot, trackingnet or coco (layouts below)")
    g.add_argument("--val", action="append", default=[], metavar="KIND=ROOT",
                   help="validation sequences (repeatable, optional): folder, got10k (val), got10k-vot or coco "
                        "(val2017); validation loss every epoch and a tracking evaluation (AO, SR) every "
                        "--eval-every epochs")
    g.add_argument("--out", required=True, metavar="DIR", help="run folder: weights, checkpoint, metrics")
    g.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), metavar="N",
                   help="data loading processes per training process (default: min(8, CPU count)); "
                        "does not change what is trained")
    g.add_argument("--max-gap", type=int, default=100, metavar="N",
                   help="largest frame distance between template and search frame (default 100)")
    g.add_argument("--accept-changed-data", action="store_true",
                   help="resume although sequences were added, removed or re-annotated under the same --data / "
                        "--val paths since the run started (refused otherwise, naming what changed)")
    g.add_argument("--val-pairs", type=int, default=4096, metavar="N",
                   help="validation pairs per epoch (default 4096, rounded down to whole batches)")
    g = p.add_argument_group("recipe (defaults: the official one)")
    g.add_argument("--epochs", type=int, default=170, metavar="E", help="default 170")
    g.add_argument("--pairs-per-epoch", type=int, default=131072, metavar="P", help="default 131072")
    g.add_argument("--batch-size", type=int, default=128, metavar="N",
                   help="pairs per optimiser step, over all processes together (default 128)")
    g.add_argument("--lr", type=float, default=1e-4, help="peak learning rate of AdamW (default 1e-4)")
    g.add_argument("--weight-decay", type=float, default=0.1, metavar="WD", help="default 0.1")
    g.add_argument("--min-lr", type=float, default=1e-6, metavar="LR", help="end of the cosine (default 1e-6)")
    g.add_argument("--warmup-lr", type=float, default=1e-7, metavar="LR", help="start of the warm-up (default 1e-7)")
    g.add_argument("--warmup-epochs", type=float, metavar="E",
                   help="linear warm-up (default 2; half the run for --epochs 2 or fewer)")
    g.add_argument("--clip", type=float, default=1.0, metavar="NORM", help="gradient norm clipping (default 1.0)")
    g.add_argument("--grad-accum", type=int, default=1, metavar="K",
                   help="split each batch into K accumulated micro-batches (less memory, same result)")
    g.add_argument("--seed", type=int, default=0, help="seed of the pair sampling and augmentation (default 0)")
    g = p.add_argument_group("runtime")
    g.add_argument("--device", metavar="D", help="cpu, cuda, cuda:N or mps (default: cuda if available, else cpu; "
                                                 "under torchrun cuda:LOCAL_RANK)")
    g.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="auto (default: fp16 autocast + grad scaler on CUDA as the official run, fp32 elsewhere), "
                        "fp32, fp16 or bf16")
    g.add_argument("--grad-checkpointing", action="store_true",
                   help="recompute block activations in the backward pass (less memory, e.g. for g-224)")
    g.add_argument("--eval-every", type=int, default=10, metavar="E",
                   help="tracking evaluation on the --val sequences every E epochs and at the end (default 10)")
    g.add_argument("--checkpoint-every", type=int, default=10, metavar="E",
                   help="keep released-format weights OUT/checkpoints/epoch-NNNN.bin every E epochs (default 10)")
    g.add_argument("--keep-checkpoints", type=int, default=5, metavar="N", help="how many of those to keep (default 5)")
    g.add_argument("--checkpoint-minutes", type=float, default=30.0, metavar="M",
                   help="also write the resume checkpoint every M minutes within an epoch (default 30; 0 = only at "
                        "epoch ends and on Ctrl-C)")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar (logs only)")
    g.add_argument("--log-every", type=int, default=0, metavar="N",
                   help="also print a line every N steps (for logs without a terminal; default 0 = none)")
    p.set_defaults(func=run)


def config_from_args(args):
    from ..errors import LoRATError
    from ..training.config import TrainConfig, absolute_sources

    def path(p):
        return os.path.abspath(p) if p else None

    try:
        data = absolute_sources(args.data)
        val = absolute_sources(args.val)
    except LoRATError as e:
        raise UsageError(str(e)) from None
    from ..spec import is_hf_folder

    for flag, p in (("--weights", args.weights), ("--backbone", args.backbone)):
        if p and not os.path.exists(p):
            raise UsageError(f"{flag} {p} does not exist")
        if p and os.path.isdir(p) and not is_hf_folder(p):
            raise UsageError(f"{flag} {p} is a directory - pass the file inside it, or a Hugging Face model "
                             "folder (config.json + model.safetensors)")
    from ..io import check_writable

    check_writable(args.out, folder=True)  # a read-only or forbidden --out: now, not after loading the data
    return TrainConfig(
        variant=args.variant, out=os.path.abspath(args.out), data=data, val=val, backbone=path(args.backbone),
        weights=path(args.weights), epochs=args.epochs, pairs_per_epoch=args.pairs_per_epoch,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, min_lr=args.min_lr,
        warmup_lr=args.warmup_lr, warmup_epochs=args.warmup_epochs, clip=args.clip, grad_accum=args.grad_accum,
        precision=args.precision, seed=args.seed, max_gap=args.max_gap, val_pairs=args.val_pairs,
        lora_rank=args.lora_rank, lora_alpha=args.lora_alpha, rslora=args.rslora, device=args.device,
        workers=args.workers, eval_every=args.eval_every, checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep_checkpoints, checkpoint_minutes=args.checkpoint_minutes,
        grad_checkpointing=args.grad_checkpointing, progress=args.progress,
        log_every=args.log_every, accept_changed_data=args.accept_changed_data)


def tracking_evaluator(cfg):
    """The tracking evaluation of the --val sequences, given to the trainer: the GOT-10k toolkit's AO and
    success rates (integrations/got10k), or a note at each evaluation when got10k is not installed."""
    from ..training.validation import EvaluatorUnavailable

    if not cfg.val:
        return None
    try:
        from ..integrations.got10k.training import TrackingEvaluator
    except ImportError as e:
        return EvaluatorUnavailable(f"note: tracking evaluation skipped ({e.name} is not installed): "
                                    'pip install "lorat-tracker[got10k]"')
    return TrackingEvaluator(cfg.variant, backbone=cfg.backbone)


def run(args) -> int:
    from ..training.callbacks import TrainerCallback
    from ..training.trainer import train
    from . import job_started

    class JobStarted(TrainerCallback):
        """From the first step on, an error means the run started and failed (exit 1), not a mistake in
        the options or the data (exit 2, found before)."""

        def on_train_begin(self, trainer) -> None:
            job_started()

    cfg = config_from_args(args)
    return train(cfg, evaluator=tracking_evaluator(cfg), callbacks=[JobStarted()])
