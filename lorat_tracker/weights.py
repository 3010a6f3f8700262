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
import hashlib
import json
import math
import os
import pickle
import re
import struct
import warnings
from typing import Dict, Iterable, List, Optional, Tuple

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .config import VariantConfig, load_config
from .errors import ConfigError, WeightsError, WeightsNotFoundError
from .io import atomic_path
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
    """Read a safetensors or torch.save file (by content, not by name: ``.bin`` may be either).

    Every tensor is checked where it enters (``check_tensors``): floating point and finite, so a
    damaged file is refused with the tensor's name instead of tracking NaN boxes.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise WeightsNotFoundError(f"weights file {path} does not exist - check the path")
    if os.path.isdir(path):
        raise WeightsError(f"{path} is a directory - pass the weights file inside it "
                           "(e.g. model.safetensors or the released .bin)")
    with open(path, "rb") as f:
        head = f.read(1024)
        size = os.fstat(f.fileno()).st_size
    if len(head) < 8:
        raise WeightsError(f"weights file {path} is empty or truncated ({size} bytes)")
    if head[:2] == b"PK" or head[:1] == b"\x80":  # zip (torch.save) or legacy pickle
        wf = WeightsFile(path, _unwrap(_torch_load(path, head), path), {}, "torch")
    else:
        header_len = struct.unpack("<Q", head[:8])[0]
        if head[8:9] != b"{" or header_len < 2 or header_len > _MAX_SAFETENSORS_HEADER:
            raise WeightsError(_not_weights(path, head))
        if 8 + header_len > size:
            raise WeightsError(f"{path} is a truncated safetensors file ({size} bytes, the header alone needs "
                               f"{8 + header_len}) - download it again")
        try:
            tensors, metadata = {}, {}
            with safe_open(path, framework="pt", device="cpu") as f:
                metadata = dict(f.metadata() or {})
                for k in f.keys():
                    tensors[k] = f.get_tensor(k)
        except Exception as e:  # noqa: BLE001
            raise WeightsError(f"cannot read {path} as safetensors ({e}); the file is corrupt or truncated "
                               "- download it again") from None
        wf = WeightsFile(path, tensors, metadata, "safetensors")
    check_tensors(wf.tensors, path)
    return wf


# A safetensors header is JSON describing the tensors: even ViT-g's is far below this.
_MAX_SAFETENSORS_HEADER = 100 * 2 ** 20


def _not_weights(path: str, head: bytes) -> str:
    """The message for a file that is neither a safetensors nor a torch.save file."""
    try:
        head.decode("utf-8")
        is_text = b"\x00" not in head
    except UnicodeDecodeError as e:
        # A multi-byte character cut at the end of the sample is still text.
        is_text = e.start >= len(head) - 3 and b"\x00" not in head
    what = "a text file" if is_text else "neither a safetensors nor a torch.save file"
    return (f"{path} is not a weights file ({what}) - pass the LoRAT weights (the released .bin, a "
            "model.safetensors or a merged export from lorat export) or a DINOv2 .pth")


def _torch_load(path: str, head: bytes):
    """``torch.load(weights_only=True)``, with torch's own error text replaced by ours.

    torch's message for a refused pickle advises re-running with ``weights_only=False``, i.e.
    executing whatever code the file holds: never relay that to a user.
    """
    try:
        with warnings.catch_warnings():
            # e.g. "Detected pickle protocol 4 ... weights_only Unpickler": about torch, not for our users
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure here means an unreadable file
        if isinstance(e, pickle.UnpicklingError) and "weights only load failed" in str(e).lower():
            reason = "a pickle holding Python objects besides tensors (or a corrupt one)"
        elif head[:2] == b"PK":
            reason = "a corrupt or truncated zip archive, or a zip that is not a torch checkpoint"
        else:
            reason = "a corrupt or truncated pickle"
        raise WeightsError(f"cannot read {path} as a torch checkpoint: it is {reason}. Only plain tensors are "
                           "ever loaded from a .pth/.bin file (no code in it runs) - download it again, or "
                           "save the state dict alone (a dict of tensors) or as safetensors") from None


def check_tensors(tensors: StateDict, source: str) -> None:
    """Refuse non-float and non-finite tensors, naming the tensor and the file.

    ``lora_alpha`` / ``use_rslora`` are the released files' 0-d meta tensors: a positive finite number
    and a boolean. Every other tensor of a LoRAT or DINOv2 file is a floating-point weight.
    """
    for name, t in tensors.items():
        if name == "use_rslora":
            if t.numel() != 1 or t.is_floating_point() or t.is_complex() or t.item() not in (0, 1):
                raise WeightsError(f"{source}: tensor use_rslora must be one boolean, got {_describe(t)} - "
                                   "the file is damaged; download it again")
            continue
        if name == "lora_alpha":
            value = float(t.item()) if t.numel() == 1 and t.dtype != torch.bool and not t.is_complex() else None
            if value is None or not math.isfinite(value) or value <= 0:
                raise WeightsError(f"{source}: tensor lora_alpha must be one positive finite number, got "
                                   f"{_describe(t)} - the file is damaged; download it again")
            continue
        if not t.is_floating_point():
            raise WeightsError(f"{source}: tensor {name} has dtype {str(t.dtype).replace('torch.', '')}, but the "
                               "weights of a LoRAT/DINOv2 model are floating point - the file is damaged or is "
                               "not a model checkpoint")
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            nan = int(torch.isnan(t).sum())
            inf = int((~finite).sum()) - nan
            what = " and ".join(p for p in (f"{nan} NaN" if nan else "", f"{inf} infinite" if inf else "") if p)
            raise WeightsError(f"{source}: tensor {name} holds {what} value(s) (of {t.numel()}) - the file is "
                               "damaged or comes from a diverged training run; use another copy")


def _describe(t: torch.Tensor) -> str:
    dtype = str(t.dtype).replace("torch.", "")
    if t.numel() == 1:
        return f"{t.item()!r} ({dtype})"
    return f"a {dtype} tensor of shape {tuple(t.shape)}"


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
    stored = export_config(wf) if kind == "merged-export" else None
    if stored is not None:
        grid = stored.search_grid
    elif "pos_embed" in t and kind.startswith("lorat"):
        grid = int(round(math.sqrt(t["pos_embed"].shape[1])))
    rank = next((v.shape[0] for k, v in t.items() if k.endswith(".lora.A")), None)
    alpha = float(t["lora_alpha"].item()) if "lora_alpha" in t else None
    rslora = bool(t["use_rslora"].item()) if "use_rslora" in t else None
    variant = None
    if stored is not None:
        variant = stored.name
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
        return msg + f" - pass variant='{letter}-{geometry}' (or the weights of {cfg.name})"
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
        stored = export_config(wf)
        cfg = stored if variant is None else load_config(variant)
        if variant is not None and _arch(stored) != _arch(cfg):
            raise WeightsError(f"{wf.path} was exported for variant {stored.name} but {cfg.name} was asked - "
                               f"pass variant='{stored.name}' (or no variant)")
    else:
        if variant is None:
            raise WeightsError("pass a variant (e.g. B-224): only a merged export made by "
                               "`lorat export` carries its own")
        cfg = load_config(variant)
    if wf is None:
        raise WeightsError(f"variant {cfg.name} needs LoRAT weights (the released .bin, a training "
                           "model.safetensors or a merged export) - pass weights=PATH")
    if kind in ("backbone-meta", "backbone-timm"):
        raise WeightsError(f"{wf.path} is a DINOv2 backbone, not LoRAT weights - pass it as backbone=PATH "
                           "and the LoRAT .bin as weights=PATH")
    if kind == "unknown":
        raise WeightsError(f"{wf.path} holds none of the tensors of a LoRAT model "
                           f"(first keys: {', '.join(list(wf.tensors)[:5])})")
    tensors = wf.tensors
    if "token_type_embed" in tensors and tensors["token_type_embed"].shape[-1] != cfg.backbone.embed_dim:
        raise WeightsError(_variant_mismatch(wf.path, tensors["token_type_embed"].shape[-1], cfg))

    lora_blocks = _block_indices(k for k in tensors if ".lora." in k)
    if lora_blocks and lora_blocks != list(range(cfg.backbone.depth)):
        raise WeightsError(f"{wf.path} has LoRA for {len(lora_blocks)} blocks but variant {cfg.name} has "
                           f"{cfg.backbone.depth} - it belongs to another variant; check the variant (variant=)")

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
                           "it was made for another architecture; check the variant (variant=)")
    return _instantiate(cfg, merged, wf.path, device)


def _shape_mismatch(source: str, key: str, have: tuple, want: tuple, cfg: VariantConfig) -> str:
    """Say which dimension of ``key`` is wrong, and blame the variant only if it is the embed dim."""
    embed_axis = {"patch_embed.proj.weight": 0, "token_type_embed": -1}.get(key)
    if embed_axis is not None and len(have) == len(want) and have[embed_axis] != want[embed_axis]:
        return _variant_mismatch(source, have[embed_axis], cfg)
    if key == "token_type_embed" and len(have) == 2 and have[-1] == want[-1]:
        return (f"{source}: tensor token_type_embed has {have[0]} token types (shape {have}), but LoRAT has "
                f"{want[0]} (template background, template foreground, search region; shape {want}) - the "
                "file is damaged or is not LoRAT weights")
    return (f"{source}: tensor {key} has shape {have} but variant {cfg.name} expects {want} - the file belongs "
            "to another architecture (check the variant) or is damaged")


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
                           "the file is incomplete, or a backbone file is needed (pass backbone=PATH)")
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
            raise WeightsError(_shape_mismatch(source, k, tuple(state[k].shape), tuple(ref.shape), cfg))
    state = {k: v.to(torch.float32).contiguous() for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.pos_embed.requires_grad_(False)
    model.head.reset_buffers()
    return model.eval().to(device)


def export_merged(model: LoRATModel, path) -> None:
    """One self-contained merged file: loads later with ``build_model(None, weights=path)``.

    The header carries the variant configuration and a digest of it and of the tensor layout
    (``export_digest``), checked at load: an edited header is refused instead of tracking with other
    boxes. Written atomically (``lorat_tracker.io``), with the mode the umask asks for.
    """
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    check_tensors(state, "the model to export")
    metadata = {"format": EXPORT_FORMAT, "config": model.cfg.to_json(), "digest": export_digest(model.cfg, state)}
    with atomic_path(path) as tmp:
        save_file(state, tmp, metadata=metadata)


def export_digest(cfg: VariantConfig, tensors: StateDict) -> str:
    """sha256 of the canonical configuration JSON and of every tensor's name, dtype and shape.

    It makes edits of an export's header detectable (a changed ``num_heads`` or ``window_penalty``
    still parses and validates); it is not a signature, and tensor values are not hashed (they are
    checked to be finite floats on every load instead).
    """
    h = hashlib.sha256(cfg.to_json().encode("utf-8"))
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"\n{name} {str(t.dtype).replace('torch.', '')} {list(t.shape)}".encode("utf-8"))
    return "sha256:" + h.hexdigest()


def export_config(wf: WeightsFile) -> VariantConfig:
    """The variant configuration of a merged export, validated like a YAML variant and digest-checked."""
    reexport = "re-export it with lorat export"
    text = wf.metadata.get("config")
    if not text:
        raise WeightsError(f"{wf.path} is marked as a merged export but carries no configuration - {reexport}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise WeightsError(f"{wf.path}: the export's configuration is not valid JSON ({e.msg}, character {e.pos}) - "
                           f"the header was edited or damaged; {reexport}") from None
    try:
        cfg = VariantConfig.from_dict(data, source=f"in the header of {wf.path}", hint=reexport)
    except ConfigError as e:
        raise WeightsError(str(e)) from None
    stored = wf.metadata.get("digest")
    if stored is None:
        raise WeightsError(f"{wf.path} carries no digest of its configuration (it was written by an older "
                           f"lorat export, or its header was edited) - {reexport}")
    if stored != export_digest(cfg, wf.tensors):
        raise WeightsError(f"{wf.path}: the export's configuration was edited: the digest written by lorat export "
                           f"does not match its configuration ({cfg.name}) and tensor layout - {reexport}")
    return cfg
