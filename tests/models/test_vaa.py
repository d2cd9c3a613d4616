import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from emfformer.models.mhsa import SoftmaxAttention
from emfformer.models.vaa import VectorAggregationAttention


class LargestIntermediate(TorchDispatchMode):
    """Records the number of elements of the largest tensor any op produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def largest_intermediate(module, tokens: int, dim: int = 16) -> int:
    x = torch.randn(1, tokens, dim)
    with LargestIntermediate() as probe:
        module(x).sum().backward()
    return probe.largest


def test_vaa_largest_intermediate_grows_linearly_mhsa_quadratically():
    torch.manual_seed(0)
    vaa, mhsa = VectorAggregationAttention(16, 16, 2), SoftmaxAttention(16, 16, 2)
    n1, n2 = 256, 1024  # 4x the tokens
    vaa_growth = largest_intermediate(vaa, n2) / largest_intermediate(vaa, n1)
    mhsa_growth = largest_intermediate(mhsa, n2) / largest_intermediate(mhsa, n1)
    assert vaa_growth == pytest.approx(4.0, rel=0.05)
    assert mhsa_growth == pytest.approx(16.0, rel=0.05)


def test_vaa_never_builds_a_token_by_token_tensor():
    n = 900
    assert largest_intermediate(VectorAggregationAttention(16, 16, 1), n) < n * n / 10


@pytest.mark.parametrize("cls", [VectorAggregationAttention, SoftmaxAttention])
@pytest.mark.parametrize("in_dim,head_dim,heads", [(16, 8, 1), (16, 4, 4), (12, 6, 2)])
def test_attention_shapes_and_gradients(cls, in_dim, head_dim, heads):
    x = torch.randn(2, 20, in_dim, requires_grad=True)
    y = cls(in_dim, head_dim, heads)(x)
    assert y.shape == (2, 20, head_dim * heads)
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_vaa_mixes_tokens_globally():
    # the global vector makes every output token depend on every input token
    torch.manual_seed(0)
    x = torch.randn(1, 10, 8, requires_grad=True)
    y = VectorAggregationAttention(8, 8)(x)
    (g,) = torch.autograd.grad(y[0, 0].sum(), x)
    assert (g[0].abs().sum(dim=1) > 0).all()


def test_attention_rejects_bad_arguments():
    with pytest.raises(ValueError):
        VectorAggregationAttention(0, 8)
