"""Model variants as data: one YAML file per variant (``configs/B-224.yaml`` ...).

A variant is found by name among the bundled configs, or read from a YAML path, which is how a
custom architecture (such as the test-size fixture models) is described.
"""
from __future__ import annotations

import dataclasses
import json
import math
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
    def from_dict(cls, data: Dict[str, Any], source: str = "<dict>",
                  hint: str = "compare with configs/B-224.yaml") -> "VariantConfig":
        """Build and validate a variant: the one path for bundled YAML, user YAML and merged exports."""
        if not isinstance(data, dict):
            raise ConfigError(f"invalid variant config {source}: expected a mapping of sections (name, backbone, "
                              f"lora, template, search, ...), got {type(data).__name__} - {hint}")
        try:
            backbone = BackboneConfig(**data["backbone"])
            cfg = cls(
                name=data["name"],
                backbone=backbone,
                lora=LoRAConfig(**data.get("lora", {})),
                template=CropConfig(**data["template"]),
                search=CropConfig(**data["search"]),
                tracking=TrackingConfig(**data.get("tracking", {})),
                normalization=NormalizationConfig(
                    **{k: tuple(v) for k, v in data.get("normalization", {}).items()}),
            )
        except KeyError as e:
            raise ConfigError(f"invalid variant config {source}: section or key {e} is missing - {hint}") from None
        except TypeError as e:
            raise ConfigError(f"invalid variant config {source}: {e} - {hint}") from None
        problems = validate(cfg)
        if problems:
            raise ConfigError(f"invalid variant config {source}: " + "; ".join(problems) + f" - {hint}")
        return cfg


def validate(cfg: VariantConfig) -> List[str]:
    """Every problem of a variant configuration, as short sentences (empty list: valid).

    Types are checked strictly (a YAML or JSON string or boolean where a number belongs is refused),
    every float must be finite, and the values the tracker divides by or indexes with must make sense.
    """
    problems: List[str] = []

    def integer(name: str, value, minimum: int = 1) -> bool:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{name} is {value!r}, expected an integer")
        elif value < minimum:
            problems.append(f"{name} is {value}, expected at least {minimum}")
        else:
            return True
        return False

    def number(name: str, value, low: float, high: float = math.inf, low_inclusive: bool = True) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            problems.append(f"{name} is {value!r}, expected a finite number")
        elif value < low or (value == low and not low_inclusive) or value > high:
            bounds = f"{'>=' if low_inclusive else '>'} {low:g}" + (f" and <= {high:g}" if high != math.inf else "")
            problems.append(f"{name} is {value!r}, expected a number {bounds}")
        else:
            return True
        return False

    if not isinstance(cfg.name, str) or not cfg.name:
        problems.append(f"name is {cfg.name!r}, expected a non-empty string")
    b = cfg.backbone
    dims_ok = all([integer("backbone.embed_dim", b.embed_dim), integer("backbone.depth", b.depth),
                   integer("backbone.num_heads", b.num_heads), integer("backbone.patch_size", b.patch_size),
                   integer("backbone.pretrained_grid", b.pretrained_grid)])
    if b.ffn not in ("mlp", "swiglu"):
        problems.append(f"backbone.ffn is {b.ffn!r}, expected 'mlp' or 'swiglu'")
    if number("backbone.drop_path", b.drop_path, 0, 1) and b.drop_path == 1:
        problems.append("backbone.drop_path is 1, expected a rate in [0, 1)")
    for key in ("timm_name", "meta_file"):
        value = getattr(b, key)
        if value is not None and not isinstance(value, str):
            problems.append(f"backbone.{key} is {value!r}, expected a string")
    if dims_ok and b.embed_dim % b.num_heads:
        problems.append(f"backbone.embed_dim {b.embed_dim} is not divisible by num_heads {b.num_heads}")
    integer("lora.r", cfg.lora.r)
    number("lora.alpha", cfg.lora.alpha, 0, low_inclusive=False)
    if not isinstance(cfg.lora.use_rslora, bool):
        problems.append(f"lora.use_rslora is {cfg.lora.use_rslora!r}, expected true or false")
    sizes_ok = True
    for part in ("template", "search"):
        crop = getattr(cfg, part)
        if integer(f"{part}.size", crop.size) and dims_ok and crop.size % b.patch_size:
            problems.append(f"{part}.size {crop.size} is not a multiple of the patch size {b.patch_size}")
        sizes_ok = sizes_ok and isinstance(crop.size, int) and not isinstance(crop.size, bool)
        number(f"{part}.area_factor", crop.area_factor, 0, low_inclusive=False)
    if dims_ok and sizes_ok and cfg.template_grid > cfg.search_grid:
        problems.append("the template grid must not be larger than the search grid")
    number("tracking.window_penalty", cfg.tracking.window_penalty, 0, 1)
    number("tracking.min_object_size", cfg.tracking.min_object_size, 0)
    for key, low, inclusive in (("mean", -math.inf, True), ("std", 0, False)):
        values = getattr(cfg.normalization, key)
        if len(values) != 3:
            problems.append(f"normalization.{key} has {len(values)} values, expected 3 (R, G, B)")
            continue
        for channel, value in zip("RGB", values):
            number(f"normalization.{key} ({channel})", value, low, low_inclusive=inclusive)
    return problems


def _read_yaml(path: Path):
    """A variant file's YAML; a file that is not YAML (a weights file passed as --variant, say) or cannot be
    read is a ConfigError, not a decoder's traceback."""
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        reason = (e.strerror if isinstance(e, OSError) and e.strerror else
                  "not a text file" if isinstance(e, UnicodeDecodeError) else "not valid YAML")
        raise ConfigError(f"variant config file {path} cannot be read ({reason}) - pass a bundled variant "
                          f"({', '.join(available_variants())}) or the path of a variant YAML file") from None


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
        return VariantConfig.from_dict(_read_yaml(path), source=text)
    for d in _config_dirs():
        candidate = d / f"{text}.yaml"
        if candidate.is_file():
            return VariantConfig.from_dict(_read_yaml(candidate), source=str(candidate))
    raise ConfigError(
        f"unknown variant {text!r}: choose one of {', '.join(available_variants())} "
        "or pass the path of a variant YAML file")
