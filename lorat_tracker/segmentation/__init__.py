"""Box-to-mask refinement with SAM, exactly as the official LoRAT "segmentify" post-processor.

VOTS scores masks; the official LoRAT turns every box it predicts into a mask with Meta's Segment
Anything (``Segmentify_PostProcessor`` + ``SAM_BoxToMaskPostProcess``), and so does this module::

    refiner = BoxToMask.from_pretrained("sam_vit_h_4b8939.pth", device="cuda")
    masks = refiner(image, [[x, y, w, h], ...])      # one bool (H, W) numpy array per box
    results = refiner.refine(image, boxes)           # one MaskResult(mask, fallback) per box
    tracker = LoRATTracker.from_pretrained("B-224", ..., masks=refiner)
    prediction = tracker.track(image)                # prediction.mask: bool (H, W)

Per box (reference: tests/fixtures/segmentify/README.md, reproduced with 0 differing pixels):
crop the frame around the box with area factor 2 to 1024x1024 (the pixel-aligned LoRAT crop, frame
mean as fill), normalise with SAM's pixel mean / std, map the box into the crop and rasterize it,
run SAM (one batched image-encoder forward for all boxes of the frame; prompt encoder and mask
decoder per box, single-mask output), threshold the 256x256 low-resolution logits at 0 and warp
that mask back onto the frame with a bilinear grid sample whose every non-zero value counts. The
mask never feeds back into tracking: the box alone drives the next search region.

``segment-anything`` (the ``sam`` extra) is imported only when a refiner is built. Written by hand
on top of it because no library does this crop / warp pair; the SAM modules are Meta's, unchanged.

Laid out like segment-anything: ``checkpoint`` (reading and checking Meta's files, the encoder
size, building ``Sam``), ``geometry`` (crop, box prompt, mask warp, box mask) and ``refiner``
(``BoxToMask`` and its ``MaskResult``); ``sam2`` holds ``Sam2BoxToMask``, the same interface on Meta's
SAM 2 / 2.1 ``SAM2ImagePredictor`` (``--masks sam2``). The names below are the package's public surface.
"""
from __future__ import annotations

from .checkpoint import (CHECKPOINT_NAMES, INSTALL_HINT, MODEL_TYPES, SamArchitecture, SamCheckpointError,
                         SamCheckpointNotFoundError, SamNotInstalledError, build_sam_from_state, detect_architecture,
                         import_segment_anything, read_sam_checkpoint)
from .geometry import (AREA_FACTOR, MASK_THRESHOLD, SAM_INPUT_SIZE, SAM_LOWRES_SIZE, box_mask, sam_box_prompt,
                       segmentify_crop_params, warp_mask_to_frame)
from .refiner import ON_FAILURE, PRECISIONS, BoxToMask, MaskResult, SegmentationError, mask_results
from .sam2 import SIZES as SAM2_SIZES, Sam2Architecture, Sam2BoxToMask

__all__ = ["BoxToMask", "Sam2BoxToMask", "Sam2Architecture", "SAM2_SIZES", "MaskResult", "mask_results", "SamArchitecture", "SamCheckpointError",
           "SamCheckpointNotFoundError", "SamNotInstalledError", "SegmentationError", "CHECKPOINT_NAMES",
           "INSTALL_HINT", "MODEL_TYPES", "PRECISIONS", "ON_FAILURE", "AREA_FACTOR", "MASK_THRESHOLD",
           "SAM_INPUT_SIZE", "SAM_LOWRES_SIZE", "box_mask", "build_sam_from_state", "detect_architecture",
           "import_segment_anything", "read_sam_checkpoint", "sam_box_prompt", "segmentify_crop_params",
           "warp_mask_to_frame"]
