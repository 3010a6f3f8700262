"""Box-to-mask refinement with SAM, exactly as the official LoRAT "segmentify" post-processor.

VOTS scores masks; the official LoRAT turns every box it predicts into a mask with Meta's Segment
Anything (``Segmentify_PostProcessor`` + ``SAM_BoxToMaskPostProcess``), and so does this module::

    refiner = BoxToMask.from_pretrained("sam_vit_h_4b8939.pth", device="cuda")
    masks = refiner(image, [[x, y, w, h], ...])      # one bool (H, W) numpy array per box
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
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .constants import SAM_PRECISIONS
from .cropping import CropParams, clip_box, pixel_aligned_crop, rasterize
from .errors import ConfigError, InvalidBoxError, LoRATError, WeightsError, WeightsNotFoundError

SAM_INPUT_SIZE = 1024      # the crop SAM sees (search_region_size of the segmentify configs)
SAM_LOWRES_SIZE = 256      # SAM's low-resolution mask logits
AREA_FACTOR = 2.0          # context around the box in the crop
MASK_THRESHOLD = 0.0       # logits > 0 are the object
PRECISIONS = SAM_PRECISIONS
ON_FAILURE = ("raise", "box")
INSTALL_HINT = 'pip install "lorat-tracker[sam]"'

# Meta's released SAM image encoders (segment_anything/build_sam.py): embed dim, depth, heads, global blocks.
MODEL_TYPES: Dict[str, Tuple[int, int, int, Tuple[int, ...]]] = {
    "vit_b": (768, 12, 12, (2, 5, 8, 11)),
    "vit_l": (1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": (1280, 32, 16, (7, 15, 23, 31)),
}
CHECKPOINT_NAMES = {"vit_b": "sam_vit_b_01ec64.pth", "vit_l": "sam_vit_l_0b3195.pth", "vit_h": "sam_vit_h_4b8939.pth"}


class SamNotInstalledError(LoRATError, ImportError):
    """Masks were asked for but the ``segment-anything`` package is missing."""


class SamCheckpointError(WeightsError):
    """A SAM checkpoint that is corrupt, not a SAM file, or another SAM size than asked."""


class SamCheckpointNotFoundError(SamCheckpointError, WeightsNotFoundError):
    """A SAM checkpoint path that does not exist."""


class SegmentationError(LoRATError, RuntimeError):
    """SAM produced no usable mask (non-finite logits, out of memory) and ``on_failure='raise'``."""


def import_segment_anything():
    import importlib

    try:
        # Not `import segment_anything.build_sam as m`: the package exports a function named build_sam.
        build_sam = importlib.import_module("segment_anything.build_sam")
    except ImportError as e:
        raise SamNotInstalledError(f"masks need the segment-anything package ({e}) - install it with: "
                                   f"{INSTALL_HINT}") from None
    return build_sam


# ------------------------------------------------------------------------------------ checkpoints

@dataclasses.dataclass(frozen=True)
class SamArchitecture:
    """What ``_build_sam`` needs, read from a checkpoint's image-encoder tensors."""
    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: Tuple[int, ...]

    @property
    def model_type(self) -> Optional[str]:
        """"vit_b" / "vit_l" / "vit_h" for Meta's released sizes, else None."""
        for name, spec in MODEL_TYPES.items():
            if spec == (self.embed_dim, self.depth, self.num_heads, self.global_attn_indexes):
                return name
        return None

    def describe(self) -> str:
        kind = self.model_type
        size = f"ViT-{kind[-1].upper()}" if kind else "a non-standard SAM"
        return f"{size} (image encoder embed dim {self.embed_dim}, depth {self.depth})"


def _normalize_model_type(model_type: Optional[str]) -> Optional[str]:
    if model_type is None:
        return None
    key = str(model_type).strip().lower().replace("-", "_")
    key = {"b": "vit_b", "l": "vit_l", "h": "vit_h", "vitb": "vit_b", "vitl": "vit_l", "vith": "vit_h"}.get(key, key)
    if key not in MODEL_TYPES:
        raise ConfigError(f"unknown SAM model type {model_type!r}: use vit_b, vit_l or vit_h "
                          "(or leave it out: the type is read from the checkpoint)")
    return key


def detect_architecture(state: Dict[str, torch.Tensor], source: str) -> SamArchitecture:
    """The image encoder's size from its tensors (Meta key names)."""
    patch = state.get("image_encoder.patch_embed.proj.weight")
    if patch is None or patch.ndim != 4 or not any(k.startswith("mask_decoder.") for k in state):
        raise SamCheckpointError(f"{source} is not a SAM checkpoint (no image_encoder / mask_decoder tensors) - pass "
                                 f"Meta's file, e.g. {CHECKPOINT_NAMES['vit_h']}")
    embed_dim = int(patch.shape[0])
    blocks = sorted({int(m.group(1)) for k in state for m in [re.match(r"image_encoder\.blocks\.(\d+)\.", k)] if m})
    if not blocks or blocks != list(range(len(blocks))):
        raise SamCheckpointError(f"{source}: the image encoder blocks are missing or not numbered 0..N-1 - the file "
                                 "is incomplete; download it again")
    rel = [state.get(f"image_encoder.blocks.{b}.attn.rel_pos_h") for b in blocks]
    if any(r is None or r.ndim != 2 for r in rel):
        raise SamCheckpointError(f"{source}: image encoder blocks without relative position tensors - not a SAM "
                                 "checkpoint of segment-anything, or incomplete")
    head_dim = int(rel[0].shape[1])
    if head_dim <= 0 or embed_dim % head_dim:
        raise SamCheckpointError(f"{source}: inconsistent head size {head_dim} for embed dim {embed_dim}")
    grid = SAM_INPUT_SIZE // 16
    global_idx = tuple(b for b, r in zip(blocks, rel) if int(r.shape[0]) == 2 * grid - 1)
    return SamArchitecture(embed_dim, len(blocks), embed_dim // head_dim, global_idx)


def read_sam_checkpoint(path) -> Tuple[Dict[str, torch.Tensor], SamArchitecture]:
    """Meta's ``sam_vit_*.pth`` (or a safetensors copy): validated state dict and architecture.

    Read by the project's one weights reader (``torch.load(weights_only=True)`` or safetensors: no
    pickled code runs), which refuses non-float and non-finite tensors: a NaN in a SAM weight would
    only show as empty masks.
    """
    from .weights import read_weights_file

    path = os.fspath(path)
    if not os.path.exists(path):
        raise SamCheckpointNotFoundError(f"SAM checkpoint {path} does not exist - download Meta's file, e.g. "
                                         f"{CHECKPOINT_NAMES['vit_h']}, and pass its path")
    try:
        wf = read_weights_file(path)  # also refuses non-float and non-finite tensors, naming each
    except WeightsError as e:
        raise SamCheckpointError(f"SAM checkpoint: {e}") from None
    state = wf.tensors
    arch = detect_architecture(state, path)
    return state, arch


def build_sam_from_state(state: Dict[str, torch.Tensor], arch: SamArchitecture, source: str) -> torch.nn.Module:
    """Meta's ``Sam`` module of ``arch`` holding exactly ``state`` (float32, CPU), or SamCheckpointError."""
    build_sam = import_segment_anything()
    with torch.device("meta"):  # no random init of hundreds of millions of weights that are replaced anyway
        sam = build_sam._build_sam(arch.embed_dim, arch.depth, arch.num_heads, list(arch.global_attn_indexes),
                                   checkpoint=None)
    expected = sam.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        what = (f"lacks {len(missing)} tensors ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})"
                if missing else f"has unexpected tensors ({', '.join(unexpected[:3])})")
        raise SamCheckpointError(f"{source} {what} of {arch.describe()} - the file is incomplete or not from "
                                 "segment-anything; download it again")
    for k, ref in expected.items():
        if tuple(state[k].shape) != tuple(ref.shape):
            raise SamCheckpointError(f"{source}: tensor {k} has shape {tuple(state[k].shape)}, {arch.describe()} "
                                     f"expects {tuple(ref.shape)} - the file is corrupt")
    sam.load_state_dict({k: v.to(torch.float32).contiguous() for k, v in state.items()}, strict=True, assign=True)
    # pixel_mean / pixel_std are not in the state dict: built on the CPU with the module (see _build_sam).
    leftovers = [n for n, t in list(sam.named_parameters()) + list(sam.named_buffers()) if t.is_meta]
    if leftovers:  # never half-loaded
        raise SamCheckpointError(f"{source}: {len(leftovers)} SAM tensors were not loaded ({leftovers[0]})")
    return sam.eval()


# --------------------------------------------------------------------------------- the geometry

def segmentify_crop_params(box_xyxy) -> Tuple[float, np.ndarray]:
    """Nominal image -> crop scale and translation (siamfc cropping, area factor 2, 1024x1024)."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    w, h = x2 - x1, y2 - y1
    context = (AREA_FACTOR - 1) * (w + h) / 2
    s = math.sqrt(SAM_INPUT_SIZE * SAM_INPUT_SIZE / ((w + context) * (h + context)))
    centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2], dtype=np.float64)
    return s, np.array([SAM_INPUT_SIZE / 2, SAM_INPUT_SIZE / 2], dtype=np.float64) - s * centre


def sam_box_prompt(box_on_crop: np.ndarray) -> torch.Tensor:
    """The box SAM receives: float32, x2/y2 rasterized end-exclusive, all floored, clipped to the crop."""
    b = torch.from_numpy(np.asarray(box_on_crop, dtype=np.float64)).to(torch.float32)
    b[2:] += 1 - 1e-4
    b = torch.floor(b)
    return b.clamp(0, SAM_INPUT_SIZE)  # torchvision.ops.clip_boxes_to_image on a 1024x1024 crop


def warp_mask_to_frame(lowres_mask: torch.Tensor, params: CropParams, size_wh) -> torch.Tensor:
    """The 256x256 bool mask back onto the (H, W) frame: bool, every non-zero bilinear sample is on.

    The official ``apply_siamfc_cropping_subpixel``, op for op in float32 (its linspace grid puts the
    first column at x = 0 and the last at x = W rather than at pixel centres; kept on purpose).
    """
    w, h = size_wh
    device = lowres_mask.device
    ratio = SAM_LOWRES_SIZE / SAM_INPUT_SIZE
    s_m = params.scale.astype(np.float64) * ratio
    t_m = params.translation.astype(np.float64) * ratio
    rs = torch.from_numpy(1.0 / s_m).to(torch.float32).to(device)
    rt = torch.from_numpy(-t_m / s_m).to(torch.float32).to(device)
    x = torch.linspace(0, w / SAM_LOWRES_SIZE, w, device=device)
    y = torch.linspace(0, h / SAM_LOWRES_SIZE, h, device=device)
    gx, gy = torch.meshgrid(x, y, indexing="xy")
    grid = torch.stack((gx, gy), dim=-1).unsqueeze(0)
    grid = grid / rs - (rt / rs) / SAM_LOWRES_SIZE
    grid = grid * 2 - 1
    out = F.grid_sample(lowres_mask.to(torch.float32)[None, None], grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False)
    return out[0, 0].to(torch.bool)


def box_mask(box_xyxy, size_wh) -> np.ndarray:
    """The rasterized box as a filled bool mask (the answer when SAM cannot give one)."""
    w, h = size_wh
    mask = np.zeros((h, w), dtype=bool)
    x1, y1, x2, y2 = clip_box(rasterize([float(v) for v in box_xyxy]), (w, h))
    if x2 > x1 and y2 > y1:
        mask[y1:y2, x1:x2] = True
    return mask


def as_boxes_xyxy(boxes, box_format: str) -> np.ndarray:
    """(N, 4) float64 x1y1x2y2 from user boxes; InvalidBoxError for a non-finite box or one without area."""
    if box_format not in ("xywh", "xyxy"):
        raise ConfigError(f"unknown box_format {box_format!r}: use 'xywh' (0-based x, y, w, h) or 'xyxy'")
    try:
        b = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidBoxError(f"boxes must be numbers, N x 4 ({box_format}), got {boxes!r}") from None
    if b.ndim == 1 and b.size == 4:
        b = b[None]
    if b.ndim != 2 or (b.size and b.shape[1] != 4):
        raise InvalidBoxError(f"boxes must have shape (N, 4) ({box_format}), got {b.shape}")
    b = b.reshape(-1, 4)
    given = b.copy()
    if box_format == "xywh":
        b = np.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], axis=1)
    for k, box in enumerate(b):
        if not np.all(np.isfinite(box)):
            raise InvalidBoxError(f"box {k} {given[k].tolist()} ({box_format}) contains NaN or infinity")
        if not (box[2] > box[0] and box[3] > box[1]):
            raise InvalidBoxError(f"box {k} {given[k].tolist()} ({box_format}) has no area (width or height <= 0) "
                                  "- SAM needs a box with area")
    return b


# ----------------------------------------------------------------------------------- the refiner

def _precision_device(precision: str, device) -> torch.device:
    """Check ``precision`` (a ``PRECISIONS`` name), resolve ``device``, check the pair; the device."""
    from .tracker import resolve_device

    if precision not in PRECISIONS:
        raise ConfigError(f"unknown SAM precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    dev = resolve_device(device)
    _check_precision_device(precision, dev)
    return dev


def _check_precision_device(precision: str, device: torch.device) -> None:
    if precision == "fp16" and device.type == "cpu":
        # Measured: the tiny SAM took 100+ s per frame in fp16 on this CPU against 3 s in fp32.
        raise ConfigError("SAM precision fp16 is for CUDA; torch's CPU fp16 kernels are ~30x slower than fp32 - "
                          "use fp32 (the official masks) or bf16 on the CPU")


class BoxToMask:
    """SAM turning boxes into masks exactly as the official LoRAT pipeline (see the module doc).

    ``precision``: "fp32" is the official "official" path and reproduces its masks; "bf16" / "fp16"
    run the image encoder and mask decoder in that dtype (the idea of the official "fast" path,
    meant for CUDA; the crop, box maths and warp stay float32). The modules of ``sam`` are cast in
    place for bf16 / fp16.
    """

    def __init__(self, sam: torch.nn.Module, device=None, precision: str = "fp32", name: str = "SAM"):
        self.device = _precision_device(precision, device)
        self.precision = precision
        self.dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        self.name = name
        self.architecture = detect_architecture(sam.state_dict(), name)
        self.sam = sam.to(self.device).eval()
        if self.dtype != torch.float32:
            # The prompt encoder stays float32 (its Fourier features would lose the box); its outputs are cast.
            self.sam.image_encoder.to(self.dtype)
            self.sam.mask_decoder.to(self.dtype)
        self.last_failures: List[Tuple[int, str]] = []

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

    def __call__(self, image, boxes, box_format: str = "xywh", on_failure: str = "raise") -> List[np.ndarray]:
        """One bool (H, W) mask per box, all boxes of ``image`` through one image-encoder forward.

        ``boxes``: (N, 4) 0-based ``[x, y, w, h]`` (``box_format="xywh"``) or continuous x1y1x2y2
        (``"xyxy"``, what ``Target.box`` holds), in frame pixels; they may reach outside the frame.
        ``on_failure``: "raise" -> ``SegmentationError`` when SAM gives non-finite logits or runs out
        of memory; "box" -> that box's filled rectangle instead, the reason kept in
        ``last_failures`` as (index, reason).
        """
        from .tracker import as_rgb_image

        if on_failure not in ON_FAILURE:
            raise ConfigError(f"unknown on_failure {on_failure!r}: use 'raise' or 'box'")
        image = as_rgb_image(image)
        xyxy = as_boxes_xyxy(boxes, box_format)
        self.last_failures = []
        if len(xyxy) == 0:
            return []
        h, w = image.shape[:2]
        try:
            masks = self._masks(image, xyxy)
        except (RuntimeError, MemoryError) as e:  # out of memory for the batch: one box at a time
            if on_failure == "raise" or len(xyxy) == 1:
                return self._fail(on_failure, [(k, self._reason(e)) for k in range(len(xyxy))], xyxy, (w, h),
                                  [None] * len(xyxy))
            self._release_memory()
            masks = []
            for k in range(len(xyxy)):
                try:
                    masks.append(self._masks(image, xyxy[k:k + 1])[0])
                except (RuntimeError, MemoryError) as e1:
                    self._release_memory()
                    masks.append(self._reason(e1))
        failures = [(k, m) for k, m in enumerate(masks) if isinstance(m, str)]
        if failures:
            return self._fail(on_failure, failures, xyxy, (w, h), masks)
        return masks

    def _fail(self, on_failure, failures, xyxy, size_wh, masks) -> List[np.ndarray]:
        if on_failure == "raise":
            k, reason = failures[0]
            raise SegmentationError(f"SAM gave no mask for box {k} ({reason}); pass on_failure='box' to get the "
                                    "box as a mask instead")
        self.last_failures = failures
        out = list(masks)
        for k, _ in failures:
            out[k] = box_mask(xyxy[k], size_wh)
        return out

    @staticmethod
    def _reason(e: BaseException) -> str:
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return f"{type(e).__name__}: {text}"[:200]

    def _release_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

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

    def _masks(self, image: np.ndarray, xyxy: np.ndarray) -> list:
        """Masks (numpy bool), or a reason string for a box whose logits are not finite."""
        h, w = image.shape[:2]
        crops, params, prompts = self.prepare(image, xyxy)
        logits = self.lowres_logits(crops, prompts)
        finite = torch.isfinite(logits).flatten(1).all(dim=1).tolist()
        result = []
        for k, p in enumerate(params):
            if not finite[k]:
                result.append("SAM gave NaN or infinite logits")
                continue
            result.append(warp_mask_to_frame(logits[k] > MASK_THRESHOLD, p, (w, h)).cpu().numpy())
        return result

    def __repr__(self) -> str:
        return f"BoxToMask({self.name}, device={self.device}, precision={self.precision})"
