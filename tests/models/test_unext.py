import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emfformer.models.stats import count_flops, count_params
from emfformer.models.unext import TOTAL_STRIDE, UNeXt, axial_shift, split_sizes, unext

# The paper's Table 1 reports UNeXt with 1.47 M parameters and 0.57 GFLOPs for binary segmentation
# (3-channel input, 1 output map). The GFLOPs column is multiply-adds as thop counts them, at 256x256:
# the same table's UNet (31.13 M params, 55.84 "GFLOPs") is ~54.7 G multiply-adds at 256x256, ~4x less
# than at 512x512 and 1.3x more than at 224x224.
PAPER_PARAMS = 1.47e6
PAPER_MACS = 0.57e9
PAPER_SIDE = 256


def test_paper_configuration_has_the_papers_parameter_count():
    n = count_params(unext(in_channels=3, num_classes=1))
    assert abs(n - PAPER_PARAMS) / PAPER_PARAMS < 0.10, n


def test_paper_configuration_has_the_papers_multiply_adds():
    macs = count_flops(unext(in_channels=3, num_classes=1), (1, 3, PAPER_SIDE, PAPER_SIDE)) / 2
    # count_flops counts 2 FLOPs per multiply-add of convs/matmuls only; thop also counts BatchNorm
    # and bilinear upsampling (~3 % more here), so ours must come out a little lower: within 10 %
    assert 0.90 * PAPER_MACS < macs < 1.10 * PAPER_MACS, macs
    assert macs <= PAPER_MACS


def test_forward_backward_on_non_square_input():
    torch.manual_seed(0)
    model = unext(in_channels=1, num_classes=4).train()
    x = torch.randn(2, 1, 64, 96)
    y = model(x)
    assert y.shape == (2, 4, 64, 96) and torch.isfinite(y).all()
    y.square().mean().backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    # every parameter learns, the Tok-MLP ones included (the shifts and slices keep the gradient flowing)
    assert [name for name, g in grads.items() if g.abs().sum() == 0] == []


def test_axial_shift_moves_each_group_with_zero_fill():
    torch.manual_seed(0)
    x = torch.randn(1, 7, 6, 8)
    sizes = split_sizes(7, 5)
    assert sizes == [2, 2, 1, 1, 1]
    for dim in (2, 3):
        out = axial_shift(x, sizes, dim)
        start = 0
        for size, shift in zip(sizes, range(-2, 3), strict=True):
            group = x[:, start : start + size]
            pads = [0, 0, 0, 0]
            pads[(3 - dim) * 2 : (3 - dim) * 2 + 2] = [abs(shift), abs(shift)]
            # reference: roll the zero-padded group, crop the middle
            expected = torch.roll(F.pad(group, pads), shift, dim).narrow(dim, abs(shift), x.shape[dim])
            torch.testing.assert_close(out[:, start : start + size], expected, rtol=0, atol=0)
            start += size


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(shift_size=4), "shift_size must be a positive odd int"),
        (dict(widths=(16, 32, 0, 160, 256)), "widths must be 5 positive ints"),
        (dict(widths=(16, 32, 128)), "widths must be 5 positive ints"),
        (dict(mlp_depth=0), "mlp_depth"),
        (dict(drop_path=1.0), "drop_path must be in"),
        (dict(num_classes=0), "num_classes must be >= 1"),
    ],
)
def test_invalid_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNeXt(**kwargs)


def test_bad_input_size_says_what_to_pad_to():
    with pytest.raises(ValueError, match="Pad the input to 96x64"):
        unext()(torch.zeros(1, 1, 80, 64))


def test_same_seed_gives_the_same_model():
    torch.manual_seed(3)
    a = unext(widths=(4, 8, 8, 8, 16))
    torch.manual_seed(3)
    b = unext(widths=(4, 8, 8, 8, 16))
    for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(ta, tb), name


def test_trace_keeps_the_input_size_dynamic():
    torch.manual_seed(0)
    model = unext(num_classes=3).eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.randn(1, 1, 64, 64), check_trace=False)
        other = torch.randn(2, 1, 96, 64)
        torch.testing.assert_close(traced(other), model(other), rtol=1e-4, atol=1e-5)
    assert TOTAL_STRIDE == UNeXt.input_multiple == 32


def test_onnx_export_matches_eager_and_has_dynamic_sides(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = unext(in_channels=1, num_classes=4).eval()
    x = torch.randn(1, 1, 64, 64)
    path = tmp_path / "unext.onnx"
    torch.onnx.export(
        model, x, str(path), opset_version=17, dynamo=False, input_names=["image"], output_names=["logits"],
        dynamic_axes={"image": {0: "b", 2: "h", 3: "w"}, "logits": {0: "b", 2: "h", 3: "w"}},
    )  # fmt: skip
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(x).numpy()
    (got,) = session.run(None, {"image": x.numpy()})
    np.testing.assert_allclose(got, expected, atol=1e-4)
    (other,) = session.run(
        None, {"image": np.random.default_rng(0).standard_normal((2, 1, 96, 64), np.float32)}
    )
    assert other.shape == (2, 4, 96, 64) and np.isfinite(other).all()
