"""The value checks of a run configuration: one table of (condition, message) per section.

:func:`emfformer.engine.config.load_config` (and ``config_from_dict``) runs :func:`check_values` once the
defaults, the YAML file and the overrides are merged, so a bad value is named by its dotted key before any
work starts. The model name is checked first: the size rule depends on it.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

from ..data.locate import DATASETS
from ..data.splits import ACDC_FOLD_RULE
from ..models import input_problem, list_models

if TYPE_CHECKING:
    from .config import RunConfig

__all__ = ["check_values"]

Check = tuple[bool, str]


def check_values(cfg: RunConfig) -> None:
    """Every value of ``cfg`` in its range; raises ValueError naming the key of the first that is not."""
    known = cfg.model.name in list_models()
    model = [(known, f"Unknown model {cfg.model.name!r}; valid: {', '.join(list_models())}")]
    for ok, msg in [*model, *_optim_checks(cfg), *_data_checks(cfg), *_run_checks(cfg)]:
        if not ok:
            raise ValueError(msg)
    _check_seeds(cfg)


def _optim_checks(cfg: RunConfig) -> list[Check]:
    o = cfg.optim
    return [
        (o.epochs >= 1, f"optim.epochs must be >= 1, got {o.epochs}"),
        (
            o.batch_size == "auto" or (isinstance(o.batch_size, int) and o.batch_size >= 1),
            f"optim.batch_size must be auto or >= 1, got {o.batch_size}",
        ),
        (math.isfinite(o.lr) and o.lr > 0, f"optim.lr must be a finite number > 0, got {o.lr}"),
        (
            all(math.isfinite(v) and v >= 0 for v in (o.weight_decay, o.min_lr, o.grad_clip)),
            "optim.weight_decay, optim.min_lr and optim.grad_clip must be finite and >= 0",
        ),
        (o.schedule in ("cosine", "poly"), f"optim.schedule must be cosine|poly, got {o.schedule!r}"),
    ]


def _data_checks(cfg: RunConfig) -> list[Check]:
    d, size_problem = cfg.data, _size_problem(cfg)
    margin_ok = d.patch_margin == "auto" or (
        isinstance(d.patch_margin, int) and not isinstance(d.patch_margin, bool) and d.patch_margin >= 0
    )
    return [
        (margin_ok, f"data.patch_margin must be auto or an int >= 0, got {d.patch_margin!r}"),
        (d.memory_budget_mib > 0, f"data.memory_budget_mib must be > 0, got {d.memory_budget_mib}"),
        (not size_problem, f"data.size: {size_problem}"),
        (0.0 < d.keep_empty <= 1.0, f"data.keep_empty must be in (0, 1], got {d.keep_empty}"),
        (d.fold >= -1, f"data.fold must be >= 0, or -1 for all non-test cases, got {d.fold}"),
        (0.0 <= d.flip_prob <= 1.0, f"data.flip_prob must be in [0, 1], got {d.flip_prob}"),
        (d.num_workers >= 0, f"data.num_workers must be >= 0, got {d.num_workers}"),
        (d.dataset in DATASETS, f"data.dataset must be one of {DATASETS}, got {d.dataset!r}"),
        (d.dataset != "acdc" or d.fold in (0, -1), f"{ACDC_FOLD_RULE}, got {d.fold}"),
    ]


def _run_checks(cfg: RunConfig) -> list[Check]:
    return [
        (cfg.threads is None or cfg.threads >= 1, f"threads must be >= 1 (or unset), got {cfg.threads}"),
        (isinstance(cfg.model.kwargs, dict), f"model.kwargs must be a mapping, got {cfg.model.kwargs!r}"),
        (
            re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", str(cfg.device)) is not None,
            f"device must be auto|cpu|cuda|cuda:N|mps, got {cfg.device!r}",
        ),
        (cfg.val_every >= 1, f"val_every must be >= 1, got {cfg.val_every}"),
    ]


def _size_problem(cfg: RunConfig) -> str:
    """Why ``data.size`` does not fit the model ("" when it does, or when either is not yet known)."""
    if cfg.model.name in list_models() and isinstance(cfg.data.size, int):
        return input_problem(cfg.model.name, cfg.data.size) or ""
    return ""


def _check_seeds(cfg: RunConfig) -> None:
    """Seeds numpy accepts (0..2**32-1): a larger one would overflow inside the run, not here."""
    if not all(0 <= v <= 2**32 - 1 for v in (cfg.seed, cfg.data.split_seed)):
        raise ValueError(
            f"seed and data.split_seed must be in 0..4294967295 (numpy's seed range), got seed={cfg.seed}, "
            f"data.split_seed={cfg.data.split_seed}"
        )
