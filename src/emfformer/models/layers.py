"""Small generic layers shared by the EMF-former parts (no paper-specific logic here)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

__all__ = [
    "ConvNorm",
    "ConvNormAct",
    "LayerScale2d",
    "channel_shuffle",
    "check_positive",
    "init_conv_fan_out",
    "to_tokens",
    "from_tokens",
]


class ConvNorm(nn.Sequential):
    """Conv2d (no bias) + BatchNorm2d [+ activation]. (B, C_in, H, W) -> (B, C_out, H/stride, W/stride)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        act_layer: type[nn.Module] | None = None,
    ) -> None:
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible by groups ({groups})"
            )
        conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=False,
        )
        super().__init__(conv, nn.BatchNorm2d(out_channels), *([act_layer()] if act_layer else []))


class ConvNormAct(ConvNorm):
    """Conv2d + BatchNorm2d + activation (GELU by default); arguments as `ConvNorm`."""

    def __init__(self, *args: Any, act_layer: type[nn.Module] = nn.GELU, **kwargs: Any) -> None:
        super().__init__(*args, act_layer=act_layer, **kwargs)


class LayerScale2d(nn.Module):
    """Per-channel learnable scale of a residual branch (B, C, H, W) -> same shape (CaiT / SwiftFormer)."""

    def __init__(self, dim: int, init_value: float = 0.1) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim, 1, 1), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


def check_positive(**values: int) -> None:
    """Raise ValueError naming every argument that is < 1."""
    bad = {k: v for k, v in values.items() if v < 1}
    if bad:
        raise ValueError(f"{', '.join(bad)} must be >= 1, got {bad}")


def check_input_side(x: torch.Tensor, multiple: int, name: str) -> None:
    """Refuse an input (B, C, H, W) whose H or W is not a multiple of the network's total stride.

    Raises:
        ValueError: naming the network and the side to pad to.
    """
    h, w = x.shape[-2:]
    if h % multiple or w % multiple:
        ph, pw = -(-h // multiple) * multiple, -(-w // multiple) * multiple
        raise ValueError(
            f"{name} needs H and W divisible by {multiple}; got {h}x{w}. Pad the input to {ph}x{pw}."
        )


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle: (B, g*c, H, W) viewed as (B, g, c, H, W), transposed to (B, c, g, H, W).

    After the shuffle, every group of a following grouped conv sees one channel of each previous group.
    """
    b, ch, h, w = x.shape
    if ch % groups:
        raise ValueError(f"channel_shuffle: {ch} channels are not divisible by {groups} groups")
    return x.view(b, groups, ch // groups, h, w).transpose(1, 2).reshape(b, ch, h, w)


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, N=H*W, C)."""
    return x.flatten(2).transpose(1, 2)


def from_tokens(t: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, N=H*W, C) -> (B, C, H, W)."""
    return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], height, width)


def init_conv_fan_out(module: nn.Module) -> None:
    """He-normal on fan-out, N(0, sqrt(2 / (k * C_out / groups))), and a zero bias, for a Conv1d / Conv2d;
    other modules are left as they are. The initialisation of UNeXt, EGE-UNet and MALUNet's code (use
    with ``model.apply``)."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        fan_out = math.prod(module.kernel_size) * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
