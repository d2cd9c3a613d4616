"""UNeXt: a U-shaped network with a convolutional early stage and tokenized shifted MLPs in the latent stage.

Valanarasu, J. M. J. & Patel, V. M., "UNeXt: MLP-based Rapid Medical Image Segmentation Network",
MICCAI 2022, LNCS 13435, Springer (doi:10.1007/978-3-031-16443-9_3; arXiv:2203.04967). Written from the
paper; the authors' code (github.com/jeya-maria-jose/UNeXt-pytorch, ``archs.py``, class ``UNext``) was
read to settle what the paper leaves open.

Layout (total stride 32; widths C1..C5):

    encoder: [3x3 conv + BN + ReLU, max-pool 2] x 3 -> 1/2 C1, 1/4 C2, 1/8 C3       (conv stage)
             [3x3/2 conv + LN (tokenize), Tok-MLP x d, LN] x 2 -> 1/16 C4, 1/32 C5  (Tok-MLP stage)
    decoder: 3x3 conv + BN at the deep side, bilinear x2, ReLU, add the skip; the two deepest decoder
             stages (to 1/16 C4, 1/8 C3) add Tok-MLP x d + LN; then 1/4 C2, 1/2 C1, 1/1 C1; 1x1 head.
    Tok-MLP block: x + DropPath(ShiftedMLP(LN(x))); ShiftedMLP: shift along H -> 1x1 -> DW 3x3 -> GELU
             -> shift along W -> 1x1 (a 1x1 conv is the paper's per-token linear layer).

Open choices (paper silent, or the paper and the authors' code disagree) and where we differ:

- Widths C1..C5 = 16, 32, 128, 160, 256 as in the authors' code (the paper's text says 32, 64, 128, 160,
  256, but its 1.47 M parameters are those of the code's widths).
- Shift size 5 (the paper's j = 5): channels split into 5 groups shifted by -2..2 pixels, zero fill.
  We split as evenly as possible (group sizes differ by <= 1; the code's ``torch.chunk`` makes ceil-size
  groups and, for few channels, fewer than 5 of them) and shift only along one axis by padding and
  slicing (the code pads both axes, rolls, narrows: the same function).
- Shift order: height first, then width, as in the code (the paper's equations write width first).
- MLP hidden ratio 1 (the code's ``mlp_ratio=1``; the paper speaks of an MLP hidden dimension H, but
  its 1.47 M parameters need hidden = input width); the second shift acts on the hidden features.
- One Tok-MLP block per Tok-MLP stage (``mlp_depth``), as in the code; the paper does not say.
- Norms as in the code: pre-norm LayerNorm inside each block plus a LayerNorm after each Tok-MLP stage
  (the paper writes one post-norm ``LN(T + MLP(...))``); LayerNorm after the tokenizing conv; BatchNorm
  in every conv block. We also put BatchNorm after the last decoder conv (the code has none there) and
  drop the conv bias before every BatchNorm (redundant): 496 parameters fewer than the code in all.
- Encoder conv block: conv -> BN -> ReLU -> max-pool (paper order; the code pools before the ReLU, the
  same function since max and ReLU commute). Decoder: conv -> BN -> bilinear x2 -> ReLU -> add the skip
  (code order; upsampling is bilinear, ``align_corners=False``), skips are added, not concatenated.
- Drop path (stochastic depth): one rate for every Tok-MLP block, default 0 (the code's default is 0).
- Initialisation as in the code: token 1x1 layers truncated normal (std 0.02, zero bias), depthwise and
  tokenizing convs normal(0, sqrt(2 / fan_out)); the other convs and the norms PyTorch defaults.
- ``in_channels`` general (the code hard-wires 3). Raw logits for ``num_classes`` mutually exclusive
  classes (softmax/argmax downstream); the authors' model also ends in the 1x1 conv, but their loss and
  metrics read each output map through a sigmoid (independent binary masks, 1 class in the paper).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvNorm, check_input_side, init_conv_fan_out

__all__ = ["TOTAL_STRIDE", "ShiftedMLP", "TokMLPBlock", "TokMLPStage", "DecoderStage", "UNeXt", "unext"]

TOTAL_STRIDE = 32


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of each pixel (= each token). (B, C, H, W) -> (B, C, H, W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels-last and back, instead of flattening to (B, H*W, C) and reshaping with H and W as
        # Python ints, which tracing and ONNX export would bake in
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero each sample's branch with probability ``rate``, scale the rest. (B, ...) -> same."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


def split_sizes(channels: int, groups: int) -> list[int]:
    """Channel counts of ``groups`` near-equal groups, the larger ones first (sum = ``channels``)."""
    q, r = divmod(channels, groups)
    return [q + 1] * r + [q] * (groups - r)


def axial_shift(x: torch.Tensor, sizes: list[int], dim: int) -> torch.Tensor:
    """Shift channel group k of ``x`` by k - len(sizes)//2 pixels along ``dim`` (2 = H, 3 = W), zero fill.

    (B, C, H, W) -> (B, C, H, W), ``sum(sizes) == C``; out[..., i] = x[..., i - shift] inside the image.
    """
    pad = len(sizes) // 2
    padded = F.pad(x, (0, 0, pad, pad) if dim == 2 else (pad, pad))
    parts = []
    for group, shift in zip(torch.split(padded, sizes, dim=1), range(-pad, pad + 1), strict=True):
        # out[i] = padded[i + pad - shift]: the window starts at pad - shift and its end is counted from
        # the padded end, so no side length is read (the traced graph keeps H and W dynamic)
        window = slice(pad - shift, -(pad + shift) or None)
        parts.append(group[(slice(None),) * dim + (window,)])
    return torch.cat(parts, dim=1)


class ShiftedMLP(nn.Module):
    """Shift along H -> 1x1 -> DW 3x3 -> GELU -> shift along W -> 1x1. (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, dim: int, hidden: int, shift_size: int = 5) -> None:
        super().__init__()
        self.sizes_in, self.sizes_hidden = split_sizes(dim, shift_size), split_sizes(hidden, shift_size)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        # depthwise 3x3 on the hidden features: positional information (as in SegFormer's Mix-FFN)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        for fc in (self.fc1, self.fc2):
            nn.init.trunc_normal_(fc.weight, std=0.02)
            nn.init.zeros_(fc.bias)
        init_conv_fan_out(self.dwconv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.dwconv(self.fc1(axial_shift(x, self.sizes_in, dim=2))))
        return self.fc2(axial_shift(x, self.sizes_hidden, dim=3))


class TokMLPBlock(nn.Module):
    """Pre-norm residual shifted MLP: x + DropPath(ShiftedMLP(LN(x))). (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, dim: int, mlp_ratio: float = 1.0, shift_size: int = 5, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm = LayerNorm2d(dim)
        self.mlp = ShiftedMLP(dim, max(1, round(dim * mlp_ratio)), shift_size)
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + drop_path(self.mlp(self.norm(x)), self.drop_path, self.training)


def conv_stage(in_channels: int, out_channels: int) -> nn.Sequential:
    """Encoder conv block: 3x3 conv + BN + ReLU, max-pool 2. (B, C_in, H, W) -> (B, C_out, H/2, W/2)."""
    return nn.Sequential(ConvNorm(in_channels, out_channels, 3, act_layer=nn.ReLU), nn.MaxPool2d(2))


class TokMLPStage(nn.Module):
    """Tokenize (3x3/2 conv + LN), Tok-MLP blocks, LN. (B, C_in, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, in_channels: int, channels: int, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.embed = nn.Conv2d(in_channels, channels, 3, stride=2, padding=1)
        init_conv_fan_out(self.embed)
        self.embed_norm = LayerNorm2d(channels)
        self.blocks = nn.Sequential(*blocks)
        self.norm = LayerNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.blocks(self.embed_norm(self.embed(x))))


class DecoderStage(nn.Module):
    """3x3 conv + BN, bilinear x2, ReLU, add the skip, then Tok-MLP blocks + LN if any.

    Shapes: deep (B, C_deep, H, W), skip (B, C, 2H, 2W) or None -> (B, C, 2H, 2W).
    """

    def __init__(self, deep_channels: int, channels: int, blocks: list[nn.Module] | None = None) -> None:
        super().__init__()
        # the conv runs before upsampling, at the deep (4x cheaper) resolution, as in the authors' code
        self.conv = ConvNorm(deep_channels, channels, 3)
        self.blocks = nn.Sequential(*blocks) if blocks else nn.Identity()
        self.norm = LayerNorm2d(channels) if blocks else nn.Identity()

    def forward(self, deep: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        # scale_factor (not size=skip.shape) keeps the exported graph free of shape arithmetic
        x = F.relu(F.interpolate(self.conv(deep), scale_factor=2.0, mode="bilinear", align_corners=False))
        if skip is not None:
            x = x + skip
        return self.norm(self.blocks(x))


def _check_args(
    in_channels: int, num_classes: int, widths: tuple, shift_size: int, mlp_ratio: float, mlp_depth: int,
    drop_path: float,
) -> None:  # fmt: skip
    """UNeXt's argument checks, up front, each with a clear ValueError."""
    if in_channels < 1 or num_classes < 1:
        raise ValueError(f"in_channels and num_classes must be >= 1, got {in_channels}, {num_classes}")
    if len(widths) != 5 or min(widths) < 1:
        raise ValueError(f"widths must be 5 positive ints (C1..C5), got {widths}")
    if shift_size < 1 or shift_size % 2 == 0:
        raise ValueError(f"shift_size must be a positive odd int (shifts -s//2..s//2), got {shift_size}")
    if shift_size > min(widths[2:]):
        raise ValueError(f"shift_size ({shift_size}) must not exceed the Tok-MLP widths {widths[2:]}")
    if mlp_ratio <= 0 or mlp_depth < 1:
        raise ValueError(f"mlp_ratio must be > 0 and mlp_depth >= 1, got {mlp_ratio}, {mlp_depth}")
    if not 0.0 <= drop_path < 1.0:
        raise ValueError(f"drop_path must be in [0, 1), got {drop_path}")


class UNeXt(nn.Module):
    """UNeXt U-shaped segmenter.

    Args:
        in_channels: image channels.
        num_classes: output classes (incl. background).
        widths: channels C1..C5 at 1/2, 1/4, 1/8 (conv stage) and 1/16, 1/32 (Tok-MLP stage).
        shift_size: channel groups of the axial shift (odd); group k moves k - shift_size//2 pixels.
        mlp_ratio: hidden width of the shifted MLP over its input width.
        mlp_depth: Tok-MLP blocks per Tok-MLP stage (the two encoder and two decoder ones).
        drop_path: stochastic-depth rate of every Tok-MLP block.

    Shapes: (B, in_channels, H, W) -> raw logits (B, num_classes, H, W); H and W must be multiples of 32.

    Example:
        >>> model = UNeXt(in_channels=1, num_classes=4)
        >>> model(torch.zeros(2, 1, 64, 96)).shape
        torch.Size([2, 4, 64, 96])
    """

    input_multiple = TOTAL_STRIDE  # any input side that is a multiple of this works

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 4,
        widths: tuple[int, int, int, int, int] = (16, 32, 128, 160, 256),
        shift_size: int = 5,
        mlp_ratio: float = 1.0,
        mlp_depth: int = 1,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        _check_args(in_channels, num_classes, tuple(widths), shift_size, mlp_ratio, mlp_depth, drop_path)
        c1, c2, c3, c4, c5 = widths

        def tok_blocks(dim: int) -> list[nn.Module]:
            return [TokMLPBlock(dim, mlp_ratio, shift_size, drop_path) for _ in range(mlp_depth)]

        self.encoder = nn.ModuleList(
            [
                conv_stage(in_channels, c1),
                conv_stage(c1, c2),
                conv_stage(c2, c3),
                TokMLPStage(c3, c4, tok_blocks(c4)),
                TokMLPStage(c4, c5, tok_blocks(c5)),
            ]
        )
        self.decoder = nn.ModuleList(
            [
                DecoderStage(c5, c4, tok_blocks(c4)),
                DecoderStage(c4, c3, tok_blocks(c3)),
                DecoderStage(c3, c2),
                DecoderStage(c2, c1),
                DecoderStage(c1, c1),  # to full resolution, no skip
            ]
        )
        self.head = nn.Conv2d(c1, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing():
            # a traced/exported graph must not hold a Python check on the sides (it would freeze them)
            check_input_side(x, TOTAL_STRIDE, "UNeXt")
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        skips.pop()  # the bottleneck (1/32) is the decoder's input, not a skip
        for stage in self.decoder:
            x = stage(x, skips.pop() if skips else None)
        return self.head(x)


def unext(in_channels: int = 1, num_classes: int = 4, **kwargs: Any) -> nn.Module:
    """Build UNeXt in the paper's configuration; ``kwargs`` (e.g. ``widths``, ``mlp_depth``) override it."""
    return UNeXt(in_channels=in_channels, num_classes=num_classes, **kwargs)
