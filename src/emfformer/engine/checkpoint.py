"""Self-describing checkpoints (nanoGPT style): everything predict/evaluate need to rebuild the model.

Contents: ``model`` / ``optimizer`` / ``scheduler`` (state dicts), ``rng``, ``history``, ``model_kwargs``
(incl. in_channels / num_classes), ``model_name``, ``preprocess`` (PreprocessConfig dict), ``class_names``,
``dataset``, ``config`` (the resolved RunConfig), ``epoch``, ``metric`` / ``best_metric``, ``seed``,
``emfformer_version``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..data.preprocess import PreprocessConfig
from ..io import atomic_write
from ..models import create_model

__all__ = ["save_checkpoint", "load_checkpoint", "model_from_checkpoint"]

REQUIRED_KEYS = ("model", "model_name", "model_kwargs", "preprocess", "class_names")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically (temp file + rename): a crash never leaves a truncated checkpoint."""
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}")
    return atomic_write(path, lambda tmp: torch.save({**state, "emfformer_version": __version__}, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` on the CPU.

    Raises:
        ValueError: missing file, unreadable file, or not an emfformer checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Checkpoint not found: {path}. Give the best.pt / last.pt of a run folder.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for corrupt files
        raise ValueError(f"Cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        raise ValueError(f"{path} is not an emfformer checkpoint (needs keys {list(REQUIRED_KEYS)})")
    return state


def model_from_checkpoint(state: dict[str, Any]) -> tuple[nn.Module, PreprocessConfig]:
    """Rebuild the model (eval mode, weights loaded) and its preprocessing from a checkpoint dict."""
    model = create_model(state["model_name"], **state["model_kwargs"])
    model.load_state_dict(state["model"])
    return model.eval(), PreprocessConfig.from_dict(state["preprocess"])
