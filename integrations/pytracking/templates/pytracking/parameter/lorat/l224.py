"""LoRAT-L-224: the released large.bin on the DINOv2 dinov2_vitl14_pretrain.pth.

Set LORAT_WEIGHTS / LORAT_BACKBONE / LORAT_DEVICE / LORAT_PRECISION / LORAT_THREADS (any TrackerSpec
option as LORAT_<OPTION>), or edit the defaults below.
Without a backbone file timm downloads the DINOv2 weights on first use. A merged export made by
`lorat export` needs no backbone; for an export of another variant use the `export` parameter file
(or set LORAT_VARIANT).
"""
from lorat_tracker.integrations.pytracking import params_from_env


def parameters():
    return params_from_env("L-224", weights="large.bin")
