"""One flat registry of every model: EMF-former sizes, its ablations/twins, the lightweight peers
(UNeXt, EGE-UNet, MALUNet, written from their papers) and the MONAI baselines."""

from __future__ import annotations

import importlib
import operator
from collections.abc import Callable
from functools import partial
from typing import Any

from torch import nn

from .emf_former import TOTAL_STRIDE, emf_former

__all__ = ["MODELS", "build_model", "create_model", "input_multiple", "input_problem", "list_models"]


def _lazy(module: str, name: str) -> Callable[..., nn.Module]:
    """Factory that imports ``module`` only when the model is built (MONAI for the baselines: keeps
    `import emfformer` light)."""

    def build(**kwargs: Any) -> nn.Module:
        return getattr(importlib.import_module(f"{__package__}.{module}"), name)(**kwargs)

    build.__name__ = name
    return build


_baseline = partial(_lazy, "baselines")


MODELS: dict[str, Callable[..., nn.Module]] = {
    "emf_former_t": partial(emf_former, "tiny"),
    "emf_former_s": partial(emf_former, "small"),
    "emf_former_b": partial(emf_former, "base"),
    "emf_former_t_twin": partial(emf_former, "tiny", twin="mhsa"),
    "emf_former_s_twin": partial(emf_former, "small", twin="mhsa"),
    "emf_former_b_twin": partial(emf_former, "base", twin="mhsa"),
    "emf_former_t_twin_sdpa": partial(emf_former, "tiny", twin="sdpa"),
    "emf_former_s_twin_sdpa": partial(emf_former, "small", twin="sdpa"),
    "emf_former_b_twin_sdpa": partial(emf_former, "base", twin="sdpa"),
    "unext": _lazy("unext", "unext"),
    "ege_unet": _lazy("ege_unet", "ege_unet"),
    "malunet": _lazy("malunet", "malunet"),
    "unet": _baseline("unet"),
    "unetr": _baseline("unetr"),
    "swin_unetr": _baseline("swin_unetr"),
}

# The one rule on input sides: H and W must be multiples of the model's total stride (EMF-former and
# UNet: 4 stride-2 levels; Swin UNETR: patch 2 x 4 merges; UNeXt, EGE-UNet, MALUNet: 5 stride-2 levels);
# UNETR's position embedding also fixes the side.
_INPUT_MULTIPLE = {"swin_unetr": 32, "unext": 32, "ege_unet": 32, "malunet": 32}


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(MODELS)


def input_multiple(name: str) -> int:
    """Input H and W must be multiples of this for model ``name``."""
    return _INPUT_MULTIPLE.get(name, TOTAL_STRIDE)


def input_problem(name: str, side: int, img_size: int | None = None) -> str | None:
    """Why model ``name`` (built for ``img_size``, UNETR only) cannot take ``side x side`` inputs; None if it can."""
    multiple = input_multiple(name)
    if side % multiple:
        return f"input side must be a multiple of {multiple} for {name}, got {side} (pad to {-(-side // multiple) * multiple})"
    if img_size is not None and img_size != side:
        return f"{name} is built for img_size={img_size}, input side is {side}"
    return None


def _positive_int(arg: str, value: Any) -> int:
    """``value`` as an int >= 1 (numpy ints accepted, bools and strings not)."""
    try:
        n = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        n = None
    if n is None or n < 1:
        raise ValueError(f"create_model: {arg} must be a positive int, got {value!r}")
    return n


def create_model(name: str, in_channels: int = 1, num_classes: int = 4, **overrides: Any) -> nn.Module:
    """Build a registered model. Every model maps (B, in_channels, H, W) to raw logits (B, num_classes, H, W).

    ``overrides`` go to the model's constructor, e.g. ``attention="mhsa"`` for an EMF-former ablation or
    ``img_size=64`` for UNETR.

    Raises:
        KeyError: unknown ``name``; the message lists the valid names.
        ValueError: ``in_channels`` or ``num_classes`` is not a positive int.
    """
    if name not in MODELS:
        raise KeyError(f"Unknown model {name!r}. Valid names: {', '.join(list_models())}")
    in_channels, num_classes = (
        _positive_int("in_channels", in_channels),
        _positive_int("num_classes", num_classes),
    )
    return MODELS[name](in_channels=in_channels, num_classes=num_classes, **overrides)


def build_model(
    name: str, side: int, in_channels: int = 1, num_classes: int = 4, **overrides: Any
) -> nn.Module:
    """:func:`create_model` for square inputs of ``side`` pixels: checks the side, sizes UNETR to it.

    Raises:
        KeyError: unknown ``name``.
        ValueError: ``side`` does not fit the model (the message says what to pad to).
    """
    if name == "unetr":
        overrides.setdefault("img_size", side)
    problem = input_problem(name, side, overrides.get("img_size"))
    if problem:
        raise ValueError(problem)
    return create_model(name, in_channels, num_classes, **overrides)
