"""S-MHA: serial multi-head attention (EMF-former, Hao et al., MICCAI 2024).

The paper: heads are computed one after another instead of in parallel, some heads are ignored, which
cuts feature redundancy and memory. INFERRED from EfficientViT's cascaded group attention (Liu et al.,
CVPR 2023): the C channels are split into h chunks of C/h; head i attends over chunk i plus the output
of head i-1, so later heads refine earlier ones; outputs are concatenated and projected. Each head only
works on C/h channels, so the largest live intermediate is ~1/h of parallel attention.

"Ignored heads" (INFERRED, an option): only the first ``active_heads`` chunks are attended; the other
chunks skip attention and reach the output projection unchanged, saving their compute.

``heads="parallel"`` is the ablation: ordinary multi-head attention where every head projects the full
C channels, all heads computed together.
"""

from __future__ import annotations

import torch
from torch import nn

from .mhsa import SDPAttention, SoftmaxAttention
from .vaa import VectorAggregationAttention

__all__ = ["SerialMultiHeadAttention", "ATTENTIONS"]

ATTENTIONS: dict[str, type[nn.Module]] = {
    "vaa": VectorAggregationAttention,
    "mhsa": SoftmaxAttention,
    "sdpa": SDPAttention,
}


class SerialMultiHeadAttention(nn.Module):
    """Multi-head attention over tokens with serial (cascaded) or parallel heads.

    Args:
        dim: token channels C.
        num_heads: heads h; C must be divisible by h.
        attention: per-head attention, ``"vaa"`` (default, O(N)), ``"mhsa"`` (softmax with explicit
            N x N matrix) or ``"sdpa"`` (the same softmax through the fused PyTorch kernel).
        heads: ``"serial"`` (S-MHA, default) or ``"parallel"`` (ordinary multi-head attention).
        active_heads: heads actually computed in serial mode (default: all).

    Shapes: (B, N, C) -> (B, N, C).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        attention: str = "vaa",
        heads: str = "serial",
        active_heads: int | None = None,
    ) -> None:
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {sorted(ATTENTIONS)}, got {attention!r}")
        if heads not in ("serial", "parallel"):
            raise ValueError(f"heads must be 'serial' or 'parallel', got {heads!r}")
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        active_heads = num_heads if active_heads is None else active_heads
        if not 1 <= active_heads <= num_heads:
            raise ValueError(f"active_heads must be in [1, {num_heads}], got {active_heads}")
        if heads == "parallel" and active_heads != num_heads:
            raise ValueError("active_heads (ignored heads) only applies to heads='serial'")
        attn_cls = ATTENTIONS[attention]
        self.serial = heads == "serial"
        self.head_dim = dim // num_heads
        self.active_heads = active_heads
        if self.serial:
            self.heads = nn.ModuleList(attn_cls(self.head_dim, self.head_dim, 1) for _ in range(active_heads))
        else:
            self.heads = nn.ModuleList([attn_cls(dim, self.head_dim, num_heads)])
        self.proj = nn.Sequential(nn.GELU(), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.serial:
            return self.proj(self.heads[0](x))
        chunks = x.split(self.head_dim, dim=-1)
        outs: list[torch.Tensor] = []
        for i, head in enumerate(self.heads):
            # the cascade: head i also sees what head i-1 produced
            outs.append(head(chunks[i] if i == 0 else chunks[i] + outs[-1]))
        outs.extend(chunks[self.active_heads :])  # ignored heads pass through
        return self.proj(torch.cat(outs, dim=-1))
