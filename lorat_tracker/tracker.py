"""The tracker: owns the image-space logic around the (stateless) LoRAT network.

Single target::

    tracker = LoRATTracker.from_pretrained("B-224", weights="base.bin", backbone="dinov2_vitb14_pretrain.pth")
    tracker.initialize(image, [x, y, w, h])
    box, score = tracker.track(next_image)

Several targets (VOTS multi-object, batched evaluation of many sequences) share one batched forward
per step: ``targets = [tracker.new_target(image, box) for box in boxes]`` then
``tracker.step(targets, image)`` (one image for all) or ``tracker.step(targets, [im1, im2, ...])``
(one image per target). Each ``Target`` carries its own template, mask, padding colour and box.

Masks (VOTS): ``LoRATTracker.from_pretrained(..., masks=BoxToMask.from_pretrained("sam_vit_h_4b8939.pth"))``
makes every prediction carry ``.mask`` (bool (H, W)), SAM's mask of the box exactly as the official
pipeline; the box alone drives tracking (``lorat_tracker.segmentation``).

Frames of another size than the target's first frame are accepted: the box stays in pixel
coordinates (exactly what the official pipeline does) and a ``FrameSizeWarning`` is issued once.
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import warnings
from typing import List, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch

from .boxes import clip_box, validate_box, xyxy_to_xywh
from .config import VariantConfig
from .cropping import CropParams, nominal_crop_params, pixel_aligned_crop, search_crop_box, template_mask
from .errors import ConfigError, DamagedWeightsError, InvalidImageError, NotInitializedError
from .images import as_rgb_image
from .model import LoRATModel
from .runtime import (CompileWarning, CudaGraphForward, check_compile_mode, low_precision_weights, onednn_linears,
                      precision_name, resolve_device, resolve_precision, warn_if_precision_is_emulated)
from .segmentation.refiner import mask_results


class _PredictionFields(NamedTuple):
    box: np.ndarray   # 0-based [x, y, w, h] float64, image pixels
    score: float      # the network's (un-penalised) confidence at the chosen cell


class Prediction(_PredictionFields):
    """``(box, score)``, plus ``mask``: bool (H, W) when the tracker has a mask refiner, else None.

    The mask is an attribute, not a third tuple field, so ``box, score = tracker.track(image)``
    keeps working.
    """
    mask: Optional[np.ndarray] = None

    def __new__(cls, box, score, mask: Optional[np.ndarray] = None):
        self = super().__new__(cls, box, score)
        if mask is not None:
            self.mask = mask
        return self

    def __reduce__(self):
        return (type(self), (self.box, self.score, self.mask))

    def __repr__(self) -> str:
        extra = "" if self.mask is None else f", mask=<bool {self.mask.shape[0]}x{self.mask.shape[1]}>"
        return f"Prediction(box={self.box!r}, score={self.score!r}{extra})"


class FrameSizeWarning(UserWarning):
    """A frame whose size differs from the target's first frame."""


class MaskFallbackWarning(UserWarning):
    """The mask refiner gave no mask for a target (non-finite logits, out of memory): its box is used."""


@dataclasses.dataclass
class Target:
    """Per-target state: everything the official pipeline keeps for one track."""
    template: torch.Tensor      # (3, Ht, Wt) normalised template crop, on the model's device
    mask: torch.Tensor          # (Hz, Wz) int64 template foreground mask
    fill: torch.Tensor          # (3,) first frame's per-channel mean (0..255), search padding
    box: np.ndarray             # current state box, x1y1x2y2 float64
    frame_size: tuple           # (W, H) of the first frame
    size_warned: bool = False

    @property
    def box_xywh(self) -> np.ndarray:
        return xyxy_to_xywh(self.box)


class LoRATTracker:
    """Stateful single-target wrapper plus a batched multi-target ``step``."""

    def __init__(self, model: LoRATModel, device=None, precision: str = "auto", compile=False, masks=None,
                 backend: str = "torch"):
        """``backend``: where the network runs ("torch", "onnxruntime", "openvino", "tensorrt"; see
        ``lorat_tracker.backends``). ``model`` is a ``LoRATModel`` (for another backend it is exported to
        a temporary ONNX file) or a network from ``lorat_tracker.backends.load_network``."""
        self.backend = backend
        if backend != "torch":
            return self._init_backend(model, device, precision, compile, masks)
        self.device = resolve_device(device)
        self.masks = _check_refiner(masks)
        self.autocast_dtype = resolve_precision(precision, self.device)
        warn_if_precision_is_emulated(self.autocast_dtype, self.device)
        self.precision = precision
        self.model = model.to(self.device).eval()
        check_weight_range(self.model, self.autocast_dtype)
        if self.autocast_dtype is not None and self.device.type in ("cpu", "cuda"):
            self.model = low_precision_weights(self.model, self.autocast_dtype)
        self._forward = self._make_forward(compile)
        self._init_state(model.cfg)

    def _init_backend(self, model, device, precision, compile, masks) -> None:
        """The one seam for non-torch backends: only ``self._forward`` differs; crops, window and box
        decoding below are the same code. The backend applies its own precision (no autocast here)."""
        from . import backends

        spec = backends.backend_spec(self.backend)
        self.device = backends.resolve_backend_device(spec.name, device)
        backends.check_backend(spec.name, self.device, precision)
        if compile:
            raise ConfigError(f"compile={compile!r} applies to backend 'torch' only; backend {spec.name} "
                              "compiles the network itself - pass compile=False")
        self.masks = _check_refiner(masks)
        self.autocast_dtype = None
        if isinstance(model, LoRATModel):
            self.model = model.eval()
            self._forward = backends.network_from_model(spec.name, model, self.device, precision)
        else:
            self.model = None  # an ONNX-backed network: there is no torch model
            self._forward = model
        self.precision = self._forward.precision
        self._init_state(self._forward.cfg)

    def _init_state(self, cfg: VariantConfig) -> None:
        self.cfg: VariantConfig = cfg
        norm = self.cfg.normalization
        self._mean = torch.tensor(norm.mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(norm.std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        g = self.cfg.search_grid
        hann = torch.hann_window(g, periodic=False, dtype=torch.float32)
        self._window = torch.outer(hann, hann).flatten().to(self.device)
        self._target: Optional[Target] = None

    @classmethod
    def from_pretrained(cls, variant, weights=None, backbone=None, device=None, precision: str = "auto",
                        compile=False, masks=None, backend: str = "torch") -> "LoRATTracker":
        """Build from released weights: ``variant`` ("B-224", a YAML path, or None for a merged export).

        ``masks``: a box-to-mask refiner (``lorat_tracker.segmentation.BoxToMask``, SAM as in the
        official VOTS pipeline); then every prediction of ``track`` / ``step`` carries a ``mask``.
        The box alone drives tracking. Also settable later as ``tracker.masks``. Any other callable
        ``(image, boxes, box_format="xyxy", on_failure="box") -> masks`` works too (``mask_results``).

        ``compile`` (opt-in): on CUDA, True / "cudagraph" replays one captured CUDA graph per batch
        size (same kernels as eager, no per-kernel launch cost); "inductor" uses
        ``torch.compile(mode="reduce-overhead")``. On the CPU in fp32, "onednn" runs the Linear layers
        on prepacked oneDNN weights (``runtime.onednn_linears``). Elsewhere a mode warns and runs eagerly.

        ``backend`` "onnxruntime" / "openvino" / "tensorrt": ``weights`` is an ONNX file from ``lorat
        export --format onnx`` (``variant`` may be None: the file carries it), or a merged export, converted
        to ONNX on first use and cached beside it as ``<file>.onnx``. ``precision``: fp32 (onnxruntime,
        openvino), bf16 (openvino), fp16 / fp32 (tensorrt); "auto" = fp32, tensorrt fp16.
        """
        from .weights import build_model

        if backend != "torch":
            from . import backends

            backends.backend_spec(backend)
            dev = backends.resolve_backend_device(backend, device)
            check_compile_mode(compile)
            _check_refiner(masks)
            network = backends.load_network(backend, variant, weights, backbone, dev, precision)
            return cls(network, dev, precision, compile=compile, masks=masks, backend=backend)
        if weights is not None and str(weights).lower().endswith(".onnx"):
            from .errors import WeightsError
            from .spec import literal

            raise WeightsError.naming(f"{literal(weights)} is an ONNX export: run it with {{backend:onnxruntime}}, "
                                      "{backend:openvino} or {backend:tensorrt}, or pass the merged export or the "
                                      "LoRAT weights it was made from for {backend:torch}")
        dev = resolve_device(device)
        resolve_precision(precision, dev)  # fail fast, before the (slow) load
        check_compile_mode(compile)
        _check_refiner(masks)
        return cls(build_model(variant, weights=weights, backbone=backbone, device=dev), dev, precision,
                   compile=compile, masks=masks)

    # ------------------------------------------------------------------ single target

    def initialize(self, image, box) -> None:
        """Start tracking ``box`` (0-based [x, y, w, h]) in ``image`` (RGB uint8 (H, W, 3))."""
        self._target = self.new_target(image, box)

    def track(self, image) -> Prediction:
        """Locate the target in the next frame: ``Prediction(box=[x, y, w, h], score)`` (+ ``.mask``
        when the tracker has a mask refiner)."""
        if self._target is None:
            raise NotInitializedError("track() called before initialize(image, box)")
        return self.step([self._target], [image])[0]

    @property
    def target(self) -> Optional[Target]:
        return self._target

    # ------------------------------------------------------------------ several targets

    @contextlib.contextmanager
    def recording_network_inputs(self, record):
        """Inside the block, ``record(z, x, z_feat_mask)`` sees the network's inputs of every forward
        (template crops, search crops, template token types: the tensors as the network gets them),
        before the network runs; the int8 calibration collects its samples so. Any backend."""
        network = self._forward

        def recording(z, x, z_feat_mask):
            record(z, x, z_feat_mask)
            return network(z, x, z_feat_mask)

        self._forward = recording
        try:
            yield self
        finally:
            self._forward = network

    def search_input(self, image, box, target: Target) -> torch.Tensor:
        """The network's search input (1, 3, S, S) for a target last seen at ``box`` (x1, y1, x2, y2) in
        ``image``: the crop and normalisation of ``step()``, for timing or comparing the network alone."""
        size = self.cfg.search.size
        x = torch.empty(1, 3, size, size, dtype=torch.float32, device=self.device)
        self._search_crop(as_rgb_image(image), np.asarray(box, dtype=np.float64), target.fill, out=x[0])
        return self._normalize(x)

    def network_outputs(self, z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor):
        """(score map, per-cell boxes) of the network, whichever backend, in the tracker's precision, on
        batched inputs as the network gets them (``Target.template`` / ``Target.mask`` stacked, and
        ``search_input``): what ``step()`` runs between the crops and the Hann-window selection."""
        with torch.inference_mode(), self._autocast():
            return self._forward(z, x, z_feat_mask)

    def _search_crop(self, frame: np.ndarray, box, fill, out: torch.Tensor) -> CropParams:
        cfg = self.cfg
        size = cfg.search.size
        crop_box = search_crop_box(box, cfg.tracking.min_object_size)
        s, t = nominal_crop_params(crop_box, cfg.search.area_factor, (size, size))
        return pixel_aligned_crop(frame, s, t, (size, size), fill, out=out)[1]

    def new_target(self, image, box) -> Target:
        """The per-target state for ``box`` in ``image`` (template crop, mask, padding colour)."""
        image = as_rgb_image(image)
        h, w = image.shape[:2]
        xyxy = validate_box(box, (w, h))
        fill = torch.from_numpy(image).to(self.device).float().mean(dim=(0, 1))
        cfg = self.cfg
        size = cfg.template.size
        s, t = nominal_crop_params(xyxy, cfg.template.area_factor, (size, size))
        crop, params = pixel_aligned_crop(image, s, t, (size, size), fill)
        template = self._normalize(crop.unsqueeze(0))[0]
        mask = template_mask(xyxy, params, size, cfg.template_grid)
        return Target(template=template, mask=torch.from_numpy(mask).to(self.device), fill=fill,
                      box=xyxy, frame_size=(w, h))

    def step(self, targets: Sequence[Target], images: Union[np.ndarray, Sequence[np.ndarray]]
             ) -> List[Prediction]:
        """Track every target one frame with one batched forward; updates the targets in place.

        With a mask refiner (``masks=``), each prediction also carries the mask of its target's box,
        all targets that share a frame through one refiner call.
        """
        if len(targets) == 0:
            return []
        if isinstance(images, np.ndarray) or not isinstance(images, (list, tuple)):
            frames = [as_rgb_image(images)] * len(targets)
        else:
            if len(images) != len(targets):
                raise InvalidImageError(f"{len(images)} images for {len(targets)} targets: pass one image "
                                        "for all targets or one per target")
            frames = [as_rgb_image(im) for im in images]
        cfg = self.cfg
        size = cfg.search.size
        n = len(targets)
        x = torch.empty(n, 3, size, size, dtype=torch.float32, device=self.device)
        params: List[CropParams] = []
        for i, (tgt, frame) in enumerate(zip(targets, frames)):
            self._check_frame_size(tgt, frame)
            params.append(self._search_crop(frame, tgt.box, tgt.fill, out=x[i]))
        x = self._normalize(x)
        if n == 1:
            z, mask = targets[0].template.unsqueeze(0), targets[0].mask.unsqueeze(0)
        else:
            z = torch.stack([t.template for t in targets])
            mask = torch.stack([t.mask for t in targets])
        score_map, boxes = self.network_outputs(z, x, mask)
        scores, crop_boxes = self._select(score_map, boxes)
        results = []
        for tgt, frame, p, score, crop_box in zip(targets, frames, params, scores, crop_boxes):
            h, w = frame.shape[:2]
            box = np.array(clip_box(p.crop_to_image(crop_box), (w, h)), dtype=np.float64)
            if box[2] > box[0] and box[3] > box[1]:
                tgt.box = box
            results.append(Prediction(xyxy_to_xywh(box), float(score)))
        if self.masks is not None:
            results = self._add_masks(targets, frames, results)
        return results

    def _add_masks(self, targets, frames, results) -> List[Prediction]:
        """The refiner on each target's state box (the official pipeline's box), one call per frame."""
        groups = {}
        for i, frame in enumerate(frames):
            groups.setdefault(id(frame), []).append(i)
        masks = [None] * len(targets)
        for indices in groups.values():
            frame = frames[indices[0]]
            boxes = np.stack([targets[i].box for i in indices])
            for i, result in zip(indices, mask_results(self.masks, frame, boxes, box_format="xyxy")):
                if result.fallback is not None:
                    warnings.warn(f"no mask for target {i} ({result.fallback}); its box is used as the mask",
                                  MaskFallbackWarning, stacklevel=3)
                masks[i] = result.mask
        return [Prediction(p.box, p.score, m) for p, m in zip(results, masks)]

    # ------------------------------------------------------------------ helpers

    def _normalize(self, crops: torch.Tensor) -> torch.Tensor:
        return (crops / 255.0 - self._mean) / self._std

    def _make_forward(self, compile):
        check_compile_mode(compile)
        if not compile:
            return self.model
        if compile == "onednn":
            if self.device.type != "cpu" or self.autocast_dtype is not None or not torch.backends.mkldnn.is_available():
                warnings.warn(f"compile mode onednn is for fp32 on a CPU with oneDNN; running eagerly on "
                              f"{self.device.type} in {self._precision_name()}", CompileWarning, stacklevel=3)
                return self.model
            return onednn_linears(self.model)
        if self.device.type != "cuda":
            warnings.warn(f"compile={compile!r} needs a CUDA device; running eagerly on {self.device.type}",
                          CompileWarning, stacklevel=3)
            return self.model
        if compile == "inductor":
            return torch.compile(self.model, mode="reduce-overhead", dynamic=False)
        return CudaGraphForward(self.model)

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        # No autocast cast cache: each weight is used once per forward, so it never hits, and cached
        # casts must not be allocated inside a CUDA graph capture (compile=True). Same numbers.
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype, cache_enabled=False)

    def _select(self, score_map: torch.Tensor, boxes: torch.Tensor):
        """Hann-window penalised argmax per target; confidence = the raw sigmoid score there."""
        penalty = self.cfg.tracking.window_penalty
        p = score_map.float().sigmoid().flatten(1)
        q = p * (1 - penalty) + self._window * penalty
        k = q.argmax(dim=1)
        rows = torch.arange(p.shape[0], device=p.device)
        size = self.cfg.search.size
        crop_boxes = boxes.flatten(1, 2)[rows, k] * size
        # Every output finite, per target (a damaged or overflowing network gives NaN / inf, and a NaN
        # argmax still picks a cell): in the same single host transfer as the chosen scores and boxes.
        finite = (torch.isfinite(score_map.flatten(1)).all(1) & torch.isfinite(boxes.flatten(1)).all(1)).to(p.dtype)
        out = torch.cat((p[rows, k].unsqueeze(1), crop_boxes, finite.unsqueeze(1)), dim=1).cpu().numpy()
        if not out[:, 5].all():
            bad = [int(i) for i in np.flatnonzero(out[:, 5] == 0)]
            precision = self._precision_name()
            advice = "use another copy" if precision == "fp32" else "run {precision:fp32}, or use another copy"
            raise DamagedWeightsError.naming(
                f"the network's output is not finite (NaN or infinite score map or boxes) for target(s) {bad} of "
                f"this frame in {precision}: the weights are damaged or overflow in this precision - nothing was "
                f"returned for this frame; check the file with lorat info, or {advice}")
        return out[:, 0], out[:, 1:5].astype(np.float64)

    def _precision_name(self) -> str:
        if self.backend != "torch":
            return str(self.precision)
        return precision_name(self.precision, self.device)  # what "auto" means here, as resolve_precision decided

    def _check_frame_size(self, tgt: Target, frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        if (w, h) != tgt.frame_size and not tgt.size_warned:
            warnings.warn(f"frame size {w}x{h} differs from the first frame's {tgt.frame_size[0]}x"
                          f"{tgt.frame_size[1]}; the box is kept in pixel coordinates and clipped to the "
                          "new frame", FrameSizeWarning, stacklevel=3)
            tgt.size_warned = True


# The largest finite value of each reduced precision: a weight beyond it becomes inf when cast.
_PRECISION_MAX = {torch.float16: float(torch.finfo(torch.float16).max)}


def check_weight_range(model: torch.nn.Module, dtype: Optional[torch.dtype]) -> None:
    """Refuse a model with a tensor beyond the range of the precision it will run in, naming the tensor.

    fp16 (max 65504) is the one precision whose range is smaller than the file's: bf16 has fp32's
    exponent range, and fp32 weights are already finite (checked when the file was read). A weight that
    fits but overflows inside the network is caught on its first frame (``DamagedWeightsError``)."""
    limit = _PRECISION_MAX.get(dtype)
    if limit is None:
        return
    for name, t in itertools.chain(model.named_parameters(), model.named_buffers()):
        if t.is_floating_point() and t.numel():
            peak = float(t.detach().abs().max())
            if peak > limit:
                raise DamagedWeightsError.naming(
                    f"tensor {name} holds values up to {peak:.3g}, beyond the range of fp16 (largest {limit:g}): it "
                    "would be infinite in this precision - use {precision:fp32} (or bf16), or check the weights "
                    "with lorat info")


def _check_refiner(masks):
    if masks is not None and not callable(masks):
        raise ConfigError(f"masks must be a box-to-mask refiner such as lorat_tracker.segmentation.BoxToMask "
                          f"(or None), got {type(masks).__name__}")
    return masks
