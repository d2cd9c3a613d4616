"""Training loss: 0.5 * cross-entropy + 0.5 * soft Dice (TransUNet convention).

The value equals MONAI's ``DiceCELoss(to_onehot_y=True, softmax=True, batch=True)`` (a test checks it).
It is written out because the batch Dice is not a mean over samples: under torchrun the Dice sums
(intersection, prediction and label volumes per class) are all-reduced across processes, as in
nnU-Net's DDP Dice, so N processes optimise the Dice of the whole global batch, exactly as one
process would.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import all_reduce_sum

__all__ = ["SegLoss"]

_SMOOTH = 1e-5  # MONAI's smooth_nr = smooth_dr


class SegLoss(nn.Module):
    """logits (B, C, H, W) and integer labels (B, H, W) -> scalar loss.

    Dice is the soft Dice of each class including background over the whole batch (a slice without a
    class does not get a Dice of 0 for it), averaged over classes.

    Args:
        ce_weight, dice_weight: weights of the two terms.
        distributed: all-reduce the Dice sums over the processes of the default process group.
    """

    def __init__(self, ce_weight: float = 0.5, dice_weight: float = 0.5, distributed: bool = False) -> None:
        super().__init__()
        self.ce_weight, self.dice_weight, self.distributed = ce_weight, dice_weight, distributed

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, labels)
        probs = logits.softmax(dim=1)
        one_hot = F.one_hot(labels, logits.shape[1]).movedim(-1, 1).to(probs.dtype)
        dims = (0, *range(2, logits.ndim))  # batch and space: one Dice per class
        sums = torch.stack([(probs * one_hot).sum(dims), one_hot.sum(dims), probs.sum(dims)])
        if self.distributed:
            sums = all_reduce_sum(sums)  # differentiable: see its docstring for the gradient
        intersection, truth, pred = sums
        dice = 1.0 - (2.0 * intersection + _SMOOTH) / (truth + pred + _SMOOTH)
        return self.ce_weight * ce + self.dice_weight * dice.mean()
