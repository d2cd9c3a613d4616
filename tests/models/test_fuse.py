import pytest
import torch

from emfformer.models import create_model
from emfformer.models.dspconv import DSPConv
from emfformer.models.fuse import DENSE_SHUFFLE_MAX_CHANNELS, fuse_for_inference
from emfformer.models.layers import LayerScale2d


def _as_if_trained(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial running statistics, BN affines and layer scales, as after training."""
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
        elif isinstance(m, LayerScale2d):
            m.gamma.data.uniform_(0.05, 1.0)
    return model.eval()


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("emf_former_t", {"head_stride": 1}),
        ("emf_former_s", {}),
        ("emf_former_s", {"heads": "parallel"}),
        ("emf_former_s", {"shuffle": False}),
        ("emf_former_s_twin_sdpa", {}),
    ],
)
def test_every_fold_keeps_the_outputs(name: str, kwargs: dict) -> None:
    torch.manual_seed(0)
    model = _as_if_trained(create_model(name, num_classes=3, **kwargs))
    fused = fuse_for_inference(model)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules()) < n_bn / 2
    assert not any(isinstance(m, LayerScale2d) for m in fused.modules())  # folded into the linear maps
    x = torch.randn(2, 1, 64, 48)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-4)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()), "the original is untouched"
    assert any(isinstance(m, LayerScale2d) for m in model.modules())


@pytest.mark.parametrize("channels, groups", [(16, 4), (32, 2), (24, 3), (64, 4)])
def test_the_shuffle_folds_into_a_dense_conv_only_for_narrow_units(channels: int, groups: int) -> None:
    torch.manual_seed(0)
    unit = _as_if_trained(DSPConv(channels, groups=groups))
    fused = fuse_for_inference(unit)
    x = torch.randn(2, channels, 12, 10)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), unit(x), rtol=1e-5, atol=1e-5)
    narrow = channels <= DENSE_SHUFFLE_MAX_CHANNELS
    assert fused.shuffle is not narrow and (fused.pw1[0].groups == 1) is narrow
    assert unit.shuffle and unit.pw1[0].groups == groups  # the original is untouched


def test_a_float64_model_stays_float64() -> None:
    model = _as_if_trained(create_model("emf_former_t", num_classes=3)).double()
    fused = fuse_for_inference(model)
    assert {p.dtype for p in fused.parameters()} == {torch.float64}
    x = torch.randn(1, 1, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-9, atol=1e-9)
