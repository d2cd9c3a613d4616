"""Training loss: 0.5 * cross-entropy + 0.5 * soft Dice (TransUNet convention), MONAI's DiceCELoss."""

from __future__ import annotations

import torch
from monai.losses import DiceCELoss
from torch import nn

__all__ = ["SegLoss"]


class SegLoss(nn.Module):
    """logits (B, C, H, W) and integer labels (B, H, W) -> scalar loss.

    Dice is the soft Dice over all classes including background, averaged over the batch (MONAI
    defaults with ``batch=True`` so that slices without a class do not get a Dice of 0 for it).
    """

    def __init__(self, ce_weight: float = 0.5, dice_weight: float = 0.5) -> None:
        super().__init__()
        self.loss = DiceCELoss(
            to_onehot_y=True, softmax=True, batch=True, lambda_ce=ce_weight, lambda_dice=dice_weight
        )

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss(logits, labels.unsqueeze(1))
