"""SAM 2 / SAM 2.1 masks of LoRAT's boxes through Meta's ``sam2`` package: ``Sam2BoxToMask``.

Per frame, Meta's own ``SAM2ImagePredictor`` (public API) runs once over the whole frame
(``set_image``: one image-encoder forward for all objects of the frame), then its ``predict(box=...)``
once per box, single-mask output with the package's own post-processing settings (``build_sam2``'s
defaults: a single mask that is not stable falls back to the best of the multi-mask outputs). The
box is clipped to the frame first (a LoRAT box may reach outside it; SAM 2 was trained on boxes
inside the image). The mask is ``predict``'s, pixel for pixel: the logits it returns thresholded at
its ``mask_threshold``, the same comparison ``predict`` makes without ``return_logits``.

Unlike the official SAM v1 ``segmentify`` (a 2x crop around each box, one encoder forward per box),
the whole frame is encoded once: what SAM 2's predictor does, and with several objects far cheaper.
A crop per box could give finer masks of small objects; comparing the two needs the released
weights and VOTS ground truth, which this machine does not have, so it is not claimed either way.

Checkpoints: Meta's ``sam2.1_hiera_{tiny,small,base_plus,large}.pt`` (and SAM 2.0's
``sam2_hiera_*.pt``), ``{"model": state_dict}``, read by the project's weights reader (no pickled code
runs, every tensor float and finite). The size and version are read from the tensors; the model is
built from the package's own config of that size (``build_sam2``) and loaded strictly.

Install: ``sam2`` 1.1.0 is a source package that builds a CUDA extension by default; on a machine
without CUDA: ``SAM2_BUILD_CUDA=0 pip install --no-build-isolation "lorat-tracker[sam2]"``. The
extension only fills small holes in masks, which the image predictor does not do by default.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import warnings
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from ..constants import SAM2_SIZES
from ..errors import ConfigError, WeightsError
from ..runtime import DTYPES, warn_if_precision_is_emulated
from .checkpoint import SamCheckpointError, SamCheckpointNotFoundError, SamNotInstalledError, check_state_matches
from .geometry import box_mask
from .refiner import MaskResult, _BoxRefiner, _precision_device

INSTALL_HINT = 'SAM2_BUILD_CUDA=0 pip install --no-build-isolation "lorat-tracker[sam2]"'
SIZES = SAM2_SIZES
# Hiera trunk of each size (sam2/configs/sam2.1/sam2.1_hiera_*.yaml): embed dim and number of blocks.
HIERA: Dict[str, Tuple[int, int]] = {"tiny": (96, 12), "small": (96, 16), "base_plus": (112, 24), "large": (144, 48)}
_CONFIG_LETTER = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}
CHECKPOINT_NAMES = {size: f"sam2.1_hiera_{size}.pt" for size in SIZES}
_ALIASES = {"t": "tiny", "s": "small", "b+": "base_plus", "b_plus": "base_plus", "base+": "base_plus",
            "baseplus": "base_plus", "l": "large"}


def normalize_size(size: Optional[str]) -> Optional[str]:
    """"tiny" / "small" / "base_plus" / "large" (also "t", "b+", "hiera_l", ...), None for None."""
    if size is None:
        return None
    key = str(size).strip().lower().replace("-", "_")
    key = re.sub(r"^(sam2(\.1)?_)?hiera_", "", key)
    key = _ALIASES.get(key, key)
    if key not in HIERA:
        raise ConfigError(f"unknown SAM 2 size {size!r}: use {', '.join(SIZES)} "
                          "(or leave it out: the size is read from the checkpoint)")
    return key


def import_sam2():
    """Meta's ``sam2`` package: its ``build_sam2`` and ``SAM2ImagePredictor`` (public API only)."""
    try:
        from sam2.build_sam import build_sam2
        from sam2.sam2_image_predictor import SAM2ImagePredictor
    except ImportError as e:
        raise SamNotInstalledError(f"--masks sam2 needs Meta's sam2 package ({e}) - install it with: "
                                   f"{INSTALL_HINT}") from None
    return build_sam2, SAM2ImagePredictor


@dataclasses.dataclass(frozen=True)
class Sam2Architecture:
    """A SAM 2 checkpoint's size and version, read from its tensors."""
    size: Optional[str]      # one of SIZES, None for a non-standard trunk
    version: str             # "2.1" or "2"
    embed_dim: int
    blocks: int

    @property
    def model_type(self) -> Optional[str]:
        return self.size

    @property
    def config(self) -> str:
        """The package's config of this size and version (``build_sam2``'s ``config_file``)."""
        letter = _CONFIG_LETTER[self.size]
        return (f"configs/sam2.1/sam2.1_hiera_{letter}.yaml" if self.version == "2.1"
                else f"configs/sam2/sam2_hiera_{letter}.yaml")

    def describe(self) -> str:
        size = f"SAM {self.version} hiera {self.size}" if self.size else f"a non-standard SAM {self.version}"
        return f"{size} (trunk embed dim {self.embed_dim}, {self.blocks} blocks)"


def detect_sam2_architecture(state: Dict[str, torch.Tensor], source: str) -> Sam2Architecture:
    """The Hiera trunk's size from its tensors (Meta's key names); a SAM v1 file is named as such."""
    patch = state.get("image_encoder.trunk.patch_embed.proj.weight")
    if patch is None or patch.ndim != 4 or not any(k.startswith("sam_mask_decoder.") for k in state):
        if "image_encoder.patch_embed.proj.weight" in state:
            from ..spec import literal

            raise SamCheckpointError.naming(f"{literal(source)} is a SAM (v1) checkpoint, not SAM 2 - use {{masks:sam}} "
                                            f"for it, or pass a SAM 2.1 file ({', '.join(CHECKPOINT_NAMES.values())})")
        raise SamCheckpointError(f"{source} is not a SAM 2 checkpoint (no image_encoder.trunk / sam_mask_decoder "
                                 f"tensors) - pass Meta's file, e.g. {CHECKPOINT_NAMES['tiny']}")
    blocks = sorted({int(m.group(1)) for k in state
                     for m in [re.match(r"image_encoder\.trunk\.blocks\.(\d+)\.", k)] if m})
    if not blocks or blocks != list(range(len(blocks))):
        raise SamCheckpointError(f"{source}: the image encoder blocks are missing or not numbered 0..N-1 - the file "
                                 "is incomplete; download it again")
    embed_dim = int(patch.shape[0])
    size = next((s for s, shape in HIERA.items() if shape == (embed_dim, len(blocks))), None)
    version = "2.1" if "no_obj_embed_spatial" in state else "2"
    arch = Sam2Architecture(size, version, embed_dim, len(blocks))
    if size is None:
        raise SamCheckpointError(f"{source} is {arch.describe()}: no config of the sam2 package has that trunk - "
                                 f"pass one of Meta's files ({', '.join(CHECKPOINT_NAMES.values())})")
    return arch


def read_sam2_checkpoint(path) -> Tuple[Dict[str, torch.Tensor], Sam2Architecture]:
    """Meta's ``sam2.1_hiera_*.pt``: validated state dict and architecture (reads no code, imports no sam2)."""
    from ..weights import read_weights_file

    path = os.fspath(path)
    if not os.path.exists(path):
        raise SamCheckpointNotFoundError(f"SAM 2 checkpoint {path} does not exist - download Meta's file, e.g. "
                                         f"{CHECKPOINT_NAMES['tiny']}, and pass its path")
    try:
        wf = read_weights_file(path)  # refuses non-float and non-finite tensors, naming each
    except WeightsError as e:
        raise SamCheckpointError(f"SAM 2 checkpoint: {e}") from None
    return wf.tensors, detect_sam2_architecture(wf.tensors, path)


def build_sam2_from_state(state: Dict[str, torch.Tensor], arch: Sam2Architecture, source: str) -> torch.nn.Module:
    """Meta's ``SAM2Base`` of the package's config for ``arch``, holding exactly ``state`` (CPU, eval)."""
    build_sam2, _ = import_sam2()
    model = build_sam2(arch.config, ckpt_path=None, device="cpu", mode="eval")
    expected = model.state_dict()
    check_state_matches(state, expected, source, arch.describe(), "edited")
    model.load_state_dict({k: v.to(ref.dtype) for k, v in state.items() for ref in [expected[k]]}, strict=True)
    return model.eval()


def clip_box(box_xyxy, size_wh) -> np.ndarray:
    """``box_xyxy`` clipped to the frame ``[0, w] x [0, h]`` (the prompt given to SAM 2)."""
    w, h = size_wh
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    return np.array([min(max(x1, 0.0), w), min(max(y1, 0.0), h), min(max(x2, 0.0), w), min(max(y2, 0.0), h)],
                    dtype=np.float32)


class Sam2BoxToMask(_BoxRefiner):
    """SAM 2 / 2.1 turning boxes into masks with Meta's ``SAM2ImagePredictor`` (see the module doc).

    The same interface as ``BoxToMask`` (``__call__``, ``refine``, ``last_failures``), so every surface
    that takes SAM masks takes these. ``precision``: "fp32" (default) or "bf16" (Meta's autocast
    recipe; CUDA, or a CPU with bf16 units).
    """

    def __init__(self, model: torch.nn.Module, device=None, precision: str = "fp32",
                 name: str = "SAM 2", architecture: Optional[Sam2Architecture] = None):
        if precision == "fp16":
            raise ConfigError.naming("SAM 2 runs in fp32 or bf16 (Meta's autocast recipe) - use {sam_precision:fp32} "
                                     "or bf16")
        _, predictor_class = import_sam2()
        self.device = _precision_device(precision, device)
        warn_if_precision_is_emulated(DTYPES[precision], self.device)  # bf16 on a CPU without its units
        self.precision = precision
        self.dtype = DTYPES[precision]
        self.name = name
        self.architecture = architecture
        self.model = model.to(self.device).eval()
        with warnings.catch_warnings():  # its transforms use torch.jit.script, which torch now warns about
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning)
            self.predictor = predictor_class(self.model)
        self.last_failures: List[Tuple[int, str]] = []

    @classmethod
    def from_pretrained(cls, checkpoint, model_type: Optional[str] = None, device=None,
                        precision: str = "fp32") -> "Sam2BoxToMask":
        """Load Meta's ``sam2.1_hiera_*.pt``; the size is read from the file, ``model_type`` (a size of
        ``SIZES``) only checks it. Everything is checked before anything is built."""
        asked = normalize_size(model_type)
        if precision == "fp16":
            raise ConfigError.naming("SAM 2 runs in fp32 or bf16 - use {sam_precision:fp32} or bf16")
        dev = _precision_device(precision, device)
        import_sam2()  # a missing package is reported before the (slow) read
        state, arch = read_sam2_checkpoint(checkpoint)
        if asked is not None and arch.size != asked:
            raise SamCheckpointError(f"SAM 2 checkpoint {os.fspath(checkpoint)} is {arch.describe()}, but {asked} "
                                     f"was asked - pass the {CHECKPOINT_NAMES[asked]} file, or ask for {arch.size}")
        model = build_sam2_from_state(state, arch, os.fspath(checkpoint))
        del state
        name = f"SAM {arch.version} hiera {arch.size} ({os.path.basename(os.fspath(checkpoint))})"
        return cls(model, device=dev, precision=precision, name=name, architecture=arch)

    @property
    def model_type(self) -> Optional[str]:
        return None if self.architecture is None else self.architecture.size

    def _autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _masks(self, image: np.ndarray, xyxy: np.ndarray) -> List[MaskResult]:
        """SAM 2's masks: one ``set_image``, one ``predict`` per box; the filled box where it gave none."""
        h, w = image.shape[:2]
        results = []
        try:
            with torch.inference_mode(), self._autocast():
                self.predictor.set_image(image)
                for box in xyxy:
                    prompt = clip_box(box, (w, h))
                    if prompt[2] <= prompt[0] or prompt[3] <= prompt[1]:
                        results.append(MaskResult(box_mask(box, (w, h)), "the box lies outside the frame"))
                        continue
                    logits, _, _ = self.predictor.predict(box=prompt, multimask_output=False, return_logits=True)
                    logits = logits[0]
                    if not np.isfinite(logits).all():
                        results.append(MaskResult(box_mask(box, (w, h)), "SAM 2 gave NaN or infinite logits"))
                        continue
                    results.append(MaskResult(logits > self.predictor.mask_threshold))
        finally:
            self.predictor.reset_predictor()  # the frame's features are not kept past the frame
        return results

    def __repr__(self) -> str:
        return f"Sam2BoxToMask({self.name}, device={self.device}, precision={self.precision})"
