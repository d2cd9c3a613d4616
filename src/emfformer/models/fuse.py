"""Inference-time BatchNorm folding: conv + BN pairs become one conv with a bias.

In eval mode BatchNorm is a fixed per-channel affine map, so ``BN(conv(x)) = conv'(x)`` with
``W' = W * g / sqrt(var + eps)`` and ``b' = (b - mean) * g / sqrt(var + eps) + beta``. Folding removes
one memory-bound pass over every conv output. Only BatchNorms directly after a conv inside a
``ConvNorm`` are folded; the pre-norms of the transformer blocks (BN before attention / FFN) stay.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .layers import ConvNorm

__all__ = ["fold_batchnorm"]


@torch.no_grad()
def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode,
    )  # fmt: skip
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused.to(conv.weight.device)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) with every ConvNorm's BatchNorm folded into its conv.

    Same outputs up to float rounding; for inference only (the copy cannot be trained as before).
    """
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if isinstance(module, ConvNorm) and isinstance(module[1], nn.BatchNorm2d):
            module[0] = _folded(module[0], module[1])
            module[1] = nn.Identity()
    return model
