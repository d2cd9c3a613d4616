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
]


@pytest.mark.parametrize("overrides", ABLATIONS, ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
def test_ablation_switches_forward_backward(overrides):
    model = emf_former("tiny", in_channels=1, num_classes=3, **overrides).train()
    x = torch.randn(2, 1, 32, 48)
    y = model(x)
    assert y.shape == (2, 3, 32, 48)
    y.mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_grad_checkpoint_gives_same_gradients():
    torch.manual_seed(0)
    a = emf_former("tiny")
    b = emf_former("tiny", grad_checkpoint=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 1, 32, 32)
    a(x).square().mean().backward()
    b(x).square().mean().backward()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad)


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
    with pytest.raises(ValueError, match="size must be"):
        emf_former("huge")


def test_grad_checkpoint_covers_every_stage():
    model = emf_former("tiny", grad_checkpoint=True)
    stages = [*model.stages, *model.decoder]
    assert all(stage.grad_checkpoint for stage in stages)
    assert not any(stage.grad_checkpoint for stage in emf_former("tiny").stages)
