"""LoRAT visual object tracker (ECCV 2024), number-for-number the official inference pipeline."""
from .config import VariantConfig, available_variants, load_config
from .errors import (ConfigError, DatasetLayoutError, InvalidBoxError, InvalidImageError, LoRATError,
                     NotInitializedError, SourceError, SourceNotFoundError, WeightsError, WeightsNotFoundError)
from .segmentation import (BoxToMask, SamCheckpointError, SamCheckpointNotFoundError, SamNotInstalledError,
                           SegmentationError)
from .tracker import FrameSizeWarning, LoRATTracker, MaskFallbackWarning, Prediction, Target
from .weights import build_model, export_merged, inspect_weights

__version__ = "0.1.0"

__all__ = [
    "LoRATTracker", "Prediction", "Target", "FrameSizeWarning", "VariantConfig", "load_config",
    "available_variants", "build_model", "export_merged", "inspect_weights", "LoRATError", "ConfigError",
    "InvalidBoxError", "InvalidImageError", "NotInitializedError", "WeightsError", "WeightsNotFoundError",
    "DatasetLayoutError", "SourceError", "SourceNotFoundError",
    "BoxToMask", "SamCheckpointError", "SamCheckpointNotFoundError", "SamNotInstalledError", "SegmentationError",
    "MaskFallbackWarning",
]
