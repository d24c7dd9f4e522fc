"""open_clip's towers use ``nn.MultiheadAttention``, whose projections live in one fused parameter that
peft's LoRA cannot wrap (and whose ``out_proj`` weight is read directly by the fused kernel, so a wrapped
``out_proj`` would be bypassed). ``split_attention`` swaps each one for a module that computes the same
attention with four ordinary ``nn.Linear`` layers (q, k, v, out), which LoRA wraps like any other."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SplitMultiheadAttention(nn.Module):
    """``nn.MultiheadAttention``'s computation (no dropout) with separate q/k/v/out projections."""

    def __init__(self, embed_dim: int, num_heads: int, *, kdim: int | None = None, vdim: int | None = None,
                 bias: bool = True, batch_first: bool = False):
        super().__init__()
        self.embed_dim, self.num_heads, self.batch_first = embed_dim, num_heads, batch_first
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(kdim or embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(vdim or embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    @classmethod
    def from_mha(cls, mha: nn.MultiheadAttention) -> "SplitMultiheadAttention":
        split = cls(mha.embed_dim, mha.num_heads, kdim=mha.kdim, vdim=mha.vdim, bias=mha.in_proj_bias is not None,
                    batch_first=mha.batch_first)
        with torch.no_grad():
            if mha._qkv_same_embed_dim:
                q, k, v = mha.in_proj_weight.chunk(3)
            else:
                q, k, v = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
            for layer, weight in ((split.q_proj, q), (split.k_proj, k), (split.v_proj, v)):
                layer.weight.copy_(weight)
            if mha.in_proj_bias is not None:
                for layer, b in zip((split.q_proj, split.k_proj, split.v_proj), mha.in_proj_bias.chunk(3)):
                    layer.bias.copy_(b)
            split.out_proj.weight.copy_(mha.out_proj.weight)
            if mha.out_proj.bias is not None:
                split.out_proj.bias.copy_(mha.out_proj.bias)
        return split.to(mha.out_proj.weight.device, mha.out_proj.weight.dtype)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = False,
                attn_mask: torch.Tensor | None = None, **_ignored) -> tuple[torch.Tensor, None]:
        if not self.batch_first:
            query, key, value = (x.transpose(0, 1) for x in (query, key, value))
        b, q_len, _ = query.shape
        k_len = key.shape[1]
        heads, head_dim = self.num_heads, self.embed_dim // self.num_heads

        def split_heads(x: torch.Tensor, length: int) -> torch.Tensor:
            return x.view(b, length, heads, head_dim).transpose(1, 2)

        q = split_heads(self.q_proj(query), q_len)
        k = split_heads(self.k_proj(key), k_len)
        v = split_heads(self.v_proj(value), k_len)
        mask = _additive_mask(attn_mask, key_padding_mask, b, heads, q_len, k_len, q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = self.out_proj(out.transpose(1, 2).reshape(b, q_len, self.embed_dim))
        return (out if self.batch_first else out.transpose(0, 1)), None


def _additive_mask(attn_mask, key_padding_mask, b, heads, q_len, k_len, dtype) -> torch.Tensor | None:
    """MultiheadAttention's masks (bool: True = blocked; float: added) as one additive float mask."""
    mask = None
    if attn_mask is not None:
        mask = _as_additive(attn_mask, dtype)
        if mask.dim() == 3:  # (B * heads, L, S)
            mask = mask.view(b, heads, q_len, k_len)
    if key_padding_mask is not None:
        padding = _as_additive(key_padding_mask, dtype)[:, None, None, :]
        mask = padding if mask is None else mask + padding
    return mask


def _as_additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    return mask.to(dtype)


def split_attention(module: nn.Module) -> int:
    """Replace every ``nn.MultiheadAttention`` inside ``module`` in place; returns how many were replaced."""
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.MultiheadAttention):
                setattr(parent, name, SplitMultiheadAttention.from_mha(child))
                count += 1
    return count
