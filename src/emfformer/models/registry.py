"""One flat registry of every model: EMF-former sizes, its ablations/twin, and the MONAI baselines."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from torch import nn

from .emf_former import emf_former

__all__ = ["MODELS", "create_model", "list_models", "min_input_multiple", "size_kwargs"]


def _baseline(name: str) -> Callable[..., nn.Module]:
    """Factory that imports MONAI only when a baseline is built (keeps `import emfformer` light)."""

    def build(**kwargs: Any) -> nn.Module:
        from . import baselines

        return getattr(baselines, name)(**kwargs)

    build.__name__ = name
    return build


MODELS: dict[str, Callable[..., nn.Module]] = {
    "emf_former_t": partial(emf_former, "tiny"),
    "emf_former_s": partial(emf_former, "small"),
    "emf_former_b": partial(emf_former, "base"),
    "emf_former_t_twin": partial(emf_former, "tiny", twin=True),
    "emf_former_s_twin": partial(emf_former, "small", twin=True),
    "emf_former_b_twin": partial(emf_former, "base", twin=True),
    "unet": _baseline("unet"),
    "unetr": _baseline("unetr"),
    "swin_unetr": _baseline("swin_unetr"),
}

# The side length an input must be a multiple of; UNETR additionally needs exactly its img_size.
_INPUT_MULTIPLE = {"unetr": 16, "swin_unetr": 32}


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(MODELS)


def min_input_multiple(name: str) -> int:
    """Input H and W must be multiples of this for model ``name``."""
    return _INPUT_MULTIPLE.get(name, 16)


def size_kwargs(name: str, size: int) -> dict[str, Any]:
    """Constructor kwargs a model needs for square inputs of side ``size`` (UNETR: ``img_size``)."""
    return {"img_size": size} if name == "unetr" else {}


def create_model(name: str, in_channels: int = 1, num_classes: int = 4, **overrides: Any) -> nn.Module:
    """Build a registered model. Every model maps (B, in_channels, H, W) to raw logits (B, num_classes, H, W).

    ``overrides`` go to the model's constructor, e.g. ``attention="mhsa"`` for an EMF-former ablation or
    ``img_size=64`` for UNETR.

    Raises:
        KeyError: unknown ``name``; the message lists the valid names.
    """
    if name not in MODELS:
        raise KeyError(f"Unknown model {name!r}. Valid names: {', '.join(list_models())}")
    return MODELS[name](in_channels=in_channels, num_classes=num_classes, **overrides)
