"""The official training transform of one (template, search) pair (reference 4.3-4.5).

Crops: the template with the nominal SiamFC parameters (area factor 2, no jitter); the search region
with per-axis scale jitter and translation jitter, accepted when the target keeps at least 10 px a
side inside the crop (12 attempts, else the pair is rejected: ``None``). Both use the pixel-aligned
crop of inference (``lorat_tracker.cropping``) with the image's own mean as padding. Then, on [0, 1]
floats: independent horizontal flips, colour jitter per image (torchvision functional ops in a
random order), the DeiT-III "3-augment" shared by both images (grayscale, solarize or Gaussian blur,
through an 8-bit PIL round trip, so every image is 8-bit quantised), boxes clipped to their crops,
ImageNet normalisation, and the labels.

Every random number comes from the ``np.random.Generator`` passed in, so a pair is a pure function
of its images, boxes and generator state (what makes data loading independent of the worker count).
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import ImageFilter, ImageOps

from ..config import VariantConfig, load_config
from ..boxes import clip_box, map_box, xywh_to_xyxy
from ..cropping import nominal_crop_params, pixel_aligned_crop
from .labels import label_boxes, positive_mask, template_feat_mask

SCALE_JITTER = 0.25
TRANSLATION_JITTER = 3.0
MIN_OBJECT_SIZE = 10.0
MAX_ATTEMPTS = 12
COLOR_JITTER = (0.4, 0.4, 0.4)   # brightness, contrast, saturation: factors ~ U[1 - v, 1 + v]
BLUR_RADIUS = (0.1, 2.0)


def image_mean(image: np.ndarray) -> torch.Tensor:
    """Per-channel mean of an (H, W, 3) uint8 image on 0..255, as float32 (the crop's padding colour).

    OpenCV sums the bytes exactly (float64) without converting the image to float first: 8x faster
    than torch's float32 mean of the converted image (what the official code computes), from which
    it differs by float32 rounding only (< 1e-4 of a grey level)."""
    return torch.tensor(cv2.mean(np.ascontiguousarray(image))[:3], dtype=torch.float32)


def jittered_search_params(box_xyxy, area_factor: float, size_wh, rng: np.random.Generator,
                           scale_jitter: float = SCALE_JITTER, translation_jitter: float = TRANSLATION_JITTER):
    """One draw of the search crop's (scale (sx, sy), translation (tx, ty)), float64.

    s = s_nominal / exp(scale_jitter * n) with n ~ N(0, 1) per axis (2 draws); then the centred
    translation plus u * 0.5 * translation_jitter * (w * sx + h * sy) with u ~ U(-1, 1) per axis (2 draws).
    """
    s_nominal, _ = nominal_crop_params(box_xyxy, area_factor, size_wh)
    n = rng.standard_normal(2)
    u = rng.uniform(-1.0, 1.0, 2)
    scale = s_nominal / np.exp(scale_jitter * n)
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    w, h = x2 - x1, y2 - y1
    cx, cy = x1 + w / 2, y1 + h / 2
    out_w, out_h = size_wh
    max_shift = 0.5 * translation_jitter * (w * scale[0] + h * scale[1])
    translation = np.array([out_w / 2 - cx * scale[0], out_h / 2 - cy * scale[1]]) + u * max_shift
    return scale, translation


def search_box_acceptable(box_crop_xyxy, size_wh, min_size: float = MIN_OBJECT_SIZE) -> bool:
    """The official acceptance rule: the box meets the crop, and clipped to it keeps >= min_size a side."""
    x1, y1, x2, y2 = clip_box(box_crop_xyxy, size_wh)
    return (x2 - x1) >= min_size and (y2 - y1) >= min_size


def hflip(image: torch.Tensor, box_xyxy: np.ndarray):
    """Mirror a (3, H, W) crop and its box: x1' = W - x2, x2' = W - x1."""
    w = image.shape[-1]
    b = np.asarray(box_xyxy, dtype=np.float64)
    return TF.hflip(image), np.array([w - b[2], b[1], w - b[0], b[3]])


def color_jitter(image: torch.Tensor, rng: np.random.Generator, strength=COLOR_JITTER) -> torch.Tensor:
    """torchvision's ColorJitter(0.4, 0.4, 0.4) on a [0, 1] float image, drawn from ``rng``: a random order
    of the four slots (the hue slot is unused), each factor ~ U[1 - v, 1 + v]."""
    order = rng.permutation(4)
    factors = [rng.uniform(1 - v, 1 + v) for v in strength]
    ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
    for slot in order:
        if slot < 3:
            image = ops[slot](image, float(factors[slot]))
    return image


def three_augment(images, rng: np.random.Generator):
    """DeiT-III 3-augment, one choice for all ``images`` ([0, 1] float (3, H, W)): grayscale (3 channels),
    solarize (threshold 128) or Gaussian blur (radius ~ U(0.1, 2.0)), applied by PIL after a
    truncating 8-bit cast (``to_pil_image``), then back to [0, 1] floats."""
    choice = int(rng.choice(3))
    radius = float(rng.uniform(*BLUR_RADIUS)) if choice == 2 else None
    out = []
    for image in images:
        pil = TF.to_pil_image(image)  # float -> mul(255).byte(): truncates, as the official pipeline
        if choice == 0:
            pil = TF.to_grayscale(pil, num_output_channels=3)
        elif choice == 1:
            pil = ImageOps.solarize(pil, threshold=128)
        else:
            pil = pil.filter(ImageFilter.GaussianBlur(radius=radius))
        out.append(TF.to_tensor(pil))
    return out, choice


class SiameseTrainTransform:
    """(template image, box, search image, box, rng) -> one training sample, or None (search crop rejected).

    Images are RGB uint8 (H, W, 3) arrays, boxes 0-based ``[x, y, w, h]`` in their image. ``augment=False``
    leaves out flips, colour jitter and 3-augment (crops and jitter stay); ``flip``, ``color`` and
    ``three_aug`` switch the single augmentations.
    """

    def __init__(self, config: VariantConfig, *, augment: bool = True, flip: Optional[bool] = None,
                 color: Optional[bool] = None, three_aug: Optional[bool] = None, jitter: bool = True,
                 scale_jitter: float = SCALE_JITTER, translation_jitter: float = TRANSLATION_JITTER,
                 min_object_size: float = MIN_OBJECT_SIZE, max_attempts: int = MAX_ATTEMPTS):
        self.config = load_config(config)
        self.flip = augment if flip is None else flip
        self.color = augment if color is None else color
        self.three_aug = augment if three_aug is None else three_aug
        self.jitter = jitter
        self.scale_jitter = scale_jitter
        self.translation_jitter = translation_jitter
        self.min_object_size = min_object_size
        self.max_attempts = max_attempts
        c = self.config
        self.template_size = (c.template.size, c.template.size)
        self.search_size = (c.search.size, c.search.size)
        self.template_grid = (c.template_grid, c.template_grid)
        self.search_grid = (c.search_grid, c.search_grid)
        self.mean = torch.tensor(c.normalization.mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(c.normalization.std, dtype=torch.float32).view(3, 1, 1)

    # ------------------------------------------------------------ crops

    def template_crop(self, image: np.ndarray, box_xyxy):
        s, t = nominal_crop_params(box_xyxy, self.config.template.area_factor, self.template_size)
        crop, params = pixel_aligned_crop(image, s, t, self.template_size, image_mean(image))
        return crop, params.image_to_crop(box_xyxy)

    def search_params(self, box_xyxy, rng: np.random.Generator):
        """Jittered (scale, translation) accepted by the min-size rule, or None after ``max_attempts``."""
        if not self.jitter:
            s, t = nominal_crop_params(box_xyxy, self.config.search.area_factor, self.search_size)
            return (s, s), t
        for _ in range(self.max_attempts):
            scale, translation = jittered_search_params(box_xyxy, self.config.search.area_factor, self.search_size,
                                                        rng, self.scale_jitter, self.translation_jitter)
            if search_box_acceptable(map_box(box_xyxy, scale, translation), self.search_size, self.min_object_size):
                return scale, translation
        return None

    def search_crop(self, image: np.ndarray, box_xyxy, rng: np.random.Generator):
        found = self.search_params(box_xyxy, rng)
        if found is None:
            return None
        scale, translation = found
        crop, params = pixel_aligned_crop(image, scale, translation, self.search_size, image_mean(image))
        return crop, params.image_to_crop(box_xyxy)

    # ------------------------------------------------------------ the whole pair

    def __call__(self, z_image: np.ndarray, z_box_xywh, x_image: np.ndarray, x_box_xywh,
                 rng: np.random.Generator) -> Optional[dict]:
        z_box = xywh_to_xyxy(z_box_xywh)
        x_box = xywh_to_xyxy(x_box_xywh)
        z, z_box = self.template_crop(z_image, z_box)
        searched = self.search_crop(x_image, x_box, rng)
        if searched is None:
            return None
        x, x_box = searched
        z, x = z / 255.0, x / 255.0
        if self.flip:
            if rng.random() < 0.5:
                z, z_box = hflip(z, z_box)
            if rng.random() < 0.5:
                x, x_box = hflip(x, x_box)
        if self.color:
            z = color_jitter(z, rng)
            x = color_jitter(x, rng)
        if self.three_aug:
            (z, x), _ = three_augment((z, x), rng)
        z_box = np.array(clip_box(z_box, self.template_size), dtype=np.float64)
        x_box = np.array(clip_box(x_box, self.search_size), dtype=np.float64)
        if not (x_box[2] > x_box[0] and x_box[3] > x_box[1] and z_box[2] > z_box[0] and z_box[3] > z_box[1]):
            return None  # cannot happen after the acceptance rule; kept as a guard for custom settings
        return {
            "z": ((z - self.mean) / self.std).float().contiguous(),
            "x": ((x - self.mean) / self.std).float().contiguous(),
            "z_feat_mask": torch.from_numpy(template_feat_mask(z_box, self.template_size, self.template_grid)),
            "positive_mask": torch.from_numpy(positive_mask(x_box, self.search_size, self.search_grid)),
            "label_boxes": torch.from_numpy(label_boxes(x_box, self.search_size)),
            "search_box": torch.from_numpy(x_box),
            "template_box": torch.from_numpy(z_box),
        }


def denormalize(image: torch.Tensor, config) -> torch.Tensor:
    """A normalised crop back on [0, 1] (for inspection and tests)."""
    c = load_config(config)
    mean = torch.tensor(c.normalization.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(c.normalization.std, dtype=torch.float32).view(3, 1, 1)
    return image * std + mean


__all__ = ["SiameseTrainTransform", "jittered_search_params", "search_box_acceptable", "color_jitter",
           "three_augment", "hflip", "image_mean", "denormalize"]
