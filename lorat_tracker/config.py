"""Model variants as data: one YAML file per variant (``configs/B-224.yaml`` ...).

A variant is found by name among the bundled configs, or read from a YAML path, which is how a
custom architecture (such as the test-size fixture models) is described.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml

from .errors import ConfigError


def _config_dirs() -> List[Path]:
    here = Path(__file__).resolve().parent
    # Installed: configs/ is packaged as lorat_tracker/configs. Checkout: the repository's configs/.
    return [d for d in (here / "configs", here.parent / "configs") if d.is_dir()]


def available_variants() -> List[str]:
    names = set()
    for d in _config_dirs():
        names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
    embed_dim: int
    depth: int
    num_heads: int
    ffn: str = "mlp"                      # "mlp" (GELU, 4x) or "swiglu" (fused w12/w3, SiLU)
    patch_size: int = 14
    pretrained_grid: int = 37             # side of the DINOv2 pos_embed grid (img_size 518)
    timm_name: Optional[str] = None
    meta_file: Optional[str] = None
    drop_path: float = 0.0                # stochastic depth in training, the same for every block (DINOv2's
                                          # drop_path_uniform); > 0.1 selects DINOv2's batch-subset variant

    @property
    def ffn_hidden(self) -> int:
        """Hidden width of the FFN (per half for SwiGLU), DINOv2's rule."""
        if self.ffn == "swiglu":
            return ((int(self.embed_dim * 4 * 2 / 3) + 7) // 8) * 8
        return self.embed_dim * 4


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
    r: int = 64
    alpha: float = 64
    use_rslora: bool = False

    @property
    def scaling(self) -> float:
        return self.alpha / (self.r ** 0.5) if self.use_rslora else self.alpha / self.r


@dataclasses.dataclass(frozen=True)
class CropConfig:
    size: int                 # square crop side in pixels
    area_factor: float


@dataclasses.dataclass(frozen=True)
class TrackingConfig:
    window_penalty: float = 0.45
    min_object_size: float = 10.0


@dataclasses.dataclass(frozen=True)
class NormalizationConfig:
    mean: Tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: Tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class VariantConfig:
    name: str
    backbone: BackboneConfig
    lora: LoRAConfig
    template: CropConfig
    search: CropConfig
    tracking: TrackingConfig = TrackingConfig()
    normalization: NormalizationConfig = NormalizationConfig()

    @property
    def template_grid(self) -> int:
        return self.template.size // self.backbone.patch_size

    @property
    def search_grid(self) -> int:
        return self.search.size // self.backbone.patch_size

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Dict[str, Any], source: str = "<dict>") -> "VariantConfig":
        try:
            backbone = BackboneConfig(**data["backbone"])
            cfg = cls(
                name=str(data["name"]),
                backbone=backbone,
                lora=LoRAConfig(**data.get("lora", {})),
                template=CropConfig(**data["template"]),
                search=CropConfig(**data["search"]),
                tracking=TrackingConfig(**data.get("tracking", {})),
                normalization=NormalizationConfig(
                    **{k: tuple(v) for k, v in data.get("normalization", {}).items()}),
            )
        except (KeyError, TypeError) as e:
            raise ConfigError(f"invalid variant config {source}: {e} - compare with configs/B-224.yaml") from e
        cfg._validate(source)
        return cfg

    def _validate(self, source: str) -> None:
        b = self.backbone
        problems = []
        if b.ffn not in ("mlp", "swiglu"):
            problems.append(f"backbone.ffn is {b.ffn!r}, expected 'mlp' or 'swiglu'")
        if not 0.0 <= b.drop_path < 1.0:
            problems.append(f"backbone.drop_path is {b.drop_path}, expected a rate in [0, 1)")
        if b.embed_dim % b.num_heads:
            problems.append(f"embed_dim {b.embed_dim} is not divisible by num_heads {b.num_heads}")
        for part in ("template", "search"):
            size = getattr(self, part).size
            if size % b.patch_size:
                problems.append(f"{part}.size {size} is not a multiple of the patch size {b.patch_size}")
        if self.template_grid > self.search_grid:
            problems.append("the template grid must not be larger than the search grid")
        if problems:
            raise ConfigError(f"invalid variant config {source}: " + "; ".join(problems))


def load_config(variant) -> VariantConfig:
    """A bundled variant by name (``"B-224"``), a path to a YAML file, or a config passed through."""
    if isinstance(variant, VariantConfig):
        return variant
    if isinstance(variant, dict):
        return VariantConfig.from_dict(variant)
    text = str(variant)
    path = Path(text)
    if text.endswith((".yaml", ".yml")) or path.is_file():
        if not path.is_file():
            raise ConfigError(f"variant config file {text} does not exist")
        with open(path) as f:
            return VariantConfig.from_dict(yaml.safe_load(f), source=text)
    for d in _config_dirs():
        candidate = d / f"{text}.yaml"
        if candidate.is_file():
            with open(candidate) as f:
                return VariantConfig.from_dict(yaml.safe_load(f), source=str(candidate))
    raise ConfigError(
        f"unknown variant {text!r}: choose one of {', '.join(available_variants())} "
        "or pass the path of a variant YAML file")
