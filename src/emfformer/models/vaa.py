"""VAA: vector aggregation attention (EMF-former, Hao et al., MICCAI 2024).

The paper: "replaces key-value interactions with element-wise multiplication after broadcasting two
vectors", then a fully connected layer produces the output. It publishes no formula. INFERRED from the
closest published mechanism, SwiftFormer's efficient additive attention (Shaker et al., ICCV 2023,
``Amshaker/SwiftFormer`` ``EfficientAdditiveAttnetion``), applied per head:

    q, k = Wq x, Wk x                 (B, h, N, d), L2-normalised over channels
    a    = q . w_g / sqrt(d)          (B, h, N, 1), a learnable vector per head, L2-normalised over N
    g    = sum_n a_n q_n              (B, h, 1, d)  the global query vector
    out  = W_o( FC(g * k) + q )       g broadcast over the N tokens and multiplied element-wise with k

No N x N tensor exists: memory and compute are O(N d).
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import check_positive

__all__ = ["VectorAggregationAttention", "l2_normalize"]


def l2_normalize(x: torch.Tensor, dim: int, eps: float = 1e-12) -> torch.Tensor:
    """``F.normalize(x, dim=dim)`` (the same values), written with a broadcast division: F.normalize
    expands the norm to ``x``'s full shape first, which ONNX exports as an Expand op per call (8 % of
    onnxruntime's time for EMF-former-S at 224 x 224)."""
    return x / torch.linalg.vector_norm(x, dim=dim, keepdim=True).clamp_min(eps)


class VectorAggregationAttention(nn.Module):
    """Vector aggregation attention with ``num_heads`` heads computed together.

    Args:
        in_dim: channels of the input tokens.
        head_dim: channels d of each head.
        num_heads: heads h computed in one batched op (1 inside a serial S-MHA head).

    Shapes: (B, N, in_dim) -> (B, N, h * d).
    """

    def __init__(self, in_dim: int, head_dim: int, num_heads: int = 1) -> None:
        super().__init__()
        check_positive(in_dim=in_dim, head_dim=head_dim, num_heads=num_heads)
        self.num_heads = num_heads
        self.head_dim = head_dim
        inner = num_heads * head_dim
        self.to_q = nn.Linear(in_dim, inner)
        self.to_k = nn.Linear(in_dim, inner)
        self.w_g = nn.Parameter(torch.randn(num_heads, head_dim))
        self.scale = head_dim**-0.5
        self.fc = nn.Linear(inner, inner)  # the fully connected layer that replaces the K-V product
        self.out = nn.Linear(inner, inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        h, d = self.num_heads, self.head_dim
        q = l2_normalize(self.to_q(x).view(b, n, h, d), dim=-1)
        k = l2_normalize(self.to_k(x).view(b, n, h, d), dim=-1)
        a = torch.einsum("bnhd,hd->bnh", q, self.w_g) * self.scale
        a = l2_normalize(a, dim=1)  # over tokens: the weights of the global aggregation
        g = torch.einsum("bnh,bnhd->bhd", a, q).unsqueeze(1)  # (B, 1, h, d): one vector per head
        return self.out(self.fc((g * k).reshape(b, n, h * d)) + q.reshape(b, n, h * d))
