"""Standard softmax multi-head self-attention (Vaswani et al., 2017): the ablation of VAA.

`SoftmaxAttention` is written with explicit matrix products, as in ViT / TransUNet / Swin, so the N x N
attention matrix exists in memory: that quadratic cost is what EMF-former claims to remove.
`SDPAttention` computes the same function with `torch.nn.functional.scaled_dot_product_attention`, the
fused, memory-efficient kernel a user would pick today: the fairer baseline for memory claims.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import check_positive

__all__ = ["SoftmaxAttention", "SDPAttention"]


class SoftmaxAttention(nn.Module):
    """softmax(Q K^T / sqrt(d)) V with ``num_heads`` heads computed together.

    Args:
        in_dim: channels of the input tokens.
        head_dim: channels d of each head.
        num_heads: heads h (1 inside a serial S-MHA head).

    Shapes: (B, N, in_dim) -> (B, N, h * d); the attention matrix is (B, h, N, N).
    """

    def __init__(self, in_dim: int, head_dim: int, num_heads: int = 1) -> None:
        super().__init__()
        check_positive(in_dim=in_dim, head_dim=head_dim, num_heads=num_heads)
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(in_dim, 3 * num_heads * head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)  # (B, h, N, N)
        return (attn @ v).transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim)


class SDPAttention(SoftmaxAttention):
    """The same attention as `SoftmaxAttention` through ``F.scaled_dot_product_attention`` (fused kernel).

    Same parameters and shapes: (B, N, in_dim) -> (B, N, h * d).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return out.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim)
