"""The training loss equals MONAI's DiceCELoss, and its Dice is over the whole batch."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceCELoss

from emfformer.engine.losses import SegLoss


@pytest.mark.parametrize("classes, shape", [(2, (3, 8, 8)), (4, (5, 16, 12)), (3, (1, 4, 4, 4))])
def test_equals_monai_dice_ce_with_batch_dice(classes: int, shape: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(classes)
    logits = torch.randn(shape[0], classes, *shape[1:], generator=gen, requires_grad=True)
    labels = torch.randint(0, classes, shape, generator=gen)
    ours = SegLoss()(logits, labels)
    ref = DiceCELoss(to_onehot_y=True, softmax=True, batch=True, lambda_ce=0.5, lambda_dice=0.5)(
        logits, labels.unsqueeze(1)
    )
    torch.testing.assert_close(ours, ref)
    (g1,) = torch.autograd.grad(ours, logits)
    (g2,) = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(g1, g2)


def test_dice_is_over_the_batch_not_a_mean_over_samples() -> None:
    logits = torch.zeros(2, 2, 4, 4)
    logits[:, 1] = 5.0  # predicts class 1 everywhere
    labels = torch.zeros(2, 4, 4, dtype=torch.long)
    labels[0] = 1  # class 1 only in the first sample
    both = SegLoss()(logits, labels)
    halves = (SegLoss()(logits[:1], labels[:1]) + SegLoss()(logits[1:], labels[1:])) / 2
    assert not torch.isclose(both, halves)
