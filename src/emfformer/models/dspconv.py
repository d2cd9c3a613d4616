"""DSPConv: depthwise separable shuffled convolution (EMF-former, Hao et al., MICCAI 2024).

The paper names the parts: depthwise conv + channel shuffle + pointwise conv. It publishes no layout.
INFERRED design (see docs/architecture.md): a channel shuffle in front of a *dense* 1x1 conv is only a
permutation of that conv's weights, so it would change nothing. We therefore split the pointwise conv
into two *grouped* 1x1 convs (ShuffleNet v1 style) and shuffle between them:

    x -> DW kxk + BN -> grouped PW (C_in -> e*C_out, g groups) + BN + GELU -> shuffle(g)
      -> grouped PW (e*C_out -> C_out, g groups) + BN

With the shuffle every output channel depends on every input channel; without it the two grouped convs
keep the g channel groups apart. Two grouped 1x1 convs with g groups cost 2e/g of one dense 1x1 conv.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import ConvNorm, ConvNormAct, channel_shuffle

__all__ = ["DSPConv", "PlainConv", "make_conv_unit"]


class DSPConv(nn.Module):
    """Depthwise conv -> grouped PW -> channel shuffle -> grouped PW.

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out (defaults to C_in).
        kernel_size: depthwise kernel size.
        groups: groups g of both pointwise convs (and of the shuffle).
        expansion: hidden width e*C_out between the pointwise convs.
        shuffle: apply the channel shuffle (ablation switch; off keeps the groups isolated).

    Shapes: (B, C_in, H, W) -> (B, C_out, H, W).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        kernel_size: int = 3,
        groups: int = 4,
        expansion: float = 2.0,
        shuffle: bool = True,
    ) -> None:
        super().__init__()
        out_channels = out_channels or in_channels
        hidden = int(round(out_channels * expansion))
        for name, ch in (("in_channels", in_channels), ("out_channels", out_channels), ("hidden", hidden)):
            if ch % groups:
                raise ValueError(f"DSPConv: {name}={ch} must be divisible by groups={groups}")
        if kernel_size % 2 == 0:
            raise ValueError(f"DSPConv: kernel_size must be odd, got {kernel_size}")
        self.groups = groups
        self.shuffle = shuffle
        self.dw = ConvNorm(in_channels, in_channels, kernel_size, groups=in_channels)
        self.pw1 = ConvNormAct(in_channels, hidden, 1, groups=groups)
        self.pw2 = ConvNorm(hidden, out_channels, 1, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pw1(self.dw(x))
        if self.shuffle:
            x = channel_shuffle(x, self.groups)
        return self.pw2(x)


class PlainConv(nn.Sequential):
    """Ablation stand-in for DSPConv with dense convs: kxk conv + BN + GELU -> 1x1 conv + BN.

    The same order as DSPConv (spatial mixing, nonlinearity, channel mixing) with ordinary convs, so the
    twin is a real nonlinear conv block, not an affine map. (B, C_in, H, W) -> (B, C_out, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, kernel_size: int = 3) -> None:
        out_channels = out_channels or in_channels
        super().__init__(
            ConvNormAct(in_channels, out_channels, kernel_size), ConvNorm(out_channels, out_channels, 1)
        )


def make_conv_unit(
    conv: str,
    in_channels: int,
    out_channels: int | None = None,
    groups: int = 4,
    expansion: float = 2.0,
    shuffle: bool = True,
) -> nn.Module:
    """Build the convolution unit of a block: ``conv="dspconv"`` (default) or ``"plain"`` (3x3 conv)."""
    if conv == "dspconv":
        return DSPConv(in_channels, out_channels, groups=groups, expansion=expansion, shuffle=shuffle)
    if conv == "plain":
        return PlainConv(in_channels, out_channels)
    raise ValueError(f"conv must be 'dspconv' or 'plain', got {conv!r}")
