"""Model size facts: parameter count and forward FLOPs (used by the CLI, the bench and the docs tables).

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode``: one multiply-add = 2 FLOPs
(FLOPs = 2 x MACs); only matmul, convolution and attention kernels are counted, element-wise work
(norms, activations, bias adds, softmax) is not.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_params", "count_flops"]


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, input_shape: tuple[int, ...], device: str | torch.device = "cpu") -> int:
    """FLOPs of one forward pass of ``model`` on a zero tensor of ``input_shape`` (eval mode, no grad).

    Args:
        model: the network; its train/eval mode is restored afterwards.
        input_shape: e.g. ``(1, 1, 224, 224)``.
        device: where the input is created (the model must already be there).

    Returns:
        Total FLOPs of the forward pass (2 x MACs).
    """
    if not input_shape or min(input_shape) < 1:
        raise ValueError(f"input_shape must be non-empty with positive sides, got {input_shape}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(input_shape, device=device))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
