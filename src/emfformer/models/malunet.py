"""MALUNet: a light-weight U-shaped segmenter built from four attention modules (DGA, IEA, CAB, SAB).

Ruan, Xiang, Xie, Liu & Fu, "MALUNet: A Multi-Attention and Light-weight UNet for Skin Lesion
Segmentation", IEEE International Conference on Bioinformatics and Biomedicine (BIBM) 2022,
arXiv:2211.01784. Written here from the paper; the authors' code (github.com/JCruan519/MALUNet) was
read to pin the details the paper leaves open (our forward matches theirs to float rounding).

Layout (total stride 32, six encoder and five decoder stages):

    enc 1-3: 3x3 conv -> GN -> maxpool 2 -> GELU        enc 4-5: IEA -> DGA -> GN -> maxpool 2 -> GELU
    enc 6 @1/32: IEA -> DGA -> GELU;  bridge (SAB then CAB) on the five pooled skips t1..t5
    dec 1 @1/32: DGA -> IEA -> GN -> GELU, + t5;  dec 2-3: DGA -> IEA -> GN -> up x2 -> GELU, + skip
    dec 4-5: 3x3 conv -> GN -> up x2 -> GELU, + skip;  head: 1x1 conv @1/2 -> up x2 -> logits @1/1

Choices the paper leaves open or where we differ from the authors' code:

- Widths ``c_list`` = 8/16/24/32/48/64 and the dilations of DGA's four channel groups 7/5/2/1,
  widest first: the authors' code (their assignment of rates to channel groups).
- Stage order as the authors' code: IEA before DGA in the encoder, DGA before IEA in the decoder.
- Norms: GroupNorm with 4 groups everywhere (authors' code), so every width must be divisible by 4.
- IEA's memory size S = ``memory_ratio`` x C with ``memory_ratio`` = 4 ("inverted": wider than the
  features, authors' code). The two memories M_k (C -> S) and M_v (S -> C) are independent
  parameters; M_v starts as a copy of M_k transposed. The authors' code assigns M_k's storage to M_v,
  so there the two stay tied in training; we keep the two memories of external attention (Guo et
  al. 2021) that the paper describes, and the parameter count the paper reports counts both.
- IEA double normalisation (softmax over positions, then L1 over the memory axis): external attention.
- CAB: the authors' ``split_att`` switch ("fc" or a 1x1 Conv1d) computes the same map; we keep "fc",
  as one Linear to all five stages' widths split afterwards (identical to five Linears).
- SAB's shared conv: 7x7, dilation 3, as the authors' code. Bridge on by default; ``bridge=False``
  (the authors' switch, used for the paper's ablation) adds the skips without attention.
- Upsampling: bilinear x2 with ``align_corners=True`` (authors' code).
- Output: raw logits for ``num_classes`` classes (the authors end with a sigmoid for one class);
  ``in_channels`` is general (the paper: 3, RGB dermoscopy).
- Initialisation as the authors' code: He fan-out normal convs, truncated normal (std 0.02) Linears.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .layers import check_input_side, init_conv_fan_out

__all__ = [
    "DilatedGatedAttention",
    "InvertedExternalAttention",
    "ChannelAttentionBridge",
    "SpatialAttentionBridge",
    "AttentionBridge",
    "MALUNet",
    "PAPER_CONFIG",
    "malunet",
]

TOTAL_STRIDE = 32  # five 2x2 max-pools: H and W must be multiples of 2**5

# The configuration whose size the paper reports (ISIC RGB images, one lesion class).
PAPER_CONFIG: dict[str, Any] = dict(in_channels=3, num_classes=1)


# ---------------------------------------------------------------------------------------- layers


class SeparableConv(nn.Sequential):
    """Depthwise kxk conv -> GroupNorm -> pointwise 1x1. (B, C_in, H, W) -> (B, C_out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, gn_groups: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, in_channels, kernel_size, padding=kernel_size // 2, groups=in_channels),
            nn.GroupNorm(gn_groups, in_channels),
            nn.Conv2d(in_channels, out_channels, 1),
        )


# ------------------------------------------------------------------------------------- attention


class GatedAttentionUnit(nn.Module):
    """Gate (sigmoid) x value (GELU) from two separable convs, projected, plus a 1x1 shortcut.

    Shapes: (B, C_in, H, W) -> (B, C_out, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, gn_groups: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.gate = SeparableConv(in_channels, in_channels, kernel_size, gn_groups)
        # the value branch sees a wider window than the gate (k + 2), as in the authors' code
        self.value = SeparableConv(in_channels, in_channels, kernel_size + 2, gn_groups)
        self.out = SeparableConv(in_channels, out_channels, kernel_size, gn_groups)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gated = torch.sigmoid(self.gate(x)) * F.gelu(self.value(x))
        return F.gelu(self.out(gated)) + self.shortcut(x)


class DilatedGatedAttention(nn.Module):
    """DGA: four channel groups, each a depthwise 3x3 conv of its own dilation, mixed, then the GAU.

    Shapes: (B, C_in, H, W) -> (B, C_out, H, W); C_in divisible by 4.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dilations: tuple[int, ...] = (7, 5, 2, 1),
        gn_groups: int = 4,
    ) -> None:
        super().__init__()
        if in_channels % len(dilations):
            raise ValueError(f"DGA: in_channels ({in_channels}) must be divisible by {len(dilations)} groups")
        split = in_channels // len(dilations)
        self.split = split
        # small dilations keep local detail, large ones reach far at the cost of no extra weights
        self.branches = nn.ModuleList(
            nn.Conv2d(split, split, 3, padding=d, dilation=d, groups=split) for d in dilations
        )
        self.mix = nn.Sequential(nn.GroupNorm(gn_groups, in_channels), nn.Conv2d(in_channels, in_channels, 1))
        self.gau = GatedAttentionUnit(in_channels, out_channels, gn_groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.split(x, self.split, dim=1)
        x = torch.cat([branch(p) for branch, p in zip(self.branches, parts, strict=True)], dim=1)
        return self.gau(F.gelu(self.mix(x)))


class InvertedExternalAttention(nn.Module):
    """IEA: external attention with two learned memories wider than the features (S = ratio x C).

    Shapes: (B, C, H, W) -> (B, C, H, W). Cost is linear in H*W: positions attend to S memory slots,
    shared by all images (the paper: they "characterise the whole dataset").
    """

    def __init__(self, dim: int, memory_ratio: int = 4, gn_groups: int = 4) -> None:
        super().__init__()
        slots = dim * memory_ratio
        self.proj_in = nn.Conv2d(dim, dim, 1)
        # He fan-out init of a C -> S linear map; M_v starts as M_k transposed (a copy: trained apart)
        key = torch.randn(slots, dim) * math.sqrt(2.0 / slots)
        self.memory_key = nn.Parameter(key)
        self.memory_value = nn.Parameter(key.t().clone())
        self.proj_out = nn.Conv2d(dim, dim, 1, bias=False)
        self.norm = nn.GroupNorm(gn_groups, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.proj_in(x).flatten(2)  # (B, C, N)
        attn = torch.matmul(self.memory_key, tokens).softmax(dim=-1)  # (B, S, N), normalised over N
        # double normalisation: each position's weights over the S slots sum to 1
        attn = attn / (attn.sum(dim=1, keepdim=True) + 1e-9)
        out = torch.matmul(self.memory_value, attn).view_as(x)  # (B, C, H, W)
        return F.gelu(self.norm(self.proj_out(out)) + x)


# --------------------------------------------------------------------------------------- bridges


class ChannelAttentionBridge(nn.Module):
    """CAB: one channel-attention map per skip, from the pooled channels of all skips together.

    Shapes: list of (B, C_i, H_i, W_i) -> list of (B, C_i, 1, 1) maps in (0, 1).
    """

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.channels = tuple(channels)
        # 1D conv across the concatenated channel descriptor: local interaction, across stage borders
        self.local = nn.Conv1d(1, 1, 3, padding=1, bias=False)
        self.split = nn.Linear(sum(channels), sum(channels))  # = one FC per stage (global fusion)

    def forward(self, skips: list[torch.Tensor]) -> list[torch.Tensor]:
        pooled = torch.cat([t.mean(dim=(2, 3)) for t in skips], dim=1)  # (B, sum C)
        att = torch.sigmoid(self.split(self.local(pooled.unsqueeze(1)).squeeze(1)))
        return [a[..., None, None] for a in torch.split(att, self.channels, dim=1)]


class SpatialAttentionBridge(nn.Module):
    """SAB: one shared dilated conv maps each skip's channel mean and max to a spatial map.

    Shapes: list of (B, C_i, H_i, W_i) -> list of (B, 1, H_i, W_i) maps in (0, 1).
    """

    def __init__(self, kernel_size: int = 7, dilation: int = 3) -> None:
        super().__init__()
        # one conv for all stages: the same "where is the lesion" rule at every scale, 99 weights
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=dilation * (kernel_size // 2), dilation=dilation)

    def forward(self, skips: list[torch.Tensor]) -> list[torch.Tensor]:
        return [
            torch.sigmoid(self.conv(torch.cat([t.mean(dim=1, keepdim=True), t.amax(dim=1, keepdim=True)], 1)))
            for t in skips
        ]


class AttentionBridge(nn.Module):
    """SAB then CAB on the skips, each with a residual, as the authors' code combines them.

    Shapes: list of five (B, C_i, H_i, W_i) -> list of the same shapes.
    """

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.spatial = SpatialAttentionBridge()
        self.channel = ChannelAttentionBridge(channels)

    def forward(self, skips: list[torch.Tensor]) -> list[torch.Tensor]:
        spatial = [s * t for s, t in zip(self.spatial(skips), skips, strict=True)]
        mid = [s + t for s, t in zip(spatial, skips, strict=True)]
        return [c * m + s for c, m, s in zip(self.channel(mid), mid, spatial, strict=True)]


# ----------------------------------------------------------------------------------------- block


class AttentionBlock(nn.Sequential):
    """IEA -> DGA (encoder) or DGA -> IEA (decoder). (B, C_in, H, W) -> (B, C_out, H, W)."""

    def __init__(
        self, in_channels: int, out_channels: int, decoder: bool, dilations: tuple[int, ...],
        memory_ratio: int, gn_groups: int,
    ) -> None:  # fmt: skip
        dga = DilatedGatedAttention(in_channels, out_channels, dilations, gn_groups)
        iea = InvertedExternalAttention(out_channels if decoder else in_channels, memory_ratio, gn_groups)
        super().__init__(*((dga, iea) if decoder else (iea, dga)))


# ----------------------------------------------------------------------------------------- stage


class EncoderStage(nn.Module):
    """body -> [GroupNorm] -> [maxpool 2] -> GELU. (B, C_in, H, W) -> (B, C_out, H/s, W/s), s = 2 or 1."""

    def __init__(self, body: nn.Module, out_channels: int, gn_groups: int, last: bool = False) -> None:
        super().__init__()
        self.body = body
        # the bottleneck stage neither normalises nor pools (authors' code)
        self.norm = nn.Identity() if last else nn.GroupNorm(gn_groups, out_channels)
        self.pool = nn.Identity() if last else nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.pool(self.norm(self.body(x))))


class DecoderStage(nn.Module):
    """body -> GroupNorm -> [bilinear up x2] -> GELU, plus the skip.

    Shapes: x (B, C_in, H, W), skip (B, C_out, sH, sW) -> (B, C_out, sH, sW), s = 2 or 1.
    """

    def __init__(self, body: nn.Module, out_channels: int, gn_groups: int, upsample: bool = True) -> None:
        super().__init__()
        self.body = body
        self.norm = nn.GroupNorm(gn_groups, out_channels)
        self.upsample = upsample

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.body(x))
        if self.upsample:
            # a scale factor, not a size: the exported graph keeps H and W dynamic
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
        return F.gelu(x) + skip


# ----------------------------------------------------------------------------------------- model


def _check_args(
    in_channels: int, num_classes: int, c_list: tuple[int, ...], dilations: tuple[int, ...],
    memory_ratio: int, gn_groups: int,
) -> None:  # fmt: skip
    """MALUNet's argument checks, up front, each with a clear ValueError."""
    if in_channels < 1 or num_classes < 1:
        raise ValueError(f"in_channels and num_classes must be >= 1, got {in_channels}, {num_classes}")
    if len(c_list) != 6 or min(c_list) < 1:
        raise ValueError(f"c_list needs 6 positive widths (one per encoder stage), got {tuple(c_list)}")
    if gn_groups < 1 or any(c % gn_groups for c in c_list):
        raise ValueError(
            f"every width in c_list must be divisible by gn_groups={gn_groups}, got {tuple(c_list)}"
        )
    if not dilations or min(dilations) < 1 or any(c % len(dilations) for c in c_list[2:]):
        raise ValueError(
            f"dilations must be >= 1 and c_list[2:] divisible by their number, got {tuple(dilations)}, "
            f"{tuple(c_list)}"
        )
    if memory_ratio < 1:
        raise ValueError(f"memory_ratio must be >= 1, got {memory_ratio}")


class MALUNet(nn.Module):
    """MALUNet U-shaped segmenter.

    Args:
        in_channels: image channels.
        num_classes: output classes (incl. background); raw logits, no sigmoid/softmax.
        c_list: widths of the six encoder stages (the decoder mirrors them).
        bridge: apply the SAB + CAB attention bridge to the skips (False: the paper's ablation).
        dilations: dilation of each DGA channel group (their number = the number of groups).
        memory_ratio: IEA memory slots per feature channel (> 1 is the "inverted" part).
        gn_groups: groups of every GroupNorm.

    Shapes: (B, in_channels, H, W) -> (B, num_classes, H, W); H and W must be multiples of 32.

    Example:
        >>> model = MALUNet(in_channels=1, num_classes=4)
        >>> model(torch.zeros(2, 1, 64, 96)).shape
        torch.Size([2, 4, 64, 96])
    """

    input_multiple = TOTAL_STRIDE

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 4,
        c_list: tuple[int, int, int, int, int, int] = (8, 16, 24, 32, 48, 64),
        bridge: bool = True,
        dilations: tuple[int, ...] = (7, 5, 2, 1),
        memory_ratio: int = 4,
        gn_groups: int = 4,
    ) -> None:
        super().__init__()
        _check_args(in_channels, num_classes, c_list, dilations, memory_ratio, gn_groups)
        att = dict(dilations=tuple(dilations), memory_ratio=memory_ratio, gn_groups=gn_groups)
        widths = (in_channels, *c_list)
        self.encoder = nn.ModuleList()
        for i in range(6):
            c_in, c_out = widths[i], widths[i + 1]
            body = (
                nn.Conv2d(c_in, c_out, 3, padding=1) if i < 3 else AttentionBlock(c_in, c_out, False, **att)
            )
            self.encoder.append(EncoderStage(body, c_out, gn_groups, last=i == 5))
        self.bridge = AttentionBridge(tuple(c_list[:5])) if bridge else None
        self.decoder = nn.ModuleList()
        for i in range(5):
            c_in, c_out = c_list[5 - i], c_list[4 - i]
            body = AttentionBlock(c_in, c_out, True, **att) if i < 3 else nn.Conv2d(c_in, c_out, 3, padding=1)
            self.decoder.append(DecoderStage(body, c_out, gn_groups, upsample=i > 0))
        self.head = nn.Conv2d(c_list[0], num_classes, 1)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_side(x, TOTAL_STRIDE, "MALUNet")
        skips = []
        for stage in self.encoder[:-1]:
            x = stage(x)
            skips.append(x)  # t1..t5 at 1/2 .. 1/32
        if self.bridge is not None:
            skips = self.bridge(skips)
        x = self.encoder[-1](x)
        for stage, skip in zip(self.decoder, reversed(skips), strict=True):
            x = stage(x, skip)
        # the head predicts at 1/2, as the authors' code: full-resolution features would cost most
        return F.interpolate(self.head(x), scale_factor=2.0, mode="bilinear", align_corners=True)


def _init_weights(m: nn.Module) -> None:
    """The authors' initialisation: He fan-out normal for convs, truncated normal for Linears."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        nn.init.zeros_(m.bias)
    else:
        init_conv_fan_out(m)


# -------------------------------------------------------------------------------------- factory


def malunet(in_channels: int = 1, num_classes: int = 4, **kwargs: Any) -> nn.Module:
    """Build MALUNet (the paper's widths by default); ``kwargs`` go to :class:`MALUNet`.

    ``malunet(**PAPER_CONFIG)`` is the configuration the paper measures (3 channels, 1 class).
    """
    return MALUNet(in_channels=in_channels, num_classes=num_classes, **kwargs)
