import pytest
import torch

from emfformer.models import create_model
from emfformer.models.emf_former import EMF_FORMER_SIZES, emf_former

ABLATIONS = [
    dict(attention="mhsa"),
    dict(heads="parallel"),
    dict(shuffle=False),
    dict(conv="plain"),
    dict(active_heads=(2, 3)),
    dict(grad_checkpoint=True),
    dict(recompute="cheap"),
    dict(recompute="all"),
]


@pytest.mark.parametrize("overrides", ABLATIONS, ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
def test_ablation_switches_forward_backward(overrides):
    model = emf_former("tiny", in_channels=1, num_classes=3, **overrides).train()
    x = torch.randn(2, 1, 32, 48)
    y = model(x)
    assert y.shape == (2, 3, 32, 48)
    y.mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


RECOMPUTED = [
    ("tiny", dict(grad_checkpoint=True)),
    ("tiny", dict(recompute="all")),
    ("tiny", dict(recompute="cheap")),
    ("small", dict(recompute="cheap", head_stride=1)),
    ("tiny", dict(recompute="cheap", twin="sdpa")),
]
RECOMPUTED_IDS = ["grad_checkpoint", "all", "cheap", "cheap-s-head1", "cheap-sdpa-twin"]


@pytest.mark.parametrize(("variant", "kwargs"), RECOMPUTED, ids=RECOMPUTED_IDS)
def test_recomputation_gives_the_plain_paths_outputs_and_gradients(variant, kwargs):
    torch.manual_seed(0)
    plain_kwargs = {k: v for k, v in kwargs.items() if k not in ("grad_checkpoint", "recompute")}
    a = emf_former(variant, **plain_kwargs).train()
    b = emf_former(variant, **kwargs).train()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 1, 32, 32)
    ya, yb = a(x), b(x)
    torch.testing.assert_close(yb, ya, rtol=0, atol=0)  # the forward is the same computation
    ya.square().mean().backward()
    yb.square().mean().backward()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("size", [(100, 100), (64, 72)])
def test_bad_input_size_says_what_to_pad_to(size):
    model = emf_former("tiny").eval()
    expected = f"{-(-size[0] // 16) * 16}x{-(-size[1] // 16) * 16}"
    with pytest.raises(ValueError, match=f"Pad the input to {expected}"):
        model(torch.zeros(1, 1, *size))


def test_emf_former_s_maps_224_to_224():
    model = create_model("emf_former_s", in_channels=1, num_classes=4).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 224, 224)).shape == (2, 4, 224, 224)


def test_sizes_grow_in_parameters():
    counts = [sum(p.numel() for p in emf_former(s).parameters()) for s in ("tiny", "small", "base")]
    assert counts == sorted(counts) and len(set(counts)) == 3
    assert set(EMF_FORMER_SIZES) == {"tiny", "small", "base"}


def test_twin_is_the_same_network_without_the_papers_parts():
    twin = create_model("emf_former_s_twin")
    blk = twin.stages[2].blocks[0]
    assert type(blk.attn.heads[0]).__name__ == "SoftmaxAttention" and not blk.attn.serial
    assert type(twin.stages[0].blocks[0].unit).__name__ == "PlainConv"


@pytest.mark.parametrize("kwargs", [dict(depths=(1, 1, 1)), dict(num_classes=0), dict(depths=(0, 1, 1, 1))])
def test_constructor_validates(kwargs):
    with pytest.raises(ValueError):
        emf_former("tiny", **kwargs)
    with pytest.raises(ValueError, match="variant must be"):
        emf_former("huge")
    with pytest.raises(ValueError, match="twin must be"):
        emf_former("tiny", twin="flash")
    with pytest.raises(ValueError, match="head_stride"):
        emf_former("tiny", head_stride=4)


@pytest.mark.parametrize("mode", ["cheap", "all"])
def test_recompute_covers_every_stage(mode):
    model = emf_former("tiny", recompute=mode)
    assert all(stage.recompute == mode for stage in [*model.stages, *model.decoder])
    assert all(stage.recompute == "none" for stage in emf_former("tiny").stages)
    assert emf_former("tiny", grad_checkpoint=True).stages[0].recompute == "all"
    with pytest.raises(ValueError, match="recompute must be one of"):
        emf_former("tiny", recompute="some")


@pytest.mark.parametrize(
    "kwargs", [dict(grad_checkpoint=True), dict(recompute="cheap")], ids=["all", "cheap"]
)
def test_recomputation_updates_batchnorm_statistics_once_per_step(kwargs):
    """Recomputation reruns BN in training mode: its running stats must still move exactly once."""
    torch.manual_seed(0)
    plain = emf_former("tiny").train()
    recompute = emf_former("tiny", **kwargs).train()
    recompute.load_state_dict(plain.state_dict())
    x = torch.randn(4, 1, 32, 32)
    plain(x).square().mean().backward()
    recompute(x).square().mean().backward()
    buffers_plain, buffers_recompute = dict(plain.named_buffers()), dict(recompute.named_buffers())
    assert any(k.endswith("num_batches_tracked") for k in buffers_plain)
    for name, value in buffers_plain.items():
        torch.testing.assert_close(buffers_recompute[name], value, rtol=0, atol=0, msg=name)
        if name.endswith("num_batches_tracked"):
            assert int(value) == 1, name
    assert all(m.momentum == 0.1 for m in recompute.modules() if isinstance(m, torch.nn.BatchNorm2d))


@pytest.mark.parametrize("head_stride", [1, 2])
def test_head_stride_sets_the_resolution_of_the_logits(head_stride):
    model = emf_former("tiny", num_classes=3, head_stride=head_stride).eval()
    assert (model.full_res is None) == (head_stride == 2)
    assert len(model.decoder) == (4 if head_stride == 1 else 3)
    seen = {}
    model.head.register_forward_hook(lambda m, i, o: seen.update(shape=o.shape))  # returns None
    with torch.no_grad():
        assert model(torch.randn(1, 1, 64, 48)).shape == (1, 3, 64, 48)
    assert tuple(seen["shape"][-2:]) == (64 // head_stride, 48 // head_stride)


def test_every_conv_path_has_a_nonlinearity():
    """The twin's conv blocks and all downsampling convs are nonlinear (not conv + BN alone)."""
    for name in ("emf_former_s", "emf_former_s_twin", "emf_former_s_twin_sdpa"):
        model = create_model(name)
        for stage in model.stages[1:]:
            assert isinstance(stage.downsample[-1], torch.nn.GELU), name
        for block in model.stages[0].blocks:
            assert any(isinstance(m, torch.nn.GELU) for m in block.unit.modules()), name


def test_the_two_twins_compute_the_same_function():
    """emf_former_s_twin (explicit softmax) and _twin_sdpa (fused kernel) differ only in the kernel."""
    torch.manual_seed(0)
    explicit = create_model("emf_former_s_twin", num_classes=3).eval()
    fused = create_model("emf_former_s_twin_sdpa", num_classes=3).eval()
    fused.load_state_dict(explicit.state_dict())
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), explicit(x), rtol=1e-4, atol=1e-4)
    n_ours = sum(p.numel() for p in create_model("emf_former_s").parameters())
    n_twin = sum(p.numel() for p in explicit.parameters())
    assert 1.0 < n_twin / n_ours < 2.0  # same widths/depths; dense convs + full-width heads cost more
