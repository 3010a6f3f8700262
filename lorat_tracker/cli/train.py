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


TITLES = {"model": "model", "data": "data", "recipe": "recipe (defaults: the official one)", "runtime": "runtime"}


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="fine-tune LoRAT on your own videos (official recipe, resumable, torchrun)",
                       description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    from ..options import add_arguments
    from ..training.config import TrainConfig

    add_arguments(p, TrainConfig, titles=TITLES)
    p.set_defaults(func=run)


def config_from_args(args):
    from ..errors import LoRATError
    from ..options import from_args
    from ..training.config import TrainConfig, absolute_sources

    def path(p):
        return os.path.abspath(p) if p else None

    try:
        data = absolute_sources(args.data)
        val = absolute_sources(args.val)
    except LoRATError as e:
        from ..spec import FLAGS

        raise UsageError(e.render(FLAGS)) from None
    from ..spec import is_hf_folder

    for flag, p in (("--weights", args.weights), ("--backbone", args.backbone)):
        if p and not os.path.exists(p):
            raise UsageError(f"{flag} {p} does not exist")
        if p and os.path.isdir(p) and not is_hf_folder(p):
            raise UsageError(f"{flag} {p} is a directory - pass the file inside it, or a Hugging Face model "
                             "folder (config.json + model.safetensors)")
    from ..io import check_writable

    check_writable(args.out, folder=True)  # a read-only or forbidden --out: now, not after loading the data
    return from_args(TrainConfig, args, out=os.path.abspath(args.out), data=data, val=val,
                     backbone=path(args.backbone), weights=path(args.weights))


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
