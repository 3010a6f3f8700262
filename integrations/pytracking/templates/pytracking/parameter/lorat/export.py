"""LoRAT from a merged export made by `lorat export` (any variant: the file carries its own).

Set LORAT_WEIGHTS to the exported .safetensors file (and LORAT_DEVICE / LORAT_PRECISION if needed):
    LORAT_WEIGHTS=/path/to/lorat-L-378.safetensors python run_tracker.py lorat export --dataset_name otb
pytracking keeps results per parameter file (tracking_results/lorat/export/): for another export,
pass --runid N or move the old results away, or it skips every sequence that has a result file.
"""
from lorat_tracker.integrations.pytracking import params_from_env


def parameters():
    return params_from_env(None, weights=None)
