"""LoRAT (ECCV 2024) for pytracking, from the lorat-tracker package (installed in the same environment).

Installed by ``python -m lorat_tracker.integrations.pytracking PYTRACKING_DIR``; parameters are in
``pytracking/parameter/lorat/<param>.py`` (variant, weights, backbone, device, precision).
Images are RGB arrays and boxes 0-based [x, y, w, h] floats, as everywhere in pytracking.
"""
from lorat_tracker.integrations.pytracking import LoRATPytracking


class LoRAT(LoRATPytracking):
    """The tracker class pytracking's ``Tracker('lorat', '<param>')`` builds with ``LoRAT(params)``."""
