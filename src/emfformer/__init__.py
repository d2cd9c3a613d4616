"""emfformer: reference implementation of EMF-former (Hao, Quan & Lu, MICCAI 2024).

Entry points (imported on first use, so ``import emfformer`` stays light):

- ``emfformer.create_model(name, in_channels=1, num_classes=4, **overrides)`` / ``build_model(name, side, ...)``
- ``emfformer.load_pretrained("hippocampus")``: the shipped model (models, preprocessing, class names)
- ``emfformer.segment(path_or_array, model=...)``: labels on the input's own grid
"""

from typing import Any

__version__ = "0.2.0"

_API = {
    "create_model": "emfformer.models",
    "build_model": "emfformer.models",
    "list_models": "emfformer.models",
    "load_pretrained": "emfformer.api",
    "segment": "emfformer.api",
}
__all__ = ["__version__", *_API]


def __dir__() -> list[str]:
    """The module's names plus the lazily imported API (so ``dir(emfformer)`` and tab completion show it)."""
    return sorted({*__all__, *(n for n in globals() if n.startswith("__"))})


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'emfformer' has no attribute {name!r}")
