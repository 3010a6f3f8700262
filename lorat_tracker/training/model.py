"""LoRAT in training form: the inference network's modules, frozen, with LoRA on every block linear.

The training build is the inference ``LoRATModel`` (same timm blocks, same embeddings and head)
with adapters added, exactly as the official trainer builds it (reference section 2):

- every ``nn.Linear`` inside every block gets a LoRA adapter; the fused ``attn.qkv`` is split into
  three D -> D linears ``q``, ``k``, ``v`` (rows 0:D, D:2D, 2D:3D), each with its own adapter, and
  their outputs are concatenated again, so timm's attention is unchanged;
- the backbone (patch embedding, position embedding, every block tensor, final norm) is frozen;
  the LoRA A/B matrices, the head and the token-type embedding are trained;
- official initialisation ("bert"): LoRA A and B, the head's weights and the token-type embedding
  trunc-normal(std 0.02, bounds +-2), head biases 0. B is *not* zero, so an untrained LoRA model
  differs from the pretrained backbone (reference 2.2, 4.9);
- parameter names are the official ones (``blocks.N.attn.qkv.q.lora.A``, ``...linear.weight``), so
  a released ``.bin`` loads one-to-one and ``save_lorat_bin`` writes the released format. The only
  renaming is ViT-g's FFN: timm calls DINOv2's fused ``w12``/``w3`` ``fc1``/``fc2``.

Why the adapter is written here rather than taken from peft (checked against peft 0.21): peft wraps
a layer as ``base_layer`` + ``lora_A.<adapter>.weight`` / ``lora_B.<adapter>.weight``, cannot split a
fused qkv into three independent adapters (a single adapter on the fused layer has one shared A
and a dense B: a different model with other numbers), and has no "bert" initialisation. Using it
would need the qkv split done here anyway plus a name translation at every boundary (optimizer
groups, released files, checkpoints). The adapter itself is a few lines; the test suite checks its
forward against peft's ``LoraLayer`` on the same A and B.

Merging for inference reuses ``weights.merge_lora``, the code that merges released files.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Dict, Iterator, Optional, Tuple

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from timm.layers import drop_path as timm_drop_path

from ..config import LoRAConfig, VariantConfig, validate
from ..errors import ConfigError, WeightsError
from ..model import LoRATModel
from ..runtime import resolve_device
from ..weights import META_KEYS, StateDict, check_tensors, instantiate, is_trainable_name, merge_lora, resolve

# Linears of a block that carry a plain (unsplit) adapter, in our (timm) names.
_PLAIN_LINEARS = ("attn.proj", "mlp.fc1", "mlp.fc2")


# ------------------------------------------------------------------------------------------- LoRA

class LoRA(nn.Module):
    """The low-rank update ((x @ A^T) @ B^T) * scaling; A (r, in), B (out, r); no dropout (official 0)."""

    def __init__(self, in_features: int, out_features: int, r: int, alpha: float, use_rslora: bool):
        super().__init__()
        if r < 1:
            raise WeightsError(f"LoRA rank must be >= 1, got {r}")
        self.A = nn.Parameter(torch.empty(r, in_features))
        self.B = nn.Parameter(torch.empty(out_features, r))
        self.r, self.alpha, self.use_rslora = r, alpha, use_rslora
        self.scaling = alpha / math.sqrt(r) if use_rslora else alpha / r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.A.transpose(0, 1) @ self.B.transpose(0, 1)) * self.scaling


class LinearWithLoRA(nn.Module):
    """A frozen ``linear`` plus its adapter ``lora`` (official module and parameter names)."""

    def __init__(self, linear: nn.Linear, r: int, alpha: float, use_rslora: bool):
        super().__init__()
        self.linear = linear
        self.lora = LoRA(linear.in_features, linear.out_features, r, alpha, use_rslora)

    @property
    def in_features(self) -> int:
        return self.linear.in_features

    @property
    def out_features(self) -> int:
        return self.linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.lora(x)


class QKVWithLoRA(nn.Module):
    """The fused qkv linear as three D -> D linears ``q``, ``k``, ``v``, each with its own adapter."""

    def __init__(self, dim: int, bias: bool, r: int, alpha: float, use_rslora: bool):
        super().__init__()
        self.q = LinearWithLoRA(nn.Linear(dim, dim, bias=bias), r, alpha, use_rslora)
        self.k = LinearWithLoRA(nn.Linear(dim, dim, bias=bias), r, alpha, use_rslora)
        self.v = LinearWithLoRA(nn.Linear(dim, dim, bias=bias), r, alpha, use_rslora)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.q(x), self.k(x), self.v(x)), dim=-1)


# -------------------------------------------------------------------------------- stochastic depth

def subset_drop_residual(x: torch.Tensor, branch: Callable[[torch.Tensor], torch.Tensor],
                         rate: float) -> torch.Tensor:
    """DINOv2's stochastic depth for rates > 0.1 (ViT-g): the residual branch runs on a random subset
    of max(1, floor(B (1 - rate))) samples and is added to them scaled by B / subset; the others skip
    it. Not in timm (whose DropPath zeroes per sample but still computes every sample), so by hand."""
    b = x.shape[0]
    keep = max(int(b * (1 - rate)), 1)
    index = torch.randperm(b, device=x.device)[:keep]
    residual = branch(x[index])
    out = torch.index_add(x.flatten(1), 0, index, residual.flatten(1).to(x.dtype), alpha=b / keep)
    return out.view_as(x)


# ------------------------------------------------------------------------------------------- model

class TrainingModel(LoRATModel):
    """The LoRAT network in training form (frozen backbone + LoRA; trainable head, token types).

    ``forward(z, x, z_feat_mask) -> (score_map (N,H,W) logits, boxes (N,H,W,4))`` exactly as the
    inference model. In ``train()`` mode the variant's drop path is active (DINOv2's rules: per-sample
    drop path up to 0.1, the batch-subset variant above 0.1); with ``grad_checkpointing`` every block's
    activations are recomputed in the backward pass (ViT-g memory).
    """

    def __init__(self, cfg: VariantConfig, *, grad_checkpointing: bool = False):
        super().__init__(cfg)
        lc = cfg.lora
        for block in self.blocks:
            qkv = block.attn.qkv
            block.attn.qkv = QKVWithLoRA(qkv.in_features, qkv.bias is not None, lc.r, lc.alpha, lc.use_rslora)
            for name in _PLAIN_LINEARS:
                parent, attr = name.split(".")
                owner = getattr(block, parent)
                setattr(owner, attr, LinearWithLoRA(getattr(owner, attr), lc.r, lc.alpha, lc.use_rslora))
        self.drop_path = cfg.backbone.drop_path
        self.grad_checkpointing = grad_checkpointing
        self._freeze()

    # -- what is trained
    def _freeze(self) -> None:
        for name, p in self.named_parameters():
            p.requires_grad_(is_trainable_name(name))

    def official_name(self, name: str) -> str:
        """Our parameter name -> the name in LoRAT files (ViT-g: timm's fc1/fc2 are DINOv2's w12/w3)."""
        if self.cfg.backbone.ffn == "swiglu":
            return name.replace(".mlp.fc1.", ".mlp.w12.").replace(".mlp.fc2.", ".mlp.w3.")
        return name

    def named_trainable_parameters(self) -> Iterator[Tuple[str, nn.Parameter]]:
        """(official name, parameter) of every trained tensor, in module order."""
        for name, p in self.named_parameters():
            if p.requires_grad:
                yield self.official_name(name), p

    def trainable_state_dict(self) -> Dict[str, torch.Tensor]:
        """Every trained tensor under its official name (as in ``lorat.bin``, without the meta keys);
        detached views of the live parameters."""
        return {name: p.detach() for name, p in self.named_trainable_parameters()}

    @torch.no_grad()
    def load_trainable_state_dict(self, tensors: Dict[str, torch.Tensor], source: str = "checkpoint") -> None:
        """Copy trained tensors (official names, e.g. a ``lorat.bin`` or a checkpoint) into the live
        parameters in place, so an optimizer holding them stays valid (resume). Every trainable tensor
        must be present with its shape, finite; the meta tensors, if present, must match this model."""
        tensors = dict(tensors)
        meta = {k: tensors.pop(k) for k in META_KEYS if k in tensors}
        ours = self.lora_meta()
        for k, v in meta.items():
            if float(v.item()) != float(ours[k].item()):
                raise WeightsError(f"{source} has {k} = {v.item()} but this model uses {ours[k].item()} - "
                                   "it was trained with other LoRA settings")
        named = dict(self.named_trainable_parameters())
        missing = sorted(set(named) - set(tensors))
        unexpected = sorted(set(tensors) - set(named))
        if missing or unexpected:
            raise WeightsError(f"{source} does not fit variant {self.cfg.name}: "
                               f"{len(missing)} trainable tensors missing ({', '.join(missing[:3])}), "
                               f"{len(unexpected)} unexpected ({', '.join(unexpected[:3])})")
        check_tensors(tensors, source)
        for k, p in named.items():
            if tuple(tensors[k].shape) != tuple(p.shape):
                raise WeightsError(f"{source}: tensor {k} has shape {tuple(tensors[k].shape)}, expected "
                                   f"{tuple(p.shape)} - it belongs to another variant or LoRA rank")
        for k, p in named.items():
            p.copy_(tensors[k])

    def lora_meta(self) -> Dict[str, torch.Tensor]:
        """The two 0-d meta tensors of the released format: ``lora_alpha`` (int64 when integral,
        as the official ``torch.tensor(alpha)`` of an int) and ``use_rslora`` (bool)."""
        alpha = self.cfg.lora.alpha
        alpha_t = torch.tensor(int(alpha)) if float(alpha).is_integer() else torch.tensor(float(alpha))
        return {"lora_alpha": alpha_t, "use_rslora": torch.tensor(bool(self.cfg.lora.use_rslora))}

    # -- forward
    def forward_blocks(self, tokens: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                # preserve_rng_state (default) replays the same drop-path draws in the recomputation.
                tokens = checkpoint(self._block, block, tokens, use_reentrant=False)
            else:
                tokens = self._block(block, tokens)
        return tokens

    def _block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        rate = self.drop_path if self.training else 0.0
        if rate == 0.0:
            return block(x)

        def attn_branch(t):
            return block.ls1(block.attn(block.norm1(t)))

        def ffn_branch(t):
            return block.ls2(block.mlp(block.norm2(t)))

        if rate > 0.1:
            x = subset_drop_residual(x, attn_branch, rate)
            return subset_drop_residual(x, ffn_branch, rate)
        x = x + timm_drop_path(attn_branch(x), rate, True)
        return x + timm_drop_path(ffn_branch(x), rate, True)

    # -- inference
    def merged_model(self, device=None) -> LoRATModel:
        """A plain inference ``LoRATModel`` with the LoRA folded in by ``weights.merge_lora``, the code
        that merges released files (same arithmetic, same key handling)."""
        state = {k: v.detach() for k, v in self.state_dict().items()}  # merged on the model's device
        adapters = {self.official_name(k): v for k, v in state.items() if ".linear." in k or ".lora." in k}
        adapters.update(self.lora_meta())
        # Copies: the merged model must not share the head / token types that training keeps updating.
        base = {k: v.clone() for k, v in state.items() if not (".linear." in k or ".lora." in k)}
        merged, _ = merge_lora(base, adapters, self.cfg, source="the training model")
        dev = device if device is not None else self.pos_embed.device
        return instantiate(self.cfg, merged, "the training model", dev).eval()


# ----------------------------------------------------------------------------------------- builder

def build_training_model(variant, backbone=None, weights=None, *, rank: Optional[int] = None,
                         alpha: Optional[float] = None, rslora: Optional[bool] = None,
                         grad_checkpointing: bool = False, device="cpu", drop_path: Optional[float] = None,
                         seed: Optional[int] = None) -> TrainingModel:
    """The training model of ``variant`` on the frozen DINOv2 ``backbone`` file.

    ``weights``: released LoRAT weights to fine-tune (the ``.bin``, a training ``model.safetensors``,
    an ``OUT/lorat.bin`` or a full unmerged state dict); without them LoRA, head and token-type
    embedding get the official initialisation (drawn from ``seed`` when given). ``rank`` / ``alpha`` /
    ``rslora`` default to the weights file's (its A shape and meta tensors), else the variant's;
    giving one that contradicts the file is an error. ``drop_path`` overrides the variant's rate.
    """
    res = resolve(variant, weights, backbone, training=True)
    cfg = _resolve_lora(res.cfg, res.trained, res.weights_source, rank, alpha, rslora)
    if drop_path is not None:
        cfg = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, drop_path=float(drop_path)))
        problems = validate(cfg)
        if problems:
            raise ConfigError(f"drop_path {drop_path}: " + "; ".join(problems))
    # The frozen backbone (resolved in inference keys) in the training layout, plus the trained tensors.
    state = _split_for_training(res.base, cfg)
    with torch.device("meta"):
        skeleton = TrainingModel(cfg)
    if res.weights_source is not None:
        state.update(_trainable_from_file(skeleton, res.trained, res.weights_source))
    else:
        state.update(official_init(skeleton, seed))
    model = instantiate(cfg, state, res.backbone_source, resolve_device(device),
                        model_class=lambda c: TrainingModel(c, grad_checkpointing=grad_checkpointing))
    model._freeze()
    return model


def _resolve_lora(cfg: VariantConfig, file_state: StateDict, path: Optional[str], rank, alpha,
                  rslora) -> VariantConfig:
    """LoRA hyper-parameters: explicit > weights file > variant; a contradiction is an error."""
    file_rank = next((v.shape[0] for k, v in file_state.items() if k.endswith(".lora.A")), None)
    file_alpha = float(file_state["lora_alpha"].item()) if "lora_alpha" in file_state else None
    file_rslora = bool(file_state["use_rslora"].item()) if "use_rslora" in file_state else None
    for flag, given, stored in (("--lora-rank", rank, file_rank), ("--lora-alpha", alpha, file_alpha),
                                ("--rslora", rslora, file_rslora)):
        if given is not None and stored is not None and type(stored)(given) != stored:
            raise WeightsError(f"{path} was trained with {flag.lstrip('-').replace('-', ' ')} {stored}, "
                               f"but {given} was asked ({flag}) - omit {flag} to continue with the file's "
                               "value, or start without --weights")
    r = int(rank if rank is not None else (file_rank if file_rank is not None else cfg.lora.r))
    a = alpha if alpha is not None else (file_alpha if file_alpha is not None else cfg.lora.alpha)
    rs = rslora if rslora is not None else (file_rslora if file_rslora is not None else cfg.lora.use_rslora)
    if r < 1:
        raise WeightsError(f"LoRA rank must be >= 1, got {r} (--lora-rank)")
    if not (isinstance(a, (int, float)) and math.isfinite(a) and a > 0):
        raise WeightsError(f"LoRA alpha must be a positive number, got {a!r} (--lora-alpha)")
    a = int(a) if float(a).is_integer() else float(a)
    return dataclasses.replace(cfg, lora=LoRAConfig(r=r, alpha=a, use_rslora=bool(rs)))


def _split_for_training(frozen: StateDict, cfg: VariantConfig) -> StateDict:
    """Inference keys -> training keys: fused qkv rows -> q/k/v ``.linear``, other linears -> ``.linear``."""
    out = dict(frozen)
    d = cfg.backbone.embed_dim
    for n in range(cfg.backbone.depth):
        p = f"blocks.{n}"
        for suffix in ("weight", "bias"):
            fused = out.pop(f"{p}.attn.qkv.{suffix}", None)
            if fused is not None:
                for i, part in enumerate("qkv"):
                    out[f"{p}.attn.qkv.{part}.linear.{suffix}"] = fused[i * d:(i + 1) * d]
            for name in _PLAIN_LINEARS:
                t = out.pop(f"{p}.{name}.{suffix}", None)
                if t is not None:
                    out[f"{p}.{name}.linear.{suffix}"] = t
    return out


def _trainable_from_file(model: TrainingModel, file_state: StateDict, path: str) -> StateDict:
    """The trained tensors of a LoRAT file, under our names; every one present, nothing left over."""
    ours = {model.official_name(k): k for k in model.state_dict() if is_trainable_name(k)}
    missing = sorted(name for name in ours if name not in file_state)
    if missing:
        raise WeightsError(f"{path} lacks {len(missing)} trainable tensors of variant {model.cfg.name} "
                           f"({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}) - it belongs "
                           "to another variant or LoRA layout, or it is incomplete")
    # (resolve has refused frozen tensors in a LoRA-only file; a full file's are the backbone.)
    unexpected = sorted(k for k in file_state if k not in ours and is_trainable_name(k))
    if unexpected:
        raise WeightsError(f"{path} has {len(unexpected)} trainable tensors that variant {model.cfg.name} "
                           f"does not have ({', '.join(unexpected[:4])}) - check --variant")
    shapes = model.state_dict()
    for name, k in ours.items():
        if tuple(file_state[name].shape) != tuple(shapes[k].shape):
            raise WeightsError(f"{path}: tensor {name} has shape {tuple(file_state[name].shape)} but variant "
                               f"{model.cfg.name} expects {tuple(shapes[k].shape)} - check --variant")
    return {k: file_state[name] for name, k in ours.items()}


def official_init(model: TrainingModel, seed: Optional[int] = None) -> StateDict:
    """Official initialisation of the trained tensors (our names): LoRA A and B, head weights and
    token-type embedding trunc-normal(0, 0.02, bounds +-2) ("bert" init), head biases 0."""
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    out = {}
    for name, ref in model.state_dict().items():
        if not is_trainable_name(name):
            continue
        t = torch.empty(ref.shape, dtype=torch.float32)
        if name.startswith("head.") and name.endswith(".bias"):
            t.zero_()
        else:
            nn.init.trunc_normal_(t, mean=0.0, std=0.02, a=-2.0, b=2.0, generator=gen)
        out[name] = t
    return out


# ------------------------------------------------------------------------------------------ saving

def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel and/or torch.compile wrapper."""
    model = getattr(model, "module", model)          # DistributedDataParallel
    return getattr(model, "_orig_mod", model)        # torch.compile


def lorat_bin_tensors(model: TrainingModel) -> Dict[str, torch.Tensor]:
    """What ``lorat.bin`` holds: every trained tensor (official names, float32) + the meta tensors."""
    model = unwrap_model(model)
    tensors = {k: v.to("cpu", torch.float32).contiguous() for k, v in model.trainable_state_dict().items()}
    tensors.update(model.lora_meta())
    return tensors


def save_lorat_bin(model: TrainingModel, path) -> None:
    """Write ``path`` in the released format (a safetensors file named .bin, no metadata header):
    the trained tensors with official key names plus the 0-d ``lora_alpha`` / ``use_rslora`` tensors.

    The meta tensors are always written (the 2024 saver skipped them when alpha == 1 and rsLoRA is off,
    and the official loader then falls back to scaling 1.0, which is wrong for r != 1). The file
    appears atomically (temporary file in the same folder, fsync, rename) with mode 0o666 & ~umask.
    """
    from safetensors.torch import save

    from ..io import atomic_open

    with atomic_open(path, "wb") as f:
        f.write(save(lorat_bin_tensors(model)))


__all__ = ["LoRA", "LinearWithLoRA", "QKVWithLoRA", "TrainingModel", "build_training_model", "save_lorat_bin",
           "lorat_bin_tensors", "official_init", "is_trainable_name",
           "subset_drop_residual", "unwrap_model", "META_KEYS"]
