import pytest
import torch

from emfformer.models import create_model
from emfformer.models.fuse import fold_batchnorm


@pytest.mark.parametrize("name", ["emf_former_t", "emf_former_s_twin_sdpa"])
def test_folding_batchnorm_keeps_the_outputs(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, **({"head_stride": 1} if name == "emf_former_t" else {}))
    for m in model.modules():  # non-trivial running statistics, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    model.eval()
    fused = fold_batchnorm(model)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules()) < n_bn / 2
    x = torch.randn(2, 1, 64, 48)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-4)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()), "the original is untouched"
