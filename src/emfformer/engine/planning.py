"""``emfformer plan DATA``: the plan that the first ``train`` of a dataset makes, made and printed alone.

It plans on the same cases as training does (the training part of the split that ``data.split_seed``
draws, or the folds of the dataset's ``splits_final.json``), with the same config overrides, so the
printed plan is the one a ``train`` with those settings uses.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..data.locate import default_cache_dir, load_dataset
from ..data.plan import plan_summary
from ..data.splits import make_splits, select_cases
from ..guard import KIND_KEY, check_output
from ..io import atomic_write_json
from .config import load_config
from .train_data import plan_run

__all__ = ["run_plan"]

log = logging.getLogger(__name__)


def _checked_output(path: Path, data: Path, overwrite: bool) -> Path:
    """Refuse a folder, a file of the dataset, or an existing file that is not a plans.json written by
    emfformer (the never-destroy rule, guard.py; ``overwrite`` replaces a foreign file)."""
    if path.is_dir():
        raise ValueError(f"-o {path} is a folder; give the plans.json file to write")
    inside = data.is_dir() and path.exists() and path.resolve().is_relative_to(data.resolve())
    return check_output(path, "plans", [path] if inside else [], overwrite)


def run_plan(
    data: str | Path,
    output: str | Path | None = None,
    model: str | None = None,
    overrides: list[str] | None = None,
    config: str | Path | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> tuple[dict[str, Any], Path]:
    """Fingerprint ``data``, plan, print the plan and write it; returns (plan, path written).

    Raises:
        DataError: the dataset is missing or malformed.
        ValueError: a bad override, or ``output`` holds something that is not a plans.json.
    """
    forced = {"data.data_dir": str(data), **({"model.name": model} if model else {})}
    cfg = load_config(config, {**forced, **_parse(overrides)})
    info = load_dataset(cfg.data, progress=progress)
    out = _checked_output(
        Path(output) if output else default_cache_dir() / "plans" / f"{info.name}_plans.json",
        Path(data),
        overwrite,
    )
    ids = [c.case_id for c in info.cases]
    splits = info.splits_final or make_splits(
        ids, cfg.data.n_folds, cfg.data.test_fraction, cfg.data.split_seed
    )
    cases = select_cases(info, cfg.data, "train", splits)
    plan, pre = plan_run(info, cases, cfg, progress)  # the same as train's
    effective = {
        **plan,
        "patch_size": pre.size,
        "slice_axis": pre.slice_axis,
        "batch_size": cfg.optim.batch_size,
    }
    print(plan_summary(effective, info.class_names))
    atomic_write_json(out, {**effective, "preprocess": pre.to_dict(), KIND_KEY: "plans"})
    return effective, out


def _parse(items: list[str] | None) -> dict[str, Any]:
    from .config import parse_overrides

    return parse_overrides(items or [])
