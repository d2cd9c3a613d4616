"""Activation recomputation of EMF-former blocks: all of a block, or only its cheap parts.

Training memory of EMF-former is dominated by what its blocks keep for backward, and most of that is
the output of cheap, memory-bound ops: BatchNorm, GELU, depthwise and small grouped convs, the channel
shuffle (a copy), L2 normalisations, residual adds. ``"cheap"`` keeps only the outputs of the costly
ops (convolutions of at least 64 multiply-adds per output element, matmuls / linear layers, attention
kernels) and reruns every other op of the block in backward, from the block input and those kept
outputs (PyTorch's selective activation checkpointing). ``"all"`` keeps only each block's input and
reruns the whole block (the classic trade: least memory, one extra forward per step).

Either way BatchNorm statistics are counted once per step: the rerun normalises with the same batch
statistics but leaves ``running_mean`` / ``running_var`` / ``num_batches_tracked`` as they are."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

__all__ = ["RECOMPUTE_MODES", "frozen_norm_stats", "run_blocks"]

RECOMPUTE_MODES = ("none", "cheap", "all")

_aten = torch.ops.aten
# a convolution with fewer multiply-adds per output element (C_in / groups x k x k) is cheaper to rerun
# than to keep: depthwise convs (9) and the grouped 1x1 convs of DSPConv (C / 4 or 2C / 4) below 1/8
_MIN_MACS = 64
# the ops whose outputs are worth keeping: their FLOPs dominate a block (a rerun would cost a forward)
_COSTLY = {
    _aten.mm.default, _aten.bmm.default, _aten.addmm.default, _aten.baddbmm.default,
    _aten._scaled_dot_product_flash_attention_for_cpu.default,
    _aten._scaled_dot_product_efficient_attention.default, _aten._scaled_dot_product_flash_attention.default,
}  # fmt: skip


def _keep_costly(ctx: Any, op: Any, *args: Any, **kwargs: Any) -> CheckpointPolicy:
    """Selective-checkpoint policy: keep matmuls and convolutions of >= 64 MACs per output element,
    rerun the rest (norms, activations, adds, copies, small convolutions)."""
    if op in _COSTLY:
        return CheckpointPolicy.MUST_SAVE
    if op is _aten.convolution.default:
        weight = args[1]
        macs = weight.shape[1] * weight.shape[2] * weight.shape[3]  # per output element: C_in/g x k x k
        return CheckpointPolicy.MUST_SAVE if macs >= _MIN_MACS else CheckpointPolicy.PREFER_RECOMPUTE
    return CheckpointPolicy.PREFER_RECOMPUTE


@contextlib.contextmanager
def frozen_norm_stats(module: nn.Module) -> Iterator[None]:
    """Within this context BatchNorm layers of ``module`` normalise with batch statistics (as in
    training) but do not update their running statistics or ``num_batches_tracked``.

    Activation recomputation reruns a block's forward pass in backward; without this the BatchNorm
    running statistics would be updated twice per step.
    """
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    # momentum 0 keeps running_mean/var as they are while computing exactly what the first pass did
    # (same kernels, same saved tensors, which checkpoint() verifies); the step counter is put back
    saved = [
        (m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in norms
    ]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved, strict=True):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


@contextlib.contextmanager
def _together(*contexts: contextlib.AbstractContextManager) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for c in contexts:
            stack.enter_context(c)
        yield


def _contexts(block: nn.Module, mode: str) -> tuple[contextlib.AbstractContextManager, ...]:
    """The (forward, recompute) contexts of ``checkpoint`` for one block."""
    if mode == "all":
        return contextlib.nullcontext(), frozen_norm_stats(block)
    forward, rerun = create_selective_checkpoint_contexts(_keep_costly)
    # freeze the statistics outside the rerun's dispatch mode: its own tensor copies are no ops of the block
    return forward, _together(frozen_norm_stats(block), rerun)


def run_blocks(blocks: Sequence[nn.Module], x: torch.Tensor, mode: str = "none") -> torch.Tensor:
    """Apply ``blocks`` in order; ``mode`` "cheap" / "all" recomputes their activations in backward.

    Shapes: whatever the blocks take and give. Call with ``mode="none"`` outside training.
    """
    if mode not in RECOMPUTE_MODES:
        raise ValueError(f"recompute must be one of {RECOMPUTE_MODES}, got {mode!r}")
    for blk in blocks:
        if mode == "none":
            x = blk(x)
        else:
            x = checkpoint(blk, x, use_reentrant=False, context_fn=lambda b=blk: _contexts(b, mode))
    return x
