"""Inference-time folds: the same function with fewer, larger ops (what predict, evaluate and export run).

Every fold is exact algebra on the trained weights (outputs equal up to float rounding):

* **conv + BatchNorm** (``ConvNorm``): in eval mode BN is a fixed per-channel affine map, so
  ``BN(conv(x)) = conv'(x)`` with ``W' = W * g / sqrt(var + eps)``, ``b' = (b - mean) * g / sqrt(var + eps) + beta``.
* **BatchNorm + 1x1 conv** (the FFN's pre-norm of `EMFBlock`): ``conv(s * x + t)`` is a 1x1 conv with
  ``W' = W * s`` (per input channel) and ``b' = b + W t``. (A 3x3 conv would not fold exactly: its zero
  padding sees ``t`` at the borders.)
* **layer scale** (`LayerScale2d` after the FFN's last conv and after the attention's output projection):
  ``gamma * (W x + b)`` scales W's rows and b.
* **channel shuffle** (`DSPConv`): shuffling the output channels of the first grouped 1x1 conv (GELU
  in between is element-wise) is a permutation of that conv's rows, once it is written as a dense conv
  with zero blocks. The dense conv does ``groups`` times the multiply-adds but is one GEMM instead of
  ``groups`` small ones plus a copy for the shuffle; measured with onnxruntime at 224 x 224, batch 16,
  2 threads, it is 10-30 % faster for DSPConvs of 16 and 32 channels and no faster for 96, so only
  units up to `DENSE_SHUFFLE_MAX_CHANNELS` input channels are folded.

The pre-norm in front of attention stays: the serial heads split its output into chunks and add the
previous head's output, so it does not reach one linear map.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .dspconv import DSPConv
from .emf_former import EMFBlock
from .layers import ConvNorm, LayerScale2d, channel_shuffle

__all__ = ["fuse_for_inference", "DENSE_SHUFFLE_MAX_CHANNELS"]

DENSE_SHUFFLE_MAX_CHANNELS = 32


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as ``s * x + t`` per channel."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _conv_like(
    conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor, groups: int | None = None
) -> nn.Conv2d:
    """A conv with ``conv``'s geometry (``groups`` optionally changed), the given weight and a bias."""
    new = nn.Conv2d(
        weight.shape[1] * (groups or conv.groups), weight.shape[0], conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, groups or conv.groups, bias=True, padding_mode=conv.padding_mode,
        device=conv.weight.device, dtype=conv.weight.dtype,  # created so: a copy into float32 would round
    )  # fmt: skip
    new.weight.copy_(weight)
    new.bias.copy_(bias)
    return new


def _bias(conv: nn.Conv2d | nn.Linear) -> torch.Tensor:
    return conv.bias if conv.bias is not None else conv.weight.new_zeros(conv.weight.shape[0])


def _fold_conv_bn(unit: ConvNorm) -> None:
    conv, bn = unit[0], unit[1]
    scale, shift = _bn_affine(bn)
    unit[0] = _conv_like(conv, conv.weight * scale.reshape(-1, 1, 1, 1), _bias(conv) * scale + shift)
    unit[1] = nn.Identity()


def _fold_block(block: EMFBlock) -> None:
    """FFN pre-norm into the FFN's first 1x1 conv; both layer scales into the linear maps before them."""
    first, last = block.mlp[0], block.mlp[-1]
    scale, shift = _bn_affine(block.norm2)
    block.mlp[0] = _conv_like(
        first, first.weight * scale.reshape(1, -1, 1, 1), _bias(first) + first.weight.flatten(1) @ shift
    )
    block.norm2 = nn.Identity()
    gamma = block.ls2.gamma.reshape(-1)
    block.mlp[-1] = _conv_like(last, last.weight * gamma.reshape(-1, 1, 1, 1), _bias(last) * gamma)
    block.ls2 = nn.Identity()
    proj = getattr(block.attn, "proj", None)
    if isinstance(proj, nn.Sequential) and isinstance(proj[-1], nn.Linear):
        gamma = block.ls1.gamma.reshape(-1)
        proj[-1].weight.mul_(gamma.reshape(-1, 1))
        proj[-1].bias.mul_(gamma)
        block.ls1 = nn.Identity()


def _fold_shuffle(unit: DSPConv) -> None:
    """The first grouped 1x1 conv as a dense conv whose output rows come out already shuffled."""
    conv, g = unit.pw1[0], unit.groups
    c_in, c_out = conv.in_channels, conv.out_channels
    dense = conv.weight.new_zeros(c_out, c_in, *conv.kernel_size)
    for i in range(g):  # group i maps input block i to output block i
        rows, cols = slice(i * c_out // g, (i + 1) * c_out // g), slice(i * c_in // g, (i + 1) * c_in // g)
        dense[rows, cols] = conv.weight[rows]
    order = channel_shuffle(torch.arange(c_out, dtype=torch.float32).reshape(1, -1, 1, 1), g)
    order = order.reshape(-1).long().to(dense.device)  # shuffled channel k is channel order[k]
    unit.pw1[0] = _conv_like(conv, dense[order], _bias(conv)[order], groups=1)
    unit.shuffle = False


@torch.no_grad()
def fuse_for_inference(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every fold of the module docstring applied.

    Same outputs up to float rounding (checked in tests/models/test_fuse.py); for inference only (the
    copy cannot be trained as before). Models without these modules (MONAI's baselines) come back as an
    eval-mode copy.
    """
    model = copy.deepcopy(model).eval()
    for module in list(model.modules()):
        if isinstance(module, ConvNorm) and isinstance(module[1], nn.BatchNorm2d):
            _fold_conv_bn(module)
        elif isinstance(module, EMFBlock) and isinstance(module.ls2, LayerScale2d):
            _fold_block(module)
    # a second pass: modules() visits a DSPConv before its pw1, whose BatchNorm must already be in the
    # conv when the conv's rows are permuted (else BN's channels would no longer match them)
    for module in model.modules():
        if (
            isinstance(module, DSPConv)
            and module.shuffle
            and module.pw1[0].in_channels <= DENSE_SHUFFLE_MAX_CHANNELS
        ):
            _fold_shuffle(module)
    return model
