"""LoRAT-B-378: the released base-378.bin on the DINOv2 dinov2_vitb14_pretrain.pth.

Edit the paths below, or set LORAT_WEIGHTS / LORAT_BACKBONE / LORAT_DEVICE. Without a backbone file
timm downloads the DINOv2 weights on first use. Or point LORAT_WEIGHTS at a merged export made by
`lorat export` (then no backbone is needed).
"""
import os

from integrations.pytracking import TrackerParams


def parameters():
    params = TrackerParams()
    params.debug = 0
    params.visualization = False
    params.variant = "B-378"
    params.weights = os.environ.get("LORAT_WEIGHTS", "base-378.bin")
    params.backbone = os.environ.get("LORAT_BACKBONE") or None   # e.g. "dinov2_vitb14_pretrain.pth"
    params.device = os.environ.get("LORAT_DEVICE") or None       # None: cuda if available, else cpu
    params.precision = "auto"                                     # fp16 autocast on CUDA, as the official evaluation
    return params
