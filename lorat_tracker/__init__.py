"""LoRAT visual object tracker (ECCV 2024), number-for-number the official inference pipeline.

The public names below load on first use (PEP 562): ``from lorat_tracker import LoRATTracker`` works as
always, while ``import lorat_tracker`` alone (what ``lorat --help`` and the VOT start-up hook do) does
not import torch or timm.
"""
from __future__ import annotations

__version__ = "0.1.0"


def _map_checkout_integrations() -> None:
    """Make ``lorat_tracker.integrations`` the repository's top-level ``integrations/`` in a checkout.

    A wheel installs that folder as ``lorat_tracker/integrations`` (setup.cfg's ``package_dir``, like
    ``configs/``), so nothing generic named ``integrations`` lands in site-packages. A checkout used
    without installing it (PYTHONPATH, the VOT toolkit's ``paths =``) has no such sub-folder: the name
    is bound here to the top-level folder. Only the package's empty ``__init__`` runs; nothing heavy.
    """
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    top = os.path.join(os.path.dirname(here), "integrations")
    name = __name__ + ".integrations"
    if name in sys.modules or os.path.isdir(os.path.join(here, "integrations")) \
            or not os.path.isfile(os.path.join(top, "vot", "hook.py")):
        return
    from importlib import util

    spec = util.spec_from_file_location(name, os.path.join(top, "__init__.py"), submodule_search_locations=[top])
    module = util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


_map_checkout_integrations()

# public name -> submodule that defines it
_LAZY = {
    "VariantConfig": "config", "available_variants": "config", "load_config": "config",
    "ConfigError": "errors", "DatasetLayoutError": "errors", "InvalidBoxError": "errors",
    "InvalidImageError": "errors", "LoRATError": "errors", "NotInitializedError": "errors",
    "SourceError": "errors", "SourceNotFoundError": "errors", "WeightsError": "errors",
    "WeightsNotFoundError": "errors", "DamagedWeightsError": "errors", "BackendError": "errors", "BackendNotInstalledError": "errors",
    "FrameSizeWarning": "tracker", "LoRATTracker": "tracker", "Prediction": "tracker", "Target": "tracker",
    "build_model": "weights", "export_merged": "weights", "inspect_weights": "weights",
    "MaskFallbackWarning": "tracker",
    "BoxToMask": "segmentation", "SamCheckpointError": "segmentation", "SamCheckpointNotFoundError": "segmentation",
    "SamNotInstalledError": "segmentation", "SegmentationError": "segmentation",
    "TrackerSpec": "spec", "SpecError": "spec",
}

__all__ = [
    "LoRATTracker", "Prediction", "Target", "FrameSizeWarning", "VariantConfig", "load_config",
    "available_variants", "build_model", "export_merged", "inspect_weights", "LoRATError", "ConfigError",
    "InvalidBoxError", "InvalidImageError", "NotInitializedError", "WeightsError", "WeightsNotFoundError",
    "DamagedWeightsError", "DatasetLayoutError", "SourceError", "SourceNotFoundError",
    "BoxToMask", "SamCheckpointError", "SamCheckpointNotFoundError", "SamNotInstalledError", "SegmentationError",
    "MaskFallbackWarning", "TrackerSpec", "SpecError", "BackendError", "BackendNotInstalledError",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (this module runs at every start-up)
if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from .config import VariantConfig, available_variants, load_config
    from .errors import (BackendError, BackendNotInstalledError, ConfigError, DamagedWeightsError, DatasetLayoutError,
                         InvalidBoxError, InvalidImageError, LoRATError, NotInitializedError, SourceError, SourceNotFoundError, WeightsError, WeightsNotFoundError)
    from .segmentation import (BoxToMask, SamCheckpointError, SamCheckpointNotFoundError, SamNotInstalledError,
                               SegmentationError)
    from .tracker import FrameSizeWarning, LoRATTracker, MaskFallbackWarning, Prediction, Target
    from .spec import SpecError, TrackerSpec
    from .weights import build_model, export_merged, inspect_weights
