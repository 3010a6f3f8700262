"""Every weight file LoRAT users have, in one module with one entry point: ``build_model``.

Accepted inputs (any combination that makes a complete model):

- DINOv2 backbones: Meta's ``dinov2_vit{b,l,g}14_pretrain.pth`` (torch.save) and timm / Hugging Face
  ``vit_{base,large,giant}_patch14_dinov2.lvd142m`` files (safetensors or .pth), converted by timm's
  own ``checkpoint_filter_fn`` (Meta key names and the fused SwiGLU ``w12``/``w3`` -> timm's packed
  ``fc1``/``fc2``).
- LoRAT weights: the released ``.bin`` (a safetensors container: token-type embedding, head, LoRA
  A/B with qkv split into q/k/v, plus the 0-d ``lora_alpha``/``use_rslora`` meta tensors), the newer
  training checkpoints ``model.safetensors`` (same keys, no meta tensors), a full unmerged state dict
  (``...linear.weight`` + ``...lora.A/B``), or an official merged state dict.
- Our own merged export (``export_merged``): a safetensors file with the variant config in its
  metadata that loads with no backbone file.

LoRA is folded into the frozen weights at load (W + (B @ A) * scaling, in float32), so the model is
a plain ViT. Nothing is ever half-loaded: every tensor of the model comes from a file and has the
right shape, or a ``WeightsError`` says what is wrong and what to pass instead. Files are read with
safetensors or ``torch.load(weights_only=True)`` only.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import struct
from typing import Dict, Iterable, List, Optional, Tuple

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .config import VariantConfig, load_config
from .errors import WeightsError, WeightsNotFoundError
from .model import LoRATModel, resize_pos_embed

EXPORT_FORMAT = "lorat-tracker/merged-v1"

# Per block: LoRA-adapted linear layers, named as in our (timm) model -> names used in LoRAT files.
_MLP_LINEARS = {"mlp.fc1": ("mlp.fc1", "mlp.w12"), "mlp.fc2": ("mlp.fc2", "mlp.w3")}
_BACKBONE_NAMES = {384: "ViT-S", 768: "ViT-B", 1024: "ViT-L", 1536: "ViT-g"}
_VARIANT_LETTER = {768: "B", 1024: "L", 1536: "g"}

StateDict = Dict[str, torch.Tensor]


# ----------------------------------------------------------------------------------------- reading

@dataclasses.dataclass
class WeightsFile:
    path: str
    tensors: StateDict
    metadata: Dict[str, str]
    container: str  # "safetensors" or "torch"


def read_weights_file(path) -> WeightsFile:
    """Read a safetensors or torch.save file (by content, not by name: ``.bin`` may be either)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise WeightsNotFoundError(f"weights file {path} does not exist - check the path")
    if os.path.isdir(path):
        raise WeightsError(f"{path} is a directory - pass the weights file inside it "
                           "(e.g. model.safetensors or the released .bin)")
    with open(path, "rb") as f:
        head = f.read(8)
        size = os.fstat(f.fileno()).st_size
    if len(head) < 8:
        raise WeightsError(f"weights file {path} is empty or truncated ({size} bytes)")
    if head[:2] == b"PK" or head[:1] == b"\x80":  # zip (torch.save) or legacy pickle
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any failure here means an unreadable file
            raise WeightsError(f"cannot read {path} as a torch checkpoint ({type(e).__name__}: {e}); "
                               "the file is corrupt or truncated - download it again") from None
        return WeightsFile(path, _unwrap(obj, path), {}, "torch")
    header_len = struct.unpack("<Q", head)[0]
    if header_len <= 0 or 8 + header_len > size:
        raise WeightsError(f"{path} is neither a safetensors nor a torch checkpoint, or it is truncated "
                           f"({size} bytes) - download it again")
    try:
        tensors, metadata = {}, {}
        with safe_open(path, framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            for k in f.keys():
                tensors[k] = f.get_tensor(k)
    except Exception as e:  # noqa: BLE001
        raise WeightsError(f"cannot read {path} as safetensors ({e}); the file is corrupt or truncated "
                           "- download it again") from None
    return WeightsFile(path, tensors, metadata, "safetensors")


def _unwrap(obj, path: str) -> StateDict:
    for key in ("model", "state_dict", "module"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


# --------------------------------------------------------------------------------------- inspecting

@dataclasses.dataclass
class WeightsInfo:
    """What a weights file is, for ``lorat info`` and for error messages."""
    path: str
    kind: str                     # merged-export | lorat-lora | lorat-full-unmerged | lorat-merged | backbone-meta | backbone-timm
    container: str
    num_tensors: int
    num_parameters: int
    embed_dim: Optional[int]
    depth: Optional[int]
    search_grid: Optional[int]
    ffn: Optional[str]
    lora_rank: Optional[int]
    lora_alpha: Optional[float]
    use_rslora: Optional[bool]
    needs_backbone: bool
    variant: Optional[str]        # best guess, e.g. "B-224", "L-*" when the grid is unknown

    def describe(self) -> str:
        lines = [f"file:            {self.path}",
                 f"format:          {self.kind} ({self.container})",
                 f"variant:         {self.variant or 'unknown'}",
                 f"backbone:        {_BACKBONE_NAMES.get(self.embed_dim, '?')} (embed dim {self.embed_dim}, "
                 f"depth {self.depth}, {self.ffn or '?'} FFN)",
                 f"tensors:         {self.num_tensors}",
                 f"parameters:      {self.num_parameters:,}"]
        if self.search_grid:
            lines.append(f"search grid:     {self.search_grid}x{self.search_grid}")
        if self.lora_rank is not None:
            alpha = "not stored (the variant's alpha is used)" if self.lora_alpha is None else f"{self.lora_alpha:g}"
            lines.append(f"LoRA:            rank {self.lora_rank}, alpha {alpha}, rsLoRA {bool(self.use_rslora)}")
        lines.append(f"needs backbone:  {'yes (pass the DINOv2 file with --backbone)' if self.needs_backbone else 'no'}")
        return "\n".join(lines)


def _block_indices(keys: Iterable[str]) -> List[int]:
    found = set()
    for k in keys:
        m = re.match(r"blocks\.(\d+)\.", k)
        if m:
            found.add(int(m.group(1)))
    return sorted(found)


def _classify(wf: WeightsFile) -> str:
    keys = wf.tensors.keys()
    if wf.metadata.get("format") == EXPORT_FORMAT:
        return "merged-export"
    has_lora = any(".lora." in k for k in keys)
    has_base = "patch_embed.proj.weight" in keys
    has_head = any(k.startswith("head.cls_mlp") for k in keys)
    if has_lora:
        return "lorat-full-unmerged" if has_base else "lorat-lora"
    if has_head:
        return "lorat-merged" if has_base else "lorat-head-only"
    if "mask_token" in keys or any(".mlp.w12." in k for k in keys):
        return "backbone-meta"
    if has_base:
        return "backbone-timm"
    return "unknown"


def inspect_weights(path) -> WeightsInfo:
    wf = read_weights_file(path)
    return _inspect(wf)


def _inspect(wf: WeightsFile) -> WeightsInfo:
    t = wf.tensors
    kind = _classify(wf)
    embed_dim = None
    for key in ("token_type_embed", "patch_embed.proj.weight", "norm.weight"):
        if key in t:
            embed_dim = t[key].shape[-1] if key == "token_type_embed" else t[key].shape[0]
            break
    blocks = _block_indices(t.keys())
    depth = blocks[-1] + 1 if blocks else None
    ffn = None
    if any(".mlp.w12." in k for k in t):
        ffn = "swiglu"
    elif any(".mlp.fc1." in k for k in t):
        # timm packs SwiGLU into fc1/fc2: then fc2's input is half of fc1's output.
        fc1 = next((v for k, v in t.items() if re.match(r"blocks\.\d+\.mlp\.fc1\.(linear\.)?weight$", k)), None)
        fc2 = next((v for k, v in t.items() if re.match(r"blocks\.\d+\.mlp\.fc2\.(linear\.)?weight$", k)), None)
        ffn = "swiglu" if fc1 is not None and fc2 is not None and fc1.shape[0] == 2 * fc2.shape[1] else "mlp"
    grid = None
    if wf.metadata.get("config"):
        cfg = VariantConfig.from_dict(json.loads(wf.metadata["config"]), source=wf.path)
        grid = cfg.search_grid
    elif "pos_embed" in t and kind.startswith("lorat"):
        grid = int(round(math.sqrt(t["pos_embed"].shape[1])))
    rank = next((v.shape[0] for k, v in t.items() if k.endswith(".lora.A")), None)
    alpha = float(t["lora_alpha"].item()) if "lora_alpha" in t else None
    rslora = bool(t["use_rslora"].item()) if "use_rslora" in t else None
    variant = None
    if wf.metadata.get("config"):
        variant = json.loads(wf.metadata["config"])["name"]
    elif embed_dim in _VARIANT_LETTER and kind.startswith("lorat"):
        geometry = {16: "224", 27: "378"}.get(grid, "224 or 378 (the file does not say; the file name usually does)")
        variant = f"{_VARIANT_LETTER[embed_dim]}-{geometry}"
    elif embed_dim in _VARIANT_LETTER:
        variant = f"{_VARIANT_LETTER[embed_dim]}-224 or {_VARIANT_LETTER[embed_dim]}-378 (a DINOv2 backbone)"
    params = sum(v.numel() for k, v in t.items() if k not in ("lora_alpha", "use_rslora"))
    return WeightsInfo(path=wf.path, kind=kind, container=wf.container, num_tensors=len(t),
                       num_parameters=params, embed_dim=embed_dim, depth=depth, search_grid=grid, ffn=ffn,
                       lora_rank=rank, lora_alpha=alpha, use_rslora=rslora,
                       needs_backbone=kind in ("lorat-lora", "lorat-head-only"), variant=variant)


# ----------------------------------------------------------------------------------------- backbone

def convert_backbone(state: StateDict, cfg: VariantConfig, source: str = "backbone") -> StateDict:
    """A Meta or timm DINOv2 state dict -> our model's backbone keys, pos_embed resized to the grid."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    state = dict(state)
    if "register_tokens" in state or "reg_token" in state:
        raise WeightsError(f"{source} is a DINOv2 with register tokens; LoRAT v1 uses the plain DINOv2 "
                           f"({cfg.backbone.meta_file or 'dinov2_vit*14_pretrain.pth'})")
    # Chunked Meta checkpoints (block_chunks > 0) store blocks.<chunk>.<index>.*
    state = {re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", k) if re.match(r"^blocks\.\d+\.\d+\.", k) else k: v
             for k, v in state.items()}
    pos = state.pop("pos_embed", None)
    if pos is None:
        raise WeightsError(f"{source} has no pos_embed: it is not a DINOv2 backbone file - pass "
                           f"{cfg.backbone.meta_file or 'the Meta dinov2_vit*14_pretrain.pth'}")
    probe = _FilterProbe(cfg)
    # timm's own converter: Meta key names (mask_token dropped, SwiGLU w12/w3 -> packed fc1/fc2).
    state = checkpoint_filter_fn(state, probe)
    out = {k: v for k, v in state.items() if k.startswith(("patch_embed.", "blocks.", "norm."))}
    _check_backbone_shapes(out, pos, cfg, source)
    out["pos_embed"] = resize_pos_embed(pos.float(), cfg.search_grid, cfg.backbone.pretrained_grid)
    return out


class _FilterProbe(torch.nn.Module):
    """The attributes timm's checkpoint_filter_fn looks at, without building a whole ViT."""

    def __init__(self, cfg: VariantConfig):
        super().__init__()
        b = cfg.backbone
        self.patch_embed = torch.nn.Module()
        self.patch_embed.proj = torch.nn.Conv2d(3, b.embed_dim, b.patch_size, b.patch_size, device="meta")
        self.pos_embed = None


def _check_backbone_shapes(out: StateDict, pos: torch.Tensor, cfg: VariantConfig, source: str) -> None:
    b = cfg.backbone
    w = out.get("patch_embed.proj.weight")
    if w is None:
        raise WeightsError(f"{source} has no patch_embed.proj.weight: it is not a DINOv2 backbone file")
    if w.shape[0] != b.embed_dim:
        raise WeightsError(_variant_mismatch(source, w.shape[0], cfg))
    if tuple(w.shape[-2:]) != (b.patch_size, b.patch_size):
        raise WeightsError(f"{source} has patch size {tuple(w.shape[-2:])}, variant {cfg.name} expects "
                           f"{b.patch_size} - LoRAT uses the patch-14 DINOv2 backbones")
    depth = len(_block_indices(out))
    if depth != b.depth:
        raise WeightsError(f"{source} has {depth} blocks but variant {cfg.name} expects {b.depth} - "
                           "pass the backbone of the variant's size")
    if pos.shape[1] not in (b.pretrained_grid ** 2, b.pretrained_grid ** 2 + 1):
        raise WeightsError(f"{source} pos_embed has {pos.shape[1]} positions, expected the "
                           f"{b.pretrained_grid}x{b.pretrained_grid} DINOv2 grid (+1 cls)")


def _variant_mismatch(source: str, embed_dim: int, cfg: VariantConfig) -> str:
    have = _BACKBONE_NAMES.get(embed_dim, "unknown size")
    msg = (f"{source} has embed dim {embed_dim} ({have}) but variant {cfg.name} expects "
           f"{cfg.backbone.embed_dim}")
    letter = _VARIANT_LETTER.get(embed_dim)
    geometry = cfg.name.split("-")[-1] if "-" in cfg.name else "224"
    if letter:
        return msg + f" - pass --variant {letter}-{geometry} (or the weights of {cfg.name})"
    return msg + " - pass the weights that belong to this variant"


def _fetch_backbone_with_timm(cfg: VariantConfig) -> StateDict:
    """No backbone file given: let timm fetch the DINOv2 weights (needs network; never in tests)."""
    name = cfg.backbone.timm_name
    if not name:
        raise WeightsError(f"variant {cfg.name} needs a DINOv2 backbone file: pass backbone=PATH")
    import timm

    try:
        return timm.create_model(name, pretrained=True, num_classes=0).state_dict()
    except Exception as e:  # noqa: BLE001 - no network, no cache, hub errors...
        raise WeightsError(
            f"no backbone file was given and timm could not fetch {name} ({type(e).__name__}); "
            f"pass backbone=PATH to {cfg.backbone.meta_file} (Meta) or the timm file of {name}") from None


# ---------------------------------------------------------------------------------------- LoRA merge

def lora_delta(a: torch.Tensor, b: torch.Tensor, scaling: float) -> torch.Tensor:
    """(B @ A) * scaling in float32, the official merge arithmetic."""
    return (b.float() @ a.float()) * scaling


def merge_lora(base: StateDict, lora: StateDict, cfg: VariantConfig, source: str) -> Tuple[StateDict, set]:
    """Fold LoRA pairs of ``lora`` into the backbone tensors of ``base`` (our key names).

    ``lora`` uses LoRAT key names: ``blocks.N.attn.qkv.{q,k,v}.lora.{A,B}``,
    ``blocks.N.attn.proj.lora.*``, ``blocks.N.mlp.{fc1,fc2 | w12,w3}.lora.*``; a full unmerged dict
    also carries ``...linear.weight/bias``, which replace the base weights. Returns the merged dict
    and the set of ``lora`` keys used.
    """
    out = dict(base)
    used = set()
    alpha_t, rslora_t = lora.get("lora_alpha"), lora.get("use_rslora")
    for k in ("lora_alpha", "use_rslora"):
        if k in lora:
            used.add(k)
    # Without the meta tensors (newer checkpoints), use the variant's alpha / rsLoRA. The official
    # loader falls back to scaling 1.0 there, which equals this for every released config (alpha = r).
    alpha = float(alpha_t.item()) if alpha_t is not None else float(cfg.lora.alpha)
    use_rslora = bool(rslora_t.item()) if rslora_t is not None else bool(cfg.lora.use_rslora)

    def take(key):
        used.add(key)
        return lora[key]

    def base_linear(prefix_ours: str, prefix_file: str, part: Optional[slice]):
        w_key, b_key = f"{prefix_ours}.weight", f"{prefix_ours}.bias"
        weight = bias = None
        for cand in (f"{prefix_file}.linear.weight", f"{prefix_file}.weight"):
            if cand in lora:
                weight = take(cand)
                break
        for cand in (f"{prefix_file}.linear.bias", f"{prefix_file}.bias"):
            if cand in lora:
                bias = take(cand)
                break
        if weight is None:
            if w_key not in out:
                raise WeightsError(f"{source}: no base weight for {prefix_file} - pass the DINOv2 backbone")
            weight = out[w_key] if part is None else out[w_key][part]
        if bias is None and b_key in out:
            bias = out[b_key] if part is None else out[b_key][part]
        return weight, bias

    def merged(prefix_file: str, weight: torch.Tensor) -> torch.Tensor:
        a_key, b_key = f"{prefix_file}.lora.A", f"{prefix_file}.lora.B"
        if a_key not in lora and b_key not in lora:
            return weight
        if a_key not in lora or b_key not in lora:
            raise WeightsError(f"{source}: {a_key if a_key not in lora else b_key} is missing "
                               "(LoRA A and B come in pairs) - the file is incomplete")
        a, b = take(a_key), take(b_key)
        r = a.shape[0]
        if b.shape[1] != r or a.shape[1] != weight.shape[1] or b.shape[0] != weight.shape[0]:
            raise WeightsError(f"{source}: LoRA {prefix_file} has A {tuple(a.shape)} and B {tuple(b.shape)}, "
                               f"which do not fit the weight {tuple(weight.shape)} of variant {cfg.name}")
        scaling = alpha / math.sqrt(r) if use_rslora else alpha / r
        return (weight.float() + lora_delta(a, b, scaling)).to(weight.dtype)

    d = cfg.backbone.embed_dim
    for n in range(cfg.backbone.depth):
        p = f"blocks.{n}"
        # Fused qkv: q, k, v rows merged separately, then concatenated in that order.
        if any(k.startswith(f"{p}.attn.qkv.") and k not in (f"{p}.attn.qkv.weight", f"{p}.attn.qkv.bias")
               for k in lora):
            weights, biases = [], []
            for i, part in enumerate("qkv"):
                rows = slice(i * d, (i + 1) * d)
                w, bias = base_linear(f"{p}.attn.qkv", f"{p}.attn.qkv.{part}", rows)
                weights.append(merged(f"{p}.attn.qkv.{part}", w))
                biases.append(bias)
            out[f"{p}.attn.qkv.weight"] = torch.cat(weights, 0)
            if all(bias is not None for bias in biases):
                out[f"{p}.attn.qkv.bias"] = torch.cat(biases, 0)
        linears = {"attn.proj": ("attn.proj",), **_MLP_LINEARS}
        for ours, file_names in linears.items():
            for file_name in file_names:
                prefix_file = f"{p}.{file_name}"
                if any(k.startswith(prefix_file + ".") for k in lora):
                    w, bias = base_linear(f"{p}.{ours}", prefix_file, None)
                    out[f"{p}.{ours}.weight"] = merged(prefix_file, w)
                    if bias is not None:
                        out[f"{p}.{ours}.bias"] = bias
    return out, used


# ------------------------------------------------------------------------------------- entry point

def build_model(variant, weights=None, backbone=None, device="cpu") -> LoRATModel:
    """The one entry point: a merged, ready-to-run ``LoRATModel`` in eval mode.

    ``variant``: a bundled name ("B-224"), a YAML path or a ``VariantConfig``; may be None when
    ``weights`` is a merged export (its config is stored inside). ``weights``: any LoRAT file above.
    ``backbone``: the DINOv2 file, needed unless ``weights`` already holds the backbone; when
    omitted, timm may fetch it.
    """
    wf = read_weights_file(weights) if weights is not None else None
    kind = _classify(wf) if wf is not None else None
    if kind == "merged-export":
        stored = VariantConfig.from_dict(json.loads(wf.metadata["config"]), source=wf.path)
        cfg = stored if variant is None else load_config(variant)
        if variant is not None and _arch(stored) != _arch(cfg):
            raise WeightsError(f"{wf.path} was exported for variant {stored.name} but {cfg.name} was asked - "
                               f"pass --variant {stored.name} (or no variant)")
    else:
        if variant is None:
            raise WeightsError("pass a variant (e.g. B-224): only a merged export made by "
                               "`lorat export` carries its own")
        cfg = load_config(variant)
    if wf is None:
        raise WeightsError(f"variant {cfg.name} needs LoRAT weights (the released .bin, a training "
                           "model.safetensors or a merged export) - pass weights=PATH")
    if kind in ("backbone-meta", "backbone-timm"):
        raise WeightsError(f"{wf.path} is a DINOv2 backbone, not LoRAT weights - pass it as backbone= "
                           "and the LoRAT .bin as weights=")
    if kind == "unknown":
        raise WeightsError(f"{wf.path} holds none of the tensors of a LoRAT model "
                           f"(first keys: {', '.join(list(wf.tensors)[:5])})")
    tensors = wf.tensors
    if "token_type_embed" in tensors and tensors["token_type_embed"].shape[-1] != cfg.backbone.embed_dim:
        raise WeightsError(_variant_mismatch(wf.path, tensors["token_type_embed"].shape[-1], cfg))

    lora_blocks = _block_indices(k for k in tensors if ".lora." in k)
    if lora_blocks and lora_blocks != list(range(cfg.backbone.depth)):
        raise WeightsError(f"{wf.path} has LoRA for {len(lora_blocks)} blocks but variant {cfg.name} has "
                           f"{cfg.backbone.depth} - it belongs to another variant; check --variant")

    if kind in ("lorat-lora", "lorat-head-only"):
        if backbone is not None:
            bf = read_weights_file(backbone)
            if _classify(bf).startswith("lorat") or _classify(bf) == "merged-export":
                raise WeightsError(f"{bf.path} is a LoRAT weights file, not a DINOv2 backbone - pass "
                                   f"{cfg.backbone.meta_file or 'the DINOv2 file'} as backbone")
            base = convert_backbone(bf.tensors, cfg, source=bf.path)
        else:
            base = convert_backbone(_fetch_backbone_with_timm(cfg), cfg, source=cfg.backbone.timm_name)
    else:
        # The file carries the backbone (full unmerged / merged / export): ignore a backbone argument.
        base = {k: v for k, v in tensors.items() if not (".lora." in k or ".linear." in k or ".qkv.q." in k
                                                         or ".qkv.k." in k or ".qkv.v." in k)}
        base = {_meta_to_timm_key(k): v for k, v in base.items() if k not in ("lora_alpha", "use_rslora")}
    merged, used = merge_lora(base, tensors, cfg, wf.path)
    for k in ("token_type_embed",) + tuple(k for k in tensors if k.startswith("head.")):
        if k in tensors:
            merged[k] = tensors[k]
            used.add(k)
    if kind in ("lorat-lora", "lorat-head-only"):
        unexpected = sorted(set(tensors) - used)
    else:
        unexpected = sorted(k for k in set(tensors) - used if _meta_to_timm_key(k) not in merged)
    if unexpected:
        raise WeightsError(f"{wf.path} has {len(unexpected)} tensors that variant {cfg.name} does not have "
                           f"({', '.join(unexpected[:4])}{', ...' if len(unexpected) > 4 else ''}) - "
                           "it was made for another architecture; check --variant")
    return _instantiate(cfg, merged, wf.path, device)


def _meta_to_timm_key(k: str) -> str:
    return k.replace(".mlp.w12.", ".mlp.fc1.").replace(".mlp.w3.", ".mlp.fc2.")


def _arch(cfg: VariantConfig):
    return (cfg.backbone.embed_dim, cfg.backbone.depth, cfg.backbone.num_heads, cfg.backbone.ffn,
            cfg.backbone.patch_size, cfg.template.size, cfg.search.size)


def _instantiate(cfg: VariantConfig, state: StateDict, source: str, device) -> LoRATModel:
    with torch.device("meta"):
        model = LoRATModel(cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        raise WeightsError(f"{source} lacks {len(missing)} tensors of variant {cfg.name} "
                           f"({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}) - "
                           "the file is incomplete, or a backbone file is needed (pass backbone=)")
    if unexpected:
        raise WeightsError(f"{source} has tensors that variant {cfg.name} does not have "
                           f"({', '.join(unexpected[:4])}) - check the variant")
    for k, ref in expected.items():
        if tuple(state[k].shape) != tuple(ref.shape):
            if k == "pos_embed":
                have = int(round(math.sqrt(state[k].shape[1])))
                hint = {16: "a 224 variant", 27: "a 378 variant"}.get(have, "another geometry")
                raise WeightsError(f"{source} has a {have}x{have} search grid ({hint}) but variant {cfg.name} "
                                   f"uses {cfg.search_grid}x{cfg.search_grid} - pass the matching variant")
            if k == "patch_embed.proj.weight" or k == "token_type_embed":
                raise WeightsError(_variant_mismatch(source, state[k].shape[0 if k.startswith("patch") else -1], cfg))
            raise WeightsError(f"{source}: tensor {k} has shape {tuple(state[k].shape)} but variant {cfg.name} "
                               f"expects {tuple(ref.shape)} - check the variant")
    state = {k: v.to(torch.float32).contiguous() for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.pos_embed.requires_grad_(False)
    model.head.reset_buffers()
    return model.eval().to(device)


def export_merged(model: LoRATModel, path) -> None:
    """One self-contained merged file: loads later with ``build_model(None, weights=path)``."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.fspath(path), metadata={"format": EXPORT_FORMAT, "config": model.cfg.to_json()})
