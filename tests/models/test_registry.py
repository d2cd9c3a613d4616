import pytest
import torch

from emfformer.models import create_model, list_models

REQUIRED = {
    "emf_former_t",
    "emf_former_s",
    "emf_former_b",
    "emf_former_s_twin",
    "unet",
    "unetr",
    "swin_unetr",
}
# tiny inputs per model: (side, constructor overrides)
TINY = {"unetr": (32, dict(img_size=32)), "swin_unetr": (64, {})}


def test_required_names_are_registered():
    assert REQUIRED <= set(list_models())


def test_unknown_name_lists_valid_ones():
    with pytest.raises(KeyError, match="emf_former_s.*unet"):
        create_model("emf_former_xl")


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_tiny(name):
    torch.manual_seed(0)
    side, kw = TINY.get(name, (32, {}))
    model = create_model(name, in_channels=1, num_classes=3, **kw).train()
    x = torch.randn(2, 1, side, side)
    y = model(x)
    assert y.shape == (2, 3, side, side)
    assert torch.isfinite(y).all()
    y.mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(torch.isfinite(g).all() for g in grads if g is not None)


@pytest.mark.parametrize("name", list_models())
def test_224_input_maps_to_224_output(name):
    model = create_model(name, in_channels=1, num_classes=4).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 224, 224)).shape == (1, 4, 224, 224)


@pytest.mark.parametrize("name", ["emf_former_t", "emf_former_s_twin", "unet"])
def test_same_seed_same_output(name):
    x = torch.randn(1, 1, 32, 32)
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        outs.append(create_model(name).eval()(x))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


@pytest.mark.parametrize("name", ["emf_former_t", "unet"])
def test_state_dict_round_trip(name, tmp_path):
    torch.manual_seed(0)
    a = create_model(name).eval()
    torch.save(a.state_dict(), tmp_path / "w.pt")
    torch.manual_seed(1)
    b = create_model(name).eval()
    b.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    x = torch.randn(1, 1, 32, 32)
    torch.testing.assert_close(a(x), b(x))
