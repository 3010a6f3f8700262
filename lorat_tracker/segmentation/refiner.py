"""``BoxToMask``: SAM turning boxes into masks exactly as the official LoRAT pipeline, and its typed
result ``MaskResult`` (SAM's mask, or the filled box and why SAM gave none).
"""
from __future__ import annotations

import dataclasses
import os
from typing import List, Optional, Tuple

import numpy as np
import torch

from ..boxes import as_boxes_xyxy
from ..constants import SAM_PRECISIONS
from ..cropping import pixel_aligned_crop
from ..errors import ConfigError, LoRATError
from ..images import as_rgb_image
from ..runtime import DTYPES, check_precision, check_precision_name, resolve_device, warn_if_precision_is_emulated
from .checkpoint import (CHECKPOINT_NAMES, SamCheckpointError, _normalize_model_type, build_sam_from_state,
                         detect_architecture, import_segment_anything, read_sam_checkpoint)
from .geometry import MASK_THRESHOLD, SAM_INPUT_SIZE, box_mask, sam_box_prompt, segmentify_crop_params, warp_mask_to_frame

PRECISIONS = SAM_PRECISIONS  # runtime.PRECISION_POLICIES["sam"]: fp32 default, fp16 refused on the CPU
ON_FAILURE = ("raise", "box")


class SegmentationError(LoRATError, RuntimeError):
    """SAM produced no usable mask (non-finite logits, out of memory) and ``on_failure='raise'``."""


@dataclasses.dataclass(frozen=True)
class MaskResult:
    """The mask of one box: SAM's (``fallback`` None), or the filled box when SAM gave none (``fallback``
    says why: non-finite logits, out of memory)."""
    mask: np.ndarray                 # bool (H, W), the frame's size
    fallback: Optional[str] = None


def mask_results(refiner, image, boxes, box_format: str = "xywh") -> List[MaskResult]:
    """A refiner's masks of ``boxes`` as ``MaskResult``s, never raising for SAM's own failures.

    A ``BoxToMask`` (anything with its ``refine``) says which masks are fallbacks; any other callable
    refiner ``(image, boxes, box_format=, on_failure="box") -> masks`` is taken at its word.
    """
    refine = getattr(refiner, "refine", None)
    if refine is not None:
        return refine(image, boxes, box_format=box_format)
    return [MaskResult(m) for m in refiner(image, boxes, box_format=box_format, on_failure="box")]


def _precision_device(precision: str, device) -> torch.device:
    """Check ``precision`` (a ``PRECISIONS`` name), resolve ``device``, check the pair; the device."""
    check_precision_name(precision, "sam")
    dev = resolve_device(device)
    _check_precision_device(precision, dev)
    return dev


def _check_precision_device(precision: str, device: torch.device) -> None:
    check_precision(precision, device, "sam")


class _BoxRefiner:
    """What every box-to-mask refiner shares (``BoxToMask``: SAM v1, ``Sam2BoxToMask``: SAM 2): the
    caller-facing ``__call__`` / ``refine`` and the fallbacks. A subclass sets ``device`` and
    ``last_failures`` and gives ``_masks(image, boxes_xyxy) -> List[MaskResult]``."""

    device: torch.device
    last_failures: List[Tuple[int, str]]

    def __call__(self, image, boxes, box_format: str = "xywh", on_failure: str = "raise") -> List[np.ndarray]:
        """One bool (H, W) mask per box, all boxes of ``image`` through one image-encoder forward.

        ``boxes``: (N, 4) 0-based ``[x, y, w, h]`` (``box_format="xywh"``) or continuous x1y1x2y2
        (``"xyxy"``, what ``Target.box`` holds), in frame pixels; they may reach outside the frame.
        ``on_failure``: "raise" -> ``SegmentationError`` when SAM gives non-finite logits or runs out
        of memory; "box" -> that box's filled rectangle instead, the reason kept in
        ``last_failures`` as (index, reason). ``refine`` gives the same as typed ``MaskResult``s.
        """
        if on_failure not in ON_FAILURE:
            raise ConfigError(f"unknown on_failure {on_failure!r}: use 'raise' or 'box'")
        image = as_rgb_image(image)
        xyxy = as_boxes_xyxy(boxes, box_format)
        self.last_failures = []
        results = self._refine(image, xyxy, alone_after_oom=on_failure == "box")
        failures = [(k, r.fallback) for k, r in enumerate(results) if r.fallback is not None]
        if failures and on_failure == "raise":
            k, reason = failures[0]
            raise SegmentationError(f"SAM gave no mask for box {k} ({reason}); pass on_failure='box' to get the "
                                    "box as a mask instead")
        self.last_failures = failures
        return [r.mask for r in results]

    def refine(self, image, boxes, box_format: str = "xywh") -> List[MaskResult]:
        """One ``MaskResult`` per box (boxes as for ``__call__``): SAM's mask, or, where SAM gave none
        (non-finite logits, out of memory even for the box alone), the filled box and the reason."""
        return self._refine(as_rgb_image(image), as_boxes_xyxy(boxes, box_format), alone_after_oom=True)

    def _refine(self, image: np.ndarray, xyxy: np.ndarray, alone_after_oom: bool) -> List[MaskResult]:
        """``alone_after_oom``: when the batch fails, try each box alone (else every box falls back)."""
        if len(xyxy) == 0:
            return []
        h, w = image.shape[:2]

        def fallback(k, e):
            return MaskResult(box_mask(xyxy[k], (w, h)), self._reason(e))

        try:
            return self._masks(image, xyxy)
        except (RuntimeError, MemoryError) as e:  # out of memory for the batch: one box at a time
            if not alone_after_oom or len(xyxy) == 1:
                return [fallback(k, e) for k in range(len(xyxy))]
        self._release_memory()
        results = []
        for k in range(len(xyxy)):
            try:
                results += self._masks(image, xyxy[k:k + 1])
            except (RuntimeError, MemoryError) as e1:
                self._release_memory()
                results.append(fallback(k, e1))
        return results

    @staticmethod
    def _reason(e: BaseException) -> str:
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return f"{type(e).__name__}: {text}"[:200]

    def _release_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _masks(self, image: np.ndarray, xyxy: np.ndarray) -> List[MaskResult]:
        raise NotImplementedError


class BoxToMask(_BoxRefiner):
    """SAM turning boxes into masks exactly as the official LoRAT pipeline (see the module doc).

    ``precision``: "fp32" is the official "official" path and reproduces its masks; "bf16" / "fp16"
    run the image encoder and mask decoder in that dtype (the idea of the official "fast" path,
    meant for CUDA; the crop, box maths and warp stay float32). The modules of ``sam`` are cast in
    place for bf16 / fp16.
    """

    def __init__(self, sam: torch.nn.Module, device=None, precision: str = "fp32", name: str = "SAM"):
        self.device = _precision_device(precision, device)
        warn_if_precision_is_emulated(DTYPES[precision], self.device)  # bf16 on a CPU without its units
        self.precision = precision
        self.dtype = DTYPES[precision]
        self.name = name
        self.architecture = detect_architecture(sam.state_dict(), name)
        self.sam = sam.to(self.device).eval()
        if self.dtype != torch.float32:
            # The prompt encoder stays float32 (its Fourier features would lose the box); its outputs are cast.
            self.sam.image_encoder.to(self.dtype)
            self.sam.mask_decoder.to(self.dtype)
        self.last_failures: List[Tuple[int, str]] = []  # (box index, reason) of the last __call__

    @classmethod
    def from_pretrained(cls, checkpoint, model_type: Optional[str] = None, device=None,
                        precision: str = "fp32") -> "BoxToMask":
        """Load Meta's ``sam_vit_{b,l,h}_*.pth``; the size is read from the file.

        ``model_type`` ("vit_b", "vit_l", "vit_h"), if given, must match the file, else
        ``SamCheckpointError``. Everything is checked before anything is built.
        """
        asked = _normalize_model_type(model_type)
        dev = _precision_device(precision, device)
        import_segment_anything()  # a missing package is reported before the (slow) read
        state, arch = read_sam_checkpoint(checkpoint)
        if asked is not None and arch.model_type != asked:
            raise SamCheckpointError(f"SAM checkpoint {os.fspath(checkpoint)} is {arch.describe()}, but "
                                     f"{asked} was asked - pass the {CHECKPOINT_NAMES[asked]} file, or ask for "
                                     f"{arch.model_type or 'no particular type'}")
        sam = build_sam_from_state(state, arch, os.fspath(checkpoint))
        del state
        name = f"SAM {arch.model_type or 'custom'} ({os.path.basename(os.fspath(checkpoint))})"
        return cls(sam, device=dev, precision=precision, name=name)

    @property
    def model_type(self) -> Optional[str]:
        """"vit_b", "vit_l", "vit_h", or None for another SAM size (such as the tests' tiny one)."""
        return self.architecture.model_type

    # ---------------------------------------------------------------------------------------- use

    def prepare(self, image: np.ndarray, boxes_xyxy: np.ndarray):
        """Crops (N, 3, 1024, 1024) float32 0..255, their effective params and the SAM box prompts (N, 4)."""
        img = torch.from_numpy(image).permute(2, 0, 1)
        fill = torch.mean(img.to(torch.float32), dim=(-2, -1)).to(self.device)  # the official frame mean
        n = len(boxes_xyxy)
        crops = torch.empty(n, 3, SAM_INPUT_SIZE, SAM_INPUT_SIZE, dtype=torch.float32, device=self.device)
        params, prompts = [], []
        for k, box in enumerate(boxes_xyxy):
            s, t = segmentify_crop_params(box)
            _, p = pixel_aligned_crop(image, s, t, (SAM_INPUT_SIZE, SAM_INPUT_SIZE), fill, out=crops[k])
            params.append(p)
            prompts.append(sam_box_prompt(p.image_to_crop(box)))
        return crops, params, torch.stack(prompts).to(self.device)

    @torch.inference_mode()
    def lowres_logits(self, crops: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        """SAM's (N, 256, 256) low-resolution logits of mask token 0 (single-mask output)."""
        sam = self.sam
        x = ((crops - sam.pixel_mean) / sam.pixel_std).to(self.dtype)
        embeddings = sam.image_encoder(x)
        dense_pe = sam.prompt_encoder.get_dense_pe().to(self.dtype)
        out = []
        for k in range(len(prompts)):
            sparse, dense = sam.prompt_encoder(points=None, boxes=prompts[k:k + 1], masks=None)
            low_res, _iou = sam.mask_decoder(image_embeddings=embeddings[k:k + 1], image_pe=dense_pe,
                                             sparse_prompt_embeddings=sparse.to(self.dtype),
                                             dense_prompt_embeddings=dense.to(self.dtype), multimask_output=False)
            out.append(low_res[0, 0])
        return torch.stack(out)

    def _masks(self, image: np.ndarray, xyxy: np.ndarray) -> List[MaskResult]:
        """SAM's masks; the filled box for a box whose logits are not finite."""
        h, w = image.shape[:2]
        crops, params, prompts = self.prepare(image, xyxy)
        logits = self.lowres_logits(crops, prompts)
        finite = torch.isfinite(logits).flatten(1).all(dim=1).tolist()
        return [MaskResult(warp_mask_to_frame(logits[k] > MASK_THRESHOLD, p, (w, h)).cpu().numpy()) if finite[k]
                else MaskResult(box_mask(xyxy[k], (w, h)), "SAM gave NaN or infinite logits")
                for k, p in enumerate(params)]

    def __repr__(self) -> str:
        return f"BoxToMask({self.name}, device={self.device}, precision={self.precision})"
