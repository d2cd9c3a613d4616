import pytest
import torch
from torch import nn

from emfformer.models.dspconv import DSPConv, make_conv_unit
from emfformer.models.layers import channel_shuffle


def channel_dependency(module: nn.Module, channels: int) -> torch.Tensor:
    """(C_out, C_in) boolean matrix: does output channel o depend on input channel i?"""
    module.eval()
    x = torch.randn(1, channels, 5, 5, requires_grad=True)
    y = module(x)
    dep = torch.zeros(y.shape[1], channels, dtype=torch.bool)
    for o in range(y.shape[1]):
        (g,) = torch.autograd.grad(y[0, o].sum(), x, retain_graph=True)
        dep[o] = g[0].abs().sum(dim=(1, 2)) > 0
    return dep


def test_shuffle_before_dense_pointwise_is_only_a_weight_permutation():
    # the pitfall the paper's naive reading runs into: shuffle -> dense 1x1 == dense 1x1 with permuted weights
    torch.manual_seed(0)
    c, g = 8, 4
    pw = nn.Conv2d(c, c, 1, bias=False)
    x = torch.randn(2, c, 6, 6)
    perm = channel_shuffle(torch.arange(c, dtype=torch.float32).view(1, c, 1, 1), g).flatten().long()
    permuted = nn.Conv2d(c, c, 1, bias=False)
    with torch.no_grad():
        permuted.weight.zero_()
        permuted.weight[:, perm] = pw.weight
    torch.testing.assert_close(pw(channel_shuffle(x, g)), permuted(x))


def test_dspconv_shuffle_mixes_all_groups_and_is_not_a_permutation():
    torch.manual_seed(0)
    c, g = 8, 4
    with_shuffle = channel_dependency(DSPConv(c, groups=g, shuffle=True), c)
    without = channel_dependency(DSPConv(c, groups=g, shuffle=False), c)
    assert with_shuffle.all(), "with the shuffle every output channel must see every input channel"
    # without it, each output channel only sees its own group of c/g inputs: block-diagonal
    assert without.sum(dim=1).tolist() == [c // g] * c
    # no channel permutation turns a block-diagonal pattern into a dense one: the sets of dependencies differ
    assert with_shuffle.sum() != without.sum()


@pytest.mark.parametrize("cin,cout,groups", [(8, 8, 4), (16, 8, 2), (12, 24, 4)])
def test_dspconv_shapes(cin, cout, groups):
    y = DSPConv(cin, cout, groups=groups)(torch.randn(2, cin, 7, 9))
    assert y.shape == (2, cout, 7, 9)


@pytest.mark.parametrize(
    "kwargs,match",
    [(dict(in_channels=6, groups=4), "divisible by groups"), (dict(in_channels=8, kernel_size=2), "odd")],
)
def test_dspconv_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DSPConv(**kwargs)


def test_plain_conv_unit_has_more_parameters_than_dspconv():
    def count(m):
        return sum(p.numel() for p in m.parameters())

    assert count(make_conv_unit("plain", 64)) > 2 * count(make_conv_unit("dspconv", 64))
    with pytest.raises(ValueError, match="dspconv"):
        make_conv_unit("bogus", 8)
