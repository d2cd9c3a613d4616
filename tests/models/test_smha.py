import pytest
import torch

from emfformer.models.smha import SerialMultiHeadAttention


def head_outputs(module, x):
    outs = []
    hooks = [h.register_forward_hook(lambda _m, _i, o: outs.append(o)) for h in module.heads]
    module(x)
    for h in hooks:
        h.remove()
    return outs


@pytest.mark.parametrize("attention", ["vaa", "mhsa"])
def test_serial_head_depends_on_previous_head_only(attention):
    torch.manual_seed(0)
    dim, heads = 16, 4
    m = SerialMultiHeadAttention(dim, heads, attention=attention)
    x = torch.randn(1, 12, dim, requires_grad=True)
    outs = head_outputs(m, x)
    (g,) = torch.autograd.grad(outs[1].sum(), x)
    per_chunk = g[0].abs().sum(dim=0).view(heads, dim // heads).sum(dim=1)
    assert per_chunk[0] > 0, "head 1 must receive head 0's output"
    assert per_chunk[1] > 0
    assert per_chunk[2] == 0 and per_chunk[3] == 0, "head 1 must not see later chunks"


def test_parallel_heads_see_all_channels():
    m = SerialMultiHeadAttention(16, 4, heads="parallel")
    x = torch.randn(1, 12, 16, requires_grad=True)
    m(x)[..., :4].sum().backward()
    assert (x.grad.abs().sum(dim=(0, 1)) > 0).all()


def test_ignored_heads_are_not_computed_and_pass_through():
    m = SerialMultiHeadAttention(16, 4, active_heads=2)
    assert len(m.heads) == 2
    x = torch.randn(2, 9, 16)
    assert m(x).shape == (2, 9, 16)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(dim=15, num_heads=4),
        dict(dim=16, num_heads=4, attention="linear"),
        dict(dim=16, num_heads=4, heads="sideways"),
        dict(dim=16, num_heads=4, active_heads=5),
        dict(dim=16, num_heads=4, heads="parallel", active_heads=2),
    ],
)
def test_smha_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        SerialMultiHeadAttention(**kwargs)


def test_serial_heads_use_fewer_parameters_than_parallel():
    def count(m):
        return sum(p.numel() for p in m.parameters())

    assert count(SerialMultiHeadAttention(64, 4)) < count(SerialMultiHeadAttention(64, 4, heads="parallel"))
