"""The LoRAT network (inference build): a plain DINOv2 ViT over template + search tokens.

Built from timm's ViT ``Block`` (LayerScale, SDPA attention, MLP or packed SwiGLU FFN), which
reproduces the official DINOv2 blocks bit-exactly, plus LoRAT's own parts: a patch embedding
without a size check, the shared position embedding, the token-type embedding and the MLP
anchor-free head. LoRA is merged into the weights before they reach this module (see
``weights.py``), so this is exactly a plain ViT at inference time.

The model is a pure function of tensors: ``forward(z, x, z_feat_mask) -> (score_map, boxes)``.
"""
from __future__ import annotations

from functools import partial
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .config import VariantConfig


class PatchEmbed(nn.Module):
    """Conv patchify without DINOv2's input-size assertion (template and search differ in size)."""

    def __init__(self, patch_size: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, H*W, D), row-major


class MlpAnchorFreeHead(nn.Module):
    """Per search token: a score logit and an (l, t, r, b) box around the cell centre."""

    def __init__(self, dim: int, grid: int):
        super().__init__()
        self.grid = grid
        self.cls_mlp = _ThreeLayerMlp(dim, 1)
        self.reg_mlp = _ThreeLayerMlp(dim, 4)
        self.register_buffer("bbox_offset", torch.empty(grid, grid, 2), persistent=False)
        self.reset_buffers()

    def reset_buffers(self) -> None:
        """Normalised cell centres (j + 0.5) / W, (i + 0.5) / H as (x, y) (also after a meta-device build)."""
        centres = (torch.arange(self.grid, dtype=torch.float32, device="cpu") + 0.5) / self.grid
        ref = torch.stack(torch.meshgrid(centres, centres, indexing="xy"), dim=-1)
        self.bbox_offset = ref.to(self.bbox_offset.device if self.bbox_offset.device.type != "meta" else "cpu")

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        score_map = self.cls_mlp(x).float().view(b, self.grid, self.grid)
        ltrb = self.reg_mlp(x).float().sigmoid().view(b, self.grid, self.grid, 4)
        ref = self.bbox_offset
        boxes = torch.cat((ref - ltrb[..., :2], ref + ltrb[..., 2:]), dim=-1)
        return score_map, boxes


class _ThreeLayerMlp(nn.Module):
    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, out_dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.layers[0](x))
        x = F.gelu(self.layers[1](x))
        return self.layers[2](x)


def _make_block(cfg: VariantConfig) -> nn.Module:
    # timm (with the torchvision it imports, ~2 s) is imported when a model is built, not with this module:
    # `lorat info` and the weights checks read files without building one.
    from timm.layers import GluMlp, Mlp
    from timm.models.vision_transformer import Block

    b = cfg.backbone
    if b.ffn == "swiglu":
        # timm's "packed" SwiGLU: fc1 = DINOv2's fused w12 (first half gated by SiLU), fc2 = w3.
        mlp_layer = partial(GluMlp, gate_last=False)
        act_layer = nn.SiLU
        mlp_ratio = 2 * b.ffn_hidden / b.embed_dim
    else:
        mlp_layer, act_layer, mlp_ratio = Mlp, nn.GELU, 4.0
    block = Block(dim=b.embed_dim, num_heads=b.num_heads, mlp_ratio=mlp_ratio, qkv_bias=True,
                  init_values=1e-5, act_layer=act_layer, norm_layer=partial(nn.LayerNorm, eps=1e-6),
                  mlp_layer=mlp_layer)
    expected_hidden = 2 * b.ffn_hidden if b.ffn == "swiglu" else b.ffn_hidden
    if block.mlp.fc1.out_features != expected_hidden:  # int(dim * ratio) rounding; rebuild exactly
        block.mlp = mlp_layer(in_features=b.embed_dim, hidden_features=expected_hidden, act_layer=act_layer)
    return block


class LoRATModel(nn.Module):
    """LoRAT one-stream tracker network with merged (plain) weights."""

    def __init__(self, cfg: VariantConfig):
        super().__init__()
        self.cfg = cfg
        b = cfg.backbone
        self.template_grid = cfg.template_grid
        self.search_grid = cfg.search_grid
        self.patch_embed = PatchEmbed(b.patch_size, b.embed_dim)
        # Shared position embedding on the search grid (derived from DINOv2's by resize_pos_embed).
        self.pos_embed = nn.Parameter(torch.zeros(1, self.search_grid ** 2, b.embed_dim), requires_grad=False)
        # Rows: 0 template background, 1 template foreground, 2 search.
        self.token_type_embed = nn.Parameter(torch.zeros(3, b.embed_dim))
        self.blocks = nn.ModuleList([_make_block(cfg) for _ in range(b.depth)])
        self.norm = nn.LayerNorm(b.embed_dim, eps=1e-6)
        self.head = MlpAnchorFreeHead(b.embed_dim, self.search_grid)

    def template_pos_embed(self) -> torch.Tensor:
        """The template takes the top-left template_grid x template_grid block of the search grid."""
        d = self.pos_embed.shape[-1]
        g, t = self.search_grid, self.template_grid
        return self.pos_embed.view(1, g, g, d)[:, :t, :t, :].reshape(1, t * t, d)

    def forward(self, z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        """z (B,3,Ht,Wt), x (B,3,Hs,Ws) normalised; z_feat_mask (B,Hz,Wz) int64 0/1.

        Returns the score map (B,H,W) float32 logits and boxes (B,H,W,4) float32 x1y1x2y2
        normalised by the search size.
        """
        z_tok = self.patch_embed(z) + self.template_pos_embed() + self.token_type_embed[z_feat_mask.flatten(1)]
        x_tok = self.patch_embed(x) + self.pos_embed + self.token_type_embed[2].view(1, 1, -1)
        tokens = self.forward_blocks(torch.cat((z_tok, x_tok), dim=1))
        tokens = self.norm(tokens)
        # .contiguous(): for B > 1 the search-token slice is a strided view, and F.linear on a strided
        # 3-D input takes a matmul path whose float32 sums differ in the last bit from the batch-1
        # (contiguous) path; copying gives every row of a batched forward the batch-1 arithmetic, so
        # rows are bit-identical wherever the BLAS sums batched GEMMs like single ones (see
        # lorat_tracker.batched). A no-op at B = 1, so single-target results are unchanged.
        return self.head(tokens[:, z_tok.shape[1]:].contiguous())

    def forward_blocks(self, tokens: torch.Tensor) -> torch.Tensor:
        """The ViT blocks on the joint sequence (the training build overrides this: drop path, checkpointing)."""
        for block in self.blocks:
            tokens = block(tokens)
        return tokens


def resize_pos_embed(pretrained: torch.Tensor, grid: int, pretrained_grid: int) -> torch.Tensor:
    """DINOv2 pos_embed (1, 1 + G*G, D) -> (1, grid*grid, D): drop cls, bicubic resize.

    Exactly the official derivation: align_corners False, no antialias, no "+0.1" offset (timm's
    ``resample_abs_pos_embed`` antialiases by default and would give other numbers).
    """
    d = pretrained.shape[-1]
    n = pretrained.shape[1]
    if n == pretrained_grid ** 2 + 1:
        patch = pretrained[:, 1:]
    elif n == pretrained_grid ** 2:
        patch = pretrained
    else:
        raise ValueError(f"pos_embed has {n} positions, expected {pretrained_grid ** 2} (+1 cls)")
    grid_in = patch.reshape(1, pretrained_grid, pretrained_grid, d).permute(0, 3, 1, 2).float()
    out = F.interpolate(grid_in, size=(grid, grid), mode="bicubic", align_corners=False, antialias=False)
    return out.permute(0, 2, 3, 1).reshape(1, grid * grid, d).to(pretrained.dtype)
