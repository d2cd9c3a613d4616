"""What one training run reads: its split, the dataset's plan, the preprocessed store and its patches.

`load_data` is nnU-Net's pipeline for one run: the split's training cases are fingerprinted and planned
(`emfformer.data.plan`; every ``"auto"`` of the config takes the plan's value and the resolved config and
``plans.json`` are written to the run folder), preprocessed once into the memory-mapped store, and served
as random patches; validation volumes are read one at a time.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..data.augment import SliceAugment, train_transforms
from ..data.cases import DataError, DatasetInfo, LazyVolumes, Volume
from ..data.locate import default_cache_dir, load_dataset
from ..data.patches import PatchDataset
from ..data.plan import batch_for, check_memory_budget, plan_dataset, plan_summary
from ..data.preprocess import PreprocessConfig
from ..data.splits import select_cases
from ..data.store import preprocess_cases
from ..guard import CONFIG_MARKER, KIND_KEY
from ..io import atomic_write_json, atomic_write_text
from ..models import input_multiple
from .config import RunConfig, preprocess_config

__all__ = ["RunData", "check_foreground", "load_data", "plan_run", "write_run_config"]

log = logging.getLogger(__name__)


@dataclass
class RunData:
    """What one training run reads: the training patches and the validation volumes (read lazily)."""

    dataset: PatchDataset
    transform: SliceAugment | None
    val_volumes: LazyVolumes | list[Volume]
    class_names: list[str]
    preprocess: PreprocessConfig
    name: str
    splits: dict[str, Any] | None
    plan: dict[str, Any]


def _resolve_plan(cfg: RunConfig, plan: dict[str, Any]) -> None:
    """Every ``"auto"`` of the run's config replaced by the plan's value (the config that is stored); an
    automatic batch for a patch side set by hand is what the memory budget holds at that side."""
    if cfg.optim.batch_size == "auto":
        by_hand = cfg.data.size != "auto"
        cfg.optim.batch_size = (
            batch_for(int(cfg.data.size), cfg.data.memory_budget_mib) if by_hand else int(plan["batch_size"])
        )
    if cfg.data.size == "auto":
        cfg.data.size = int(plan["patch_size"])
    if cfg.data.slice_axis == "auto":
        cfg.data.slice_axis = int(plan["slice_axis"])


def plan_run(
    info: DatasetInfo, cases: list, cfg: RunConfig, progress: bool = True
) -> tuple[dict, PreprocessConfig]:
    """The dataset's plan for ``cases`` (cached fingerprint), ``cfg``'s autos resolved from it, and the
    run's preprocessing; what `train` and `emfformer plan` both do.

    Raises:
        DataError: the patch and batch exceed ``data.memory_budget_mib``.
    """
    plan = plan_dataset(
        info, cases, input_multiple(cfg.model.name), cfg.data.memory_budget_mib, _cache(cfg) / "plans", progress,
        spacing=cfg.data.spacing if isinstance(cfg.data.spacing, tuple) else None,
        slice_axis=None if cfg.data.slice_axis == "auto" else int(cfg.data.slice_axis),
    )  # fmt: skip
    _resolve_plan(cfg, plan)
    pre = preprocess_config(cfg.data, plan)
    check_memory_budget(pre.size, int(cfg.optim.batch_size), cfg.data.memory_budget_mib)
    return plan, pre


def check_foreground(plan: dict[str, Any], class_names: list[str], where: str) -> None:
    """Refuse training cases whose labels are all background; warn once for each class no case holds
    (the network cannot learn it: its validation Dice stays 0). Reads only the plan's fingerprint counts.

    Raises:
        DataError: no training case has a foreground voxel.
    """
    counts = plan.get("class_cases")
    if not counts or len(counts) < 2:
        return
    n = int(plan.get("num_cases", 0))
    if not any(counts[1:]):
        raise DataError(
            f"every one of the {n} training cases of {where} has an all-background label (only 0s): there is "
            "nothing to learn. Check the label files (a wrong folder, labels saved as floats in 0..1, or "
            "an export that lost the masks)."
        )
    missing = [name for name, k in zip(class_names[1:], counts[1:], strict=False) if k == 0]
    if missing:
        log.warning(
            "class(es) %s appear in none of the %d training cases of %s: the network cannot learn them and "
            "their validation Dice will stay 0. Check the labels, or the split (data.fold / splits_final.json).",
            ", ".join(missing), n, where,
        )  # fmt: skip


def _cache(cfg: RunConfig) -> Path:
    return Path(cfg.data.cache_dir) if cfg.data.cache_dir else default_cache_dir() / "preprocessed"


def load_data(cfg: RunConfig, run_dir: Path, is_main: bool = True) -> RunData:
    """Cases of the run's split, the plan, the preprocessed store and the validation cases."""
    info = load_dataset(cfg.data, progress=cfg.progress)
    splits_file = run_dir / "splits.json"
    train_cases = select_cases(info, cfg.data, "train", splits_file)
    val_cases = select_cases(info, cfg.data, "val", splits_file) if cfg.data.fold >= 0 else []
    plan, pre = plan_run(info, train_cases, cfg, cfg.progress)
    check_foreground(plan, list(info.class_names), str(cfg.data.data_dir or info.name))
    stored = preprocess_cases(train_cases, pre, _cache(cfg), progress=cfg.progress)
    if is_main:  # everything checked: the plan as this run uses it (config values not "auto" win)
        used = {
            **plan,
            "patch_size": pre.size,
            "slice_axis": pre.slice_axis,
            "batch_size": cfg.optim.batch_size,
        }
        plans = {**used, "planned": plan, "preprocess": pre.to_dict(), KIND_KEY: "plans"}
        atomic_write_json(run_dir / "plans.json", plans)
        write_run_config(run_dir, cfg)
        log.info("plan (%s):\n%s", run_dir / "plans.json", plan_summary(used, info.class_names))
    augment = train_transforms(pre.size, cfg.seed, flip_prob=cfg.data.flip_prob) if cfg.data.augment else None
    margin = None if cfg.data.patch_margin == "auto" else int(cfg.data.patch_margin)
    margin = 0 if pre.mode == "resize" else margin
    dataset = PatchDataset(stored, pre.size, pre.context, augment, cfg.data.keep_empty, cfg.seed, margin)
    log.info("train: %d cases / %d slices, val: %d volumes", len(train_cases), len(dataset), len(val_cases))
    splits = json.loads(splits_file.read_text()) if splits_file.is_file() else None
    return RunData(
        dataset, augment, LazyVolumes(val_cases), list(info.class_names), pre, info.name, splits, plan
    )


def write_run_config(run_dir: Path, cfg: RunConfig) -> None:
    """config.yaml, its first line the marker that says train wrote it (guard.CONFIG_MARKER)."""
    atomic_write_text(
        run_dir / "config.yaml", CONFIG_MARKER + "\n" + yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    )
