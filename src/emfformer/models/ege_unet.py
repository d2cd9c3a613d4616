"""EGE-UNet: a ~53 k-parameter U-Net with Hadamard-product attention (GHPA) and aggregation bridges (GAB).

Jiacheng Ruan, Mingye Xie, Jingsheng Gao, Ting Liu, Yuzhuo Fu: "EGE-UNet: An Efficient Group Enhanced
UNet for Skin Lesion Segmentation", MICCAI 2023, LNCS 14223, pp. 481-490, doi:10.1007/978-3-031-43901-8_46
(arXiv:2307.08473). Written by us from the paper; the authors' code (github.com/JCruan519/EGE-UNet,
models/egeunet.py) was read, not copied, to settle what the paper leaves open.

Layout (six levels, five max-pools: total stride 32; ``dims`` = the paper's c_list):

    enc1-3: 3x3 conv -> GroupNorm -> maxpool/2 -> GELU          @1/2, 1/4, 1/8
    enc4-5: GHPA     -> GroupNorm -> maxpool/2 -> GELU          @1/16, 1/32
    enc6:   GHPA     -> GELU                                    @1/32 (bottleneck)
    dec1:   GHPA -> GroupNorm -> GELU,            + GAB(enc6, enc5, side mask)        @1/32
    dec2-3: GHPA -> GroupNorm -> up x2 -> GELU,   + GAB(previous GAB, skip, side mask) @1/16, 1/8
    dec4-5: 3x3 conv -> GroupNorm -> up x2 -> GELU, + GAB(...)                         @1/4, 1/2
    head:   1x1 conv -> logits @1/2 -> bilinear up x2

Open choices (the paper does not say) and differences from the authors' code:

- widths ``dims`` = (8, 16, 24, 32, 48, 64) (paper and code); each must be divisible by 4: GHPA and GAB
  split channels in 4 groups and every GroupNorm has 4 groups (code).
- GHPA groups (code): H-W plane, C-H plane and C-W plane, each multiplied (Hadamard) by a learnable
  map, and a 4th group with no map, 1x1 -> GELU -> depthwise 3x3. Each map is refined by
  depthwise conv -> GELU -> 1x1 (2D for H-W, 1D for C-H and C-W) before the product; LayerNorm
  before the split and after the concatenation, then depthwise 3x3 -> GELU -> 1x1 to the output width.
- Hadamard maps: side ``param_size`` = 8 (code): H-W (C/4, 8, 8), C-H and C-W (C/4, 8); initialised to
  ones (code). At run time they are resized to the feature size by bilinear interpolation with
  align_corners=True (as the code), the size taken from the tensor's shape so that traced / ONNX
  graphs follow the input size. The maps are 4,960 of the 53,374 parameters; the paper's 0.053 M
  counts them (thop, which skips parameters outside conv / norm layers, reports 45,806).
- LayerNorm is channels-first (over C per pixel, eps 1e-6) inside GHPA and GAB; GroupNorm(4) after
  every encoder / decoder stage except the bottleneck (code).
- GAB (code): the high-level input (the deeper GAB's output; the bottleneck for the deepest GAB) is
  1x1-projected to the skip's width and resized bilinearly (align_corners=True) to the skip's size;
  both are split in 4, each quarter pair is concatenated with the 1-channel mask, LayerNorm ->
  depthwise 3x3 with dilation 1, 2, 5, 7 (``dilations``), then LayerNorm -> 1x1 over the concatenation.
- Side masks: each decoder stage predicts a 1-channel mask (1x1 conv, raw pre-sigmoid values as in
  the code) that its GAB uses; always 1 channel whatever ``num_classes`` (the paper is binary).
  In this project the model returns only the final logits: the GAB still uses the side masks
  internally, but NO deep-supervision loss is applied to them (the paper's weighted mask losses are
  not used); they learn only through the main loss, via the GAB.
- Output: raw logits for ``num_classes`` classes (the paper: 1 class through a sigmoid);
  ``in_channels`` is general (the paper: 3, RGB).
- Upsampling is bilinear with align_corners=True (code), to the skip's size rather than by a
  factor 2 (same result, and exportable with dynamic sizes).
- Init (code's rule): conv weights normal(0, sqrt(2 / fan_out)), fan_out = k * out / groups, zero
  bias; we apply it to Conv1d too (the code leaves out groups there and keeps Conv1d's default bias).
  With it the logits reach about +-25 at initialisation.
- Inputs: H and W must be multiples of 32 (five max-pools); other sides raise a ValueError.

File order: layers -> attention (GHPA) -> bridge (GAB) -> blocks -> stage -> model -> factory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .layers import check_input_side, check_positive, init_conv_fan_out

__all__ = ["GHPA", "GroupAggregationBridge", "EGEUNet", "EGE_UNET_DIMS", "TOTAL_STRIDE", "ege_unet"]

TOTAL_STRIDE = 32  # five stride-2 max-pools
EGE_UNET_DIMS = (8, 16, 24, 32, 48, 64)  # the paper's c_list
_GROUPS = 4  # GHPA axes, GAB groups and GroupNorm groups (paper / code)


# ----------------------------------------------------------------------------------------- layers
class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of each pixel. (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim, 1, 1))
        self.bias = nn.Parameter(torch.zeros(dim, 1, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # written out (not permute + F.layer_norm): two reductions over dim 1 export to any opset
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


def _conv3x3(in_dim: int, out_dim: int) -> nn.Conv2d:
    return nn.Conv2d(in_dim, out_dim, 3, padding=1)


def _resize(param: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear (align_corners) resize of a (1, C, h, w) map to (1, C, *size)."""
    return F.interpolate(param, size=size, mode="bilinear", align_corners=True)


# -------------------------------------------------------------------------------------- attention
class GHPA(nn.Module):
    """Group multi-axis Hadamard product attention. (B, C_in, H, W) -> (B, C_out, H, W).

    The channels are split in 4: the first three are multiplied by learnable maps on the H-W,
    C-H and C-W planes, the fourth goes through a small conv branch.
    """

    def __init__(self, in_dim: int, out_dim: int, param_size: int = 8) -> None:
        super().__init__()
        c = in_dim // _GROUPS
        # the maps are (1, c, n, n) and (1, 1, c, n): 4D so one bilinear resize serves all three
        self.map_hw = nn.Parameter(torch.ones(1, c, param_size, param_size))
        self.map_ch = nn.Parameter(torch.ones(1, 1, c, param_size))
        self.map_cw = nn.Parameter(torch.ones(1, 1, c, param_size))
        self.mix_hw = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, groups=c), nn.GELU(), nn.Conv2d(c, c, 1))
        self.mix_ch = nn.Sequential(nn.Conv1d(c, c, 3, padding=1, groups=c), nn.GELU(), nn.Conv1d(c, c, 1))
        self.mix_cw = nn.Sequential(nn.Conv1d(c, c, 3, padding=1, groups=c), nn.GELU(), nn.Conv1d(c, c, 1))
        self.local = nn.Sequential(nn.Conv2d(c, c, 1), nn.GELU(), nn.Conv2d(c, c, 3, padding=1, groups=c))
        self.norm_in = LayerNorm2d(in_dim)
        self.norm_out = LayerNorm2d(in_dim)
        self.proj = nn.Sequential(
            nn.Conv2d(in_dim, in_dim, 3, padding=1, groups=in_dim), nn.GELU(), nn.Conv2d(in_dim, out_dim, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hw, ch, cw, rest = self.norm_in(x).chunk(_GROUPS, dim=1)
        _, c, h, w = hw.shape  # traced sizes: the maps follow the runtime feature size
        hw = hw * self.mix_hw(_resize(self.map_hw, (h, w)))
        # C-H map: (1, 1, c, h) -> Conv1d over (1, c, h) -> broadcast along W as (1, c, h, 1)
        ch = ch * self.mix_ch(_resize(self.map_ch, (c, h))[0]).unsqueeze(-1)
        cw = cw * self.mix_cw(_resize(self.map_cw, (c, w))[0]).unsqueeze(-2)
        out = torch.cat((hw, ch, cw, self.local(rest)), dim=1)
        return self.proj(self.norm_out(out))


# ----------------------------------------------------------------------------------------- bridge
class GroupAggregationBridge(nn.Module):
    """GAB: fuse a high-level feature, the skip and a decoder mask in 4 dilated groups.

    Shapes: high (B, C_high, h, w), low (B, C, H, W), mask (B, 1, H, W) -> (B, C, H, W).
    """

    def __init__(self, high_dim: int, low_dim: int, dilations: Sequence[int] = (1, 2, 5, 7)) -> None:
        super().__init__()
        self.project = nn.Conv2d(high_dim, low_dim, 1)
        g = 2 * (low_dim // _GROUPS) + 1  # a quarter of the high and of the low feature, plus the mask
        self.groups = nn.ModuleList(
            nn.Sequential(LayerNorm2d(g), nn.Conv2d(g, g, 3, padding=d, dilation=d, groups=g))
            for d in dilations
        )
        self.fuse = nn.Sequential(LayerNorm2d(_GROUPS * g), nn.Conv2d(_GROUPS * g, low_dim, 1))

    def forward(self, high: torch.Tensor, low: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        high = _resize(self.project(high), low.shape[-2:])
        parts = [
            group(torch.cat((h, lo, mask), dim=1))
            for group, h, lo in zip(self.groups, high.chunk(_GROUPS, 1), low.chunk(_GROUPS, 1), strict=True)
        ]
        return self.fuse(torch.cat(parts, dim=1))


# ----------------------------------------------------------------------------------------- blocks
class EncoderBlock(nn.Module):
    """mixer -> GroupNorm -> maxpool/2 -> GELU (``downsample``) or mixer -> GELU (bottleneck).

    Shapes: (B, C_in, H, W) -> (B, C, H/2, W/2), or (B, C, H, W) without ``downsample``.
    """

    def __init__(self, mixer: nn.Module, dim: int, downsample: bool = True) -> None:
        super().__init__()
        self.mixer = mixer
        self.norm = nn.GroupNorm(_GROUPS, dim) if downsample else nn.Identity()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.mixer(x))
        return F.gelu(F.max_pool2d(x, 2) if self.downsample else x)


class DecoderBlock(nn.Module):
    """mixer -> GroupNorm [-> bilinear resize to ``size``] -> GELU. (B, C_in, h, w) -> (B, C, *size)."""

    def __init__(self, mixer: nn.Module, dim: int, upsample: bool = True) -> None:
        super().__init__()
        self.mixer = mixer
        self.norm = nn.GroupNorm(_GROUPS, dim)
        self.upsample = upsample

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        x = self.norm(self.mixer(x))
        return F.gelu(_resize(x, size) if self.upsample else x)


# ------------------------------------------------------------------------------------------ stage
class DecoderStage(nn.Module):
    """Decoder block, 1-channel side mask, GAB-refined skip added to the block's output.

    Shapes: x (B, C_in, h, w), high (B, C_high, h', w'), skip (B, C, H, W)
    -> (out (B, C, H, W), bridged skip (B, C, H, W): the next stage's ``high``).
    """

    def __init__(self, block: DecoderBlock, dim: int, high_dim: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.block = block
        self.side = nn.Conv2d(dim, 1, 1)  # the mask the paper deep-supervises; here only GAB input
        self.bridge = GroupAggregationBridge(high_dim, dim, dilations)

    def forward(
        self, x: torch.Tensor, high: torch.Tensor, skip: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.block(x, skip.shape[-2:])
        bridged = self.bridge(high, skip, self.side(x))
        return x + bridged, bridged


# ------------------------------------------------------------------------------------------ model
def _check_args(
    in_channels: int, num_classes: int, dims: Sequence[int], param_size: int, dilations: Sequence[int]
) -> None:
    """EGEUNet's argument checks, up front, each with a clear ValueError."""
    check_positive(in_channels=in_channels, num_classes=num_classes, param_size=param_size)
    if len(dims) != 6 or any(d < _GROUPS or d % _GROUPS for d in dims):
        raise ValueError(f"dims needs 6 widths, each a positive multiple of {_GROUPS}; got {tuple(dims)}")
    if len(dilations) != _GROUPS or min(dilations) < 1:
        raise ValueError(f"dilations needs {_GROUPS} entries, each >= 1; got {tuple(dilations)}")


class EGEUNet(nn.Module):
    """EGE-UNet segmenter.

    Args:
        in_channels: image channels.
        num_classes: output classes (incl. background); raw logits, no sigmoid / softmax.
        dims: widths of the six levels (the paper's c_list).
        param_size: side of the learnable Hadamard maps before they are resized to the feature size.
        dilations: dilations of the four GAB groups.

    Shapes: (B, in_channels, H, W) -> logits (B, num_classes, H, W); H and W multiples of 32.

    Example:
        >>> EGEUNet(in_channels=3, num_classes=2)(torch.zeros(1, 3, 64, 96)).shape
        torch.Size([1, 2, 64, 96])
    """

    input_multiple = TOTAL_STRIDE

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 4,
        dims: Sequence[int] = EGE_UNET_DIMS,
        param_size: int = 8,
        dilations: Sequence[int] = (1, 2, 5, 7),
    ) -> None:
        super().__init__()
        _check_args(in_channels, num_classes, dims, param_size, dilations)
        c = tuple(dims)
        conv_in = (in_channels, *c[:2])
        self.encoder = nn.ModuleList(
            [*(EncoderBlock(_conv3x3(conv_in[i], c[i]), c[i]) for i in range(3))]
            + [EncoderBlock(GHPA(c[i - 1], c[i], param_size), c[i], downsample=i < 5) for i in (3, 4, 5)]
        )
        # decoder level i maps width c[i+1] -> c[i]; GHPA at the three deepest levels, 3x3 conv above
        self.decoder = nn.ModuleList()
        for i in (4, 3, 2, 1, 0):
            mixer = GHPA(c[i + 1], c[i], param_size) if i >= 2 else _conv3x3(c[i + 1], c[i])
            block = DecoderBlock(mixer, c[i], upsample=i < 4)
            self.decoder.append(DecoderStage(block, c[i], c[i + 1], dilations))
        self.head = nn.Conv2d(c[0], num_classes, 1)
        self.apply(init_conv_fan_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        check_input_side(x, TOTAL_STRIDE, "EGE-UNet")
        feats = []
        for block in self.encoder:
            x = block(x)
            feats.append(x)
        high = feats[-1]  # the deepest GAB's high-level input is the bottleneck itself
        for stage, skip in zip(self.decoder, reversed(feats[:-1]), strict=True):
            x, high = stage(x, high, skip)
        # logits at 1/2, then bilinear to the input size (paper / code)
        return _resize(self.head(x), (h, w))


# ---------------------------------------------------------------------------------------- factory
def ege_unet(in_channels: int = 1, num_classes: int = 4, **kwargs: Any) -> nn.Module:
    """Build EGE-UNet in the paper's configuration (``dims`` = 8..64); ``kwargs`` override EGEUNet's."""
    return EGEUNet(in_channels=in_channels, num_classes=num_classes, **kwargs)
