"""Whole-volume inference: volume -> 2D slices -> model -> per-class scores -> label volume."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from ..data.preprocess import PreprocessConfig, SliceInfo, slices_to_volume, volume_to_slices

__all__ = ["predict_slices", "predict_volume", "autocast"]


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on ``device`` when ``bf16``, else a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


@torch.no_grad()
def predict_slices(
    model: nn.Module, slices: np.ndarray | torch.Tensor, batch_size: int = 64, bf16: bool = False
) -> torch.Tensor:
    """Softmax probabilities for 2D slices: (S, 1, H, W) -> float32 (S, C, H, W) on the CPU."""
    device = next(model.parameters()).device
    x = torch.as_tensor(slices, dtype=torch.float32)
    outs = []
    for i in range(0, len(x), batch_size):
        with autocast(device, bf16):
            logits = model(x[i : i + batch_size].to(device))
        outs.append(logits.float().softmax(dim=1).cpu())
    return torch.cat(outs)


def predict_volume(
    model: nn.Module,
    image: np.ndarray,
    preprocess: PreprocessConfig,
    batch_size: int = 64,
    bf16: bool = False,
) -> tuple[np.ndarray, SliceInfo]:
    """Segment one 3D volume (X, Y, Z) slice by slice; returns the int16 label volume (X, Y, Z).

    The training preprocessing is applied and then inverted exactly (``slices_to_volume``).
    """
    slices, _, info = volume_to_slices(image, preprocess)
    probs = predict_slices(model, slices, batch_size, bf16)
    return slices_to_volume(probs, info), info
