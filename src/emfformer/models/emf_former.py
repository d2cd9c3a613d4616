"""EMF-former: an efficient and memory-friendly transformer for medical image segmentation.

Hao, Quan & Lu, MICCAI 2024 (LNCS 15008, doi:10.1007/978-3-031-72111-3_22). Reimplemented from the
abstract: the paper publishes neither code nor widths/depths. Every choice below that the paper does
not state is INFERRED and listed with its reason in docs/architecture.md.

Layout (total stride 16, U-shaped):

    stem 3x3/2 -> [ConvBlock x d1] @1/2 -> down -> [ConvBlock x d2] @1/4      (DSPConv stages)
               -> down -> [EMFBlock x d3] @1/8 -> down -> [EMFBlock x d4] @1/16 (S-MHA + VAA stages)
    decoder: up x2 + 1x1 + add skip -> ConvBlock, at 1/8, 1/4, 1/2; head @1/2: DW 3x3 -> 1x1 -> logits, up x2
    head_stride=1: a full-resolution 3x3 conv of the input is one more skip; the decoder goes on to 1/1
    (up x2 + 1x1 + add, no ConvBlock) and the head predicts at 1/1 (small structures such as the hippocampus need it: docs/results.md)

File order: blocks -> stages -> model -> size table -> variant factories.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .dspconv import make_conv_unit
from .layers import ConvNorm, ConvNormAct, LayerScale2d, check_input_side, from_tokens, to_tokens
from .recompute import RECOMPUTE_MODES, run_blocks
from .smha import SerialMultiHeadAttention

__all__ = ["ConvBlock", "EMFBlock", "EMFFormer", "EMF_FORMER_SIZES", "emf_former"]

TOTAL_STRIDE = 16


class ConvBlock(nn.Module):
    """Residual convolution block: x + ConvUnit(x). (B, C, H, W) -> (B, C, H, W).

    The unit ends in BatchNorm, so its affine weight *is* the layer scale: it is initialised to
    ``layer_scale_init`` instead of multiplying by a separate LayerScale (same function, one saved
    activation less per block in training).
    """

    def __init__(
        self,
        dim: int,
        conv: str = "dspconv",
        groups: int = 4,
        expansion: float = 2.0,
        shuffle: bool = True,
        layer_scale_init: float = 0.1,
    ) -> None:
        super().__init__()
        self.unit = make_conv_unit(conv, dim, dim, groups=groups, expansion=expansion, shuffle=shuffle)
        last_norm = [m for m in self.unit.modules() if isinstance(m, nn.BatchNorm2d)][-1]
        nn.init.constant_(last_norm.weight, layer_scale_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.unit(x)


class EMFBlock(nn.Module):
    """Transformer block: local depthwise mixing -> S-MHA -> FFN, each a layer-scaled residual.

    Shapes: (B, C, H, W) -> (B, C, H, W). BatchNorm (not LayerNorm) as in EfficientViT/SwiftFormer:
    BatchNorm needs no statistics at inference and can be folded into the neighbouring convs.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        attention: str = "vaa",
        heads: str = "serial",
        active_heads: int | None = None,
        layer_scale_init: float = 0.1,
    ) -> None:
        super().__init__()
        self.local = ConvNorm(dim, dim, 3, groups=dim)
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = SerialMultiHeadAttention(dim, num_heads, attention, heads, active_heads)
        self.ls1 = LayerScale2d(dim, layer_scale_init)
        hidden = int(dim * mlp_ratio)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.GELU(), nn.Conv2d(hidden, dim, 1))
        self.ls2 = LayerScale2d(dim, layer_scale_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = x + self.local(x)
        x = x + self.ls1(from_tokens(self.attn(to_tokens(self.norm1(x))), h, w))
        x = x + self.ls2(self.mlp(self.norm2(x)))
        return x


class EncoderStage(nn.Module):
    """Optional stride-2 3x3 conv (C_in -> C) then ``blocks``. (B, C_in, H, W) -> (B, C, H/s, W/s).

    ``recompute`` ("none", "cheap", "all"): what of the blocks' activations is recomputed in backward
    when training (`emfformer.models.recompute`).
    """

    def __init__(self, downsample: nn.Module, blocks: list[nn.Module], recompute: str = "none") -> None:
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.ModuleList(blocks)
        self.recompute = recompute

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = self.recompute if self.training else "none"
        if mode == "cheap":  # the downsampling conv's norm and activation are cheap parts too
            return run_blocks([self.downsample, *self.blocks], x, mode)
        return run_blocks(self.blocks, self.downsample(x), mode)


class DecoderStage(nn.Module):
    """Upsample x2, 1x1 conv to the skip's width, add the skip, refine with ConvBlocks.

    Shapes: deep (B, C_deep, H, W), skip (B, C, 2H, 2W) -> (B, C, 2H, 2W).
    """

    def __init__(
        self, deep_channels: int, channels: int, blocks: list[nn.Module], recompute: str = "none"
    ) -> None:
        super().__init__()
        self.reduce = ConvNorm(deep_channels, channels, 1)
        self.blocks = nn.ModuleList(blocks)
        self.recompute = recompute

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(self.reduce(deep), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return run_blocks(self.blocks, up + skip, self.recompute if self.training else "none")


def _check_args(
    in_channels: int, num_classes: int, dims: tuple, depths: tuple, num_heads: tuple, active_heads: tuple,
    decoder_depth: int, head_stride: int, recompute: str,
) -> None:  # fmt: skip
    """EMFFormer's argument checks, up front, each with a clear ValueError."""
    if recompute not in RECOMPUTE_MODES:
        raise ValueError(f"recompute must be one of {RECOMPUTE_MODES}, got {recompute!r}")
    if head_stride not in (1, 2):
        raise ValueError(f"head_stride must be 1 or 2, got {head_stride}")
    if in_channels < 1 or num_classes < 1:
        raise ValueError(f"in_channels and num_classes must be >= 1, got {in_channels}, {num_classes}")
    if len(dims) != 4 or len(depths) != 4 or len(num_heads) != 2 or len(active_heads) != 2:
        raise ValueError("dims and depths need 4 entries, num_heads and active_heads 2")
    if min(depths) < 1 or decoder_depth < 0:
        raise ValueError(f"depths must be >= 1 and decoder_depth >= 0, got {depths}, {decoder_depth}")


class EMFFormer(nn.Module):
    """EMF-former U-shaped segmenter.

    Args:
        in_channels: image channels.
        num_classes: output classes (incl. background).
        dims: channels of the 4 encoder stages (at 1/2, 1/4, 1/8, 1/16).
        depths: blocks per encoder stage; stages 1-2 are ConvBlocks, stages 3-4 EMFBlocks.
        num_heads: heads of the two transformer stages.
        decoder_depth: ConvBlocks per decoder stage.
        mlp_ratio: FFN expansion of the transformer blocks.
        attention: ``"vaa"`` (paper) or ``"mhsa"`` (softmax ablation).
        heads: ``"serial"`` (S-MHA, paper) or ``"parallel"`` (ablation).
        active_heads: heads computed per S-MHA (None = all); the paper's "ignored heads".
        conv: ``"dspconv"`` (paper) or ``"plain"`` (3x3 conv ablation).
        shuffle: channel shuffle inside DSPConv (ablation switch).
        groups: groups of DSPConv's pointwise convs.
        expansion: hidden expansion inside DSPConv.
        layer_scale_init: initial residual-branch scale.
        recompute: activation recomputation of every block in backward when training: ``"none"``,
            ``"cheap"`` (keep conv / matmul outputs, rerun norms, activations, depthwise convs, shuffles)
            or ``"all"`` (rerun whole blocks); training memory down, step time up (docs/benchmarks.md).
        grad_checkpoint: ``True`` is ``recompute="all"`` (the name of earlier versions, kept for them).
        head_stride: 2 (logits at 1/2, upsampled bilinearly) or 1 (one more decoder stage with a
            full-resolution skip, logits at 1/1).

    Shapes: (B, in_channels, H, W) -> raw logits (B, num_classes, H, W); H and W must be multiples of 16.

    Example:
        >>> model = EMFFormer(in_channels=1, num_classes=4)
        >>> model(torch.zeros(2, 1, 224, 224)).shape
        torch.Size([2, 4, 224, 224])
    """

    input_multiple = TOTAL_STRIDE  # any input side that is a multiple of this works (inference grows to it)

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 4,
        dims: tuple[int, int, int, int] = (16, 32, 96, 192),
        depths: tuple[int, int, int, int] = (1, 2, 2, 2),
        num_heads: tuple[int, int] = (4, 6),
        decoder_depth: int = 1,
        mlp_ratio: float = 2.0,
        attention: str = "vaa",
        heads: str = "serial",
        active_heads: tuple[int | None, int | None] = (None, None),
        conv: str = "dspconv",
        shuffle: bool = True,
        groups: int = 4,
        expansion: float = 2.0,
        layer_scale_init: float = 0.1,
        grad_checkpoint: bool = False,
        head_stride: int = 2,
        recompute: str = "none",
    ) -> None:
        super().__init__()
        if grad_checkpoint and recompute not in ("none", "all"):
            raise ValueError(
                f"grad_checkpoint=True is recompute='all'; it contradicts recompute={recompute!r}"
            )
        self.recompute = recompute = "all" if grad_checkpoint else recompute
        _check_args(
            in_channels, num_classes, dims, depths, num_heads, active_heads, decoder_depth, head_stride, recompute
        )  # fmt: skip
        conv_kw = dict(
            conv=conv, groups=groups, expansion=expansion, shuffle=shuffle, layer_scale_init=layer_scale_init
        )
        c1, c2, c3, c4 = dims
        self.stem = ConvNormAct(in_channels, c1, 3, stride=2)
        self.stages = nn.ModuleList(
            [
                EncoderStage(nn.Identity(), [ConvBlock(c1, **conv_kw) for _ in range(depths[0])], recompute),
                EncoderStage(
                    ConvNormAct(c1, c2, 3, stride=2),
                    [ConvBlock(c2, **conv_kw) for _ in range(depths[1])],
                    recompute,
                ),
            ]
        )
        for i, (c_in, c) in enumerate(((c2, c3), (c3, c4))):
            blocks = [
                EMFBlock(c, num_heads[i], mlp_ratio, attention, heads, active_heads[i], layer_scale_init)
                for _ in range(depths[2 + i])
            ]
            self.stages.append(EncoderStage(ConvNormAct(c_in, c, 3, stride=2), blocks, recompute))
        self.decoder = nn.ModuleList(
            DecoderStage(deep, c, [ConvBlock(c, **conv_kw) for _ in range(decoder_depth)], recompute)
            for deep, c in ((c4, c3), (c3, c2), (c2, c1))
        )
        if head_stride == 1:
            # no ConvBlock at 1/1: it would double the training step on a CPU (measured), and the head's
            # depthwise 3x3 already mixes the full-resolution skip with the upsampled features
            self.decoder.append(DecoderStage(c1, c1, [], recompute))
        # the full-resolution skip (head_stride=1): one 3x3 conv of the input, no downsampling
        self.full_res = ConvNormAct(in_channels, c1, 3) if head_stride == 1 else None
        self.head = nn.Sequential(ConvNormAct(c1, c1, 3, groups=c1), nn.Conv2d(c1, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        check_input_side(x, TOTAL_STRIDE, "EMF-former")
        # "cheap" recomputation covers the stem, the full-resolution skip and the head too (their norms
        # and activations at 1/2 and 1/1 are the largest activations of the network)
        mode = self.recompute if self.training and self.recompute == "cheap" else "none"
        full = [run_blocks([self.full_res], x, mode)] if self.full_res is not None else []
        feats = []
        x = run_blocks([self.stem], x, mode)
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        for dec, skip in zip(self.decoder, [*reversed(feats[:-1]), *full], strict=True):
            x = dec(x, skip)
        logits = run_blocks([self.head], x, mode)
        if logits.shape[-2:] != (h, w):
            # head_stride=2: logits made at 1/2 and upsampled, full-resolution feature maps being the
            # costly part on a CPU (memory-bound elementwise work)
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        return logits


# Sizes are data; INFERRED (the paper publishes none): see docs/architecture.md for the reasoning.
EMF_FORMER_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(dims=(12, 24, 64, 128), depths=(1, 1, 2, 2), num_heads=(2, 4)),
    "small": dict(dims=(16, 32, 96, 192), depths=(1, 2, 2, 2), num_heads=(4, 6)),
    "base": dict(dims=(24, 48, 128, 256), depths=(2, 2, 4, 4), num_heads=(4, 8)),
}

# The "ordinary transformers" EMF-former is measured against: same widths and depths, none of the
# paper's parts. "mhsa" materialises the N x N attention matrix (ViT/TransUNet style); "sdpa" is the
# same function through PyTorch's fused memory-efficient kernel.
TWINS: dict[str, dict[str, Any]] = {
    "mhsa": dict(attention="mhsa", heads="parallel", conv="plain", shuffle=False),
    "sdpa": dict(attention="sdpa", heads="parallel", conv="plain", shuffle=False),
}


def emf_former(variant: str = "small", twin: str | None = None, **kwargs: Any) -> EMFFormer:
    """Build EMF-former of a given variant (tiny/small/base); ``twin`` ("mhsa" or "sdpa") swaps in
    parallel softmax attention and plain convs.

    ``kwargs`` (e.g. ``in_channels``, ``num_classes``, ``attention``) override the size table.
    """
    if variant not in EMF_FORMER_SIZES:
        raise ValueError(f"variant must be one of {sorted(EMF_FORMER_SIZES)}, got {variant!r}")
    if twin is not None and twin not in TWINS:
        raise ValueError(f"twin must be one of {sorted(TWINS)} or None, got {twin!r}")
    return EMFFormer(**{**EMF_FORMER_SIZES[variant], **(TWINS[twin] if twin else {}), **kwargs})
