"""pytracking-style LoRAT (``LoRATPytracking``) and the files that plug it into a pytracking checkout.

Use it directly::

    from lorat_tracker.integrations.pytracking import LoRATPytracking
    tracker = LoRATPytracking.from_pretrained("B-224", weights="base.bin", backbone="dinov2_vitb14_pretrain.pth")
    tracker.initialize(rgb, {"init_bbox": [x, y, w, h]})
    out = tracker.track(next_rgb)          # {'target_bbox': [x, y, w, h], 'object_presence_score': s, 'time': t}

or copy ``templates/pytracking/{tracker,parameter}/lorat`` into a visionml/pytracking checkout with
``python -m lorat_tracker.integrations.pytracking /path/to/pytracking`` and run ``python run_tracker.py lorat b224 ...``.
pytracking itself is never imported here (it is not pip-installable; PyPI's ``pytracking`` is another project).
"""
from .install import TEMPLATES, install_templates
from .tracker import (LoRATPytracking, PytrackingSetupError, TrackerParams, clear_network_cache, load_network,
                      lorat_params, params_from_env, spec_of)

__all__ = ["LoRATPytracking", "PytrackingSetupError", "TrackerParams", "lorat_params", "params_from_env", "spec_of", "load_network",
           "clear_network_cache", "install_templates", "TEMPLATES"]
