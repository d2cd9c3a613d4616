"""models/layers.py: the shared initialisation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from emfformer.models.layers import init_conv_fan_out


@pytest.mark.parametrize(
    ("module", "fan_out"),
    [
        (nn.Conv2d(8, 16, 3), 9 * 16),
        (nn.Conv2d(16, 16, 3, groups=16), 9),  # depthwise: k * C_out / groups
        (nn.Conv1d(4, 6, 5, groups=2), 5 * 3),
    ],
)
def test_init_conv_fan_out_is_he_normal_on_fan_out(module: nn.Module, fan_out: int) -> None:
    torch.manual_seed(0)
    nn.init.constant_(module.bias, 1.0)
    init_conv_fan_out(module)
    assert torch.equal(module.bias, torch.zeros_like(module.bias))
    torch.manual_seed(0)
    expected = torch.empty_like(module.weight).normal_(0.0, math.sqrt(2.0 / fan_out))
    assert torch.equal(module.weight, expected)  # the same draw: same weights for the same seed


def test_init_conv_fan_out_leaves_other_modules() -> None:
    linear = nn.Linear(3, 3)
    before = linear.weight.clone()
    init_conv_fan_out(linear)
    assert torch.equal(linear.weight, before)
