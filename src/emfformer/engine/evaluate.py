"""Evaluation: checkpoint + dataset part -> Dice / IoU / HD95 (mm) on 3D volumes, and the report."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..data.cases import LazyVolumes
from ..data.locate import load_dataset
from ..data.splits import describe_split, select_cases, uses_shipped_split
from ..guard import check_report_dir
from ..metrics_report import write_report
from .checkpoint import load_members, resolve_checkpoint
from .config import config_from_dict
from .inference import evaluate_volumes, resolve_device

__all__ = ["run_evaluation"]

log = logging.getLogger(__name__)


def run_evaluation(
    checkpoint: str | Path | Sequence[str | Path] | None = None,
    part: str = "test",
    data_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    splits_file: str | Path | None = None,
    max_cases: int | None = None,
    device: str = "auto",
    bf16: bool = False,
    progress: bool = True,
    tta: bool | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Evaluate a checkpoint (or the fused probabilities of several) on a part of its dataset.

    Args:
        checkpoint: a run's ``best.pt`` / ``last.pt``, an ensemble file from ``emfformer pack``, a shipped
            name (``hippocampus``, the default), or a list of these whose probabilities are averaged.
        part: ``test`` (held-out; default), ``val``, ``train`` or ``external_test`` (ACDC testing/).
        data_dir: dataset folder; default: the one recorded in the checkpoint, then $EMFFORMER_DATA, cache.
        out_dir: report folder; default ``<run folder>/eval_<part>`` (``eval_<part>_<stem>`` for a
            checkpoint other than ``best.pt``; ``runs/shipped_<name>/`` for a shipped model).
        splits_file: split JSON; default the split stored in the checkpoint, else the ``splits.json``
            beside it (the training split).
        max_cases: evaluate only the first N cases of the part.
        tta: mirror test-time augmentation; ``None`` = what the checkpoint recommends (ensemble files).

    Writes ``metrics.json``, ``per_case.csv`` and ``summary.md`` to ``out_dir``; a folder holding such
    files from anything but an earlier evaluation is refused before any work (``overwrite`` replaces).
    """
    specs = (
        checkpoint if isinstance(checkpoint, Sequence) and not isinstance(checkpoint, str) else [checkpoint]
    )
    paths = [resolve_checkpoint(c) for c in specs]
    members, class_names, recommended, states = load_members(paths, resolve_device(device))
    first = states[0]["members"][0] if "members" in states[0] else states[0]
    tta = recommended if tta is None else tta
    out = _out_dir(paths, part, tta, out_dir)
    check_report_dir(out, overwrite)  # never destroy (guard.py): before the volumes are segmented
    cfg = config_from_dict(first["config"])
    if data_dir is not None:
        cfg.data.data_dir = str(data_dir)
    if max_cases is not None and max_cases < 1:
        raise ValueError(f"--max-cases must be >= 1, got {max_cases}")
    cfg.data.max_cases = max_cases
    splits = _splits_for(states[0], paths[0], splits_file, cfg.data.dataset)
    info = load_dataset(cfg.data, check=False)
    cases = select_cases(info, cfg.data, part, splits)
    volumes = LazyVolumes(cases)  # read one at a time: memory stays flat on large test parts
    with torch.inference_mode():
        rows, summary = evaluate_volumes(
            members, volumes, class_names, hd95=True, bf16=bf16, tta=tta, progress=progress
        )
    extra = {
        "checkpoint": [str(p) for p in paths],
        "model_name": first["model_name"],
        "members": len(members),
        "tta": tta,
        "epoch": first.get("epoch"),
        "part": part,
        "dataset_kind": cfg.data.dataset,
        "splits_file": describe_split(cfg.data.dataset, splits),
        "data_dir": str(info.root),
        "num_cases": len(cases),
    }
    write_report(out, rows, summary, class_names, info.name, extra)
    log.info("wrote %s (fg Dice %.4f, fg mIoU %.4f)", out, summary["mean_dice_fg"], summary["miou_fg"])
    return {**summary, "out_dir": str(out)}


def _out_dir(paths: list[Path], part: str, tta: bool, out_dir: str | Path | None) -> Path:
    """The report folder: ``out_dir``, else ``eval_<part>[_<stem>][_tta]`` beside the checkpoint."""
    stem = paths[0].stem if len(paths) == 1 else "ensemble"
    suffix = "" if stem == "best" else f"_{stem}"  # last.pt must not overwrite best's report
    default_dir = paths[0].parent
    if default_dir == resolve_checkpoint(None).parent:  # a shipped model: never write into the package
        default_dir = Path("runs") / f"shipped_{paths[0].stem}"
    return Path(out_dir) if out_dir else default_dir / f"eval_{part}{suffix}{'_tta' if tta else ''}"


def _splits_for(
    state: dict[str, Any], path: Path, splits_file: str | Path | None, dataset: str
) -> Path | dict[str, Any]:
    """The split to evaluate with: ``splits_file`` > the split inside the checkpoint > the file beside it."""
    if splits_file:
        if not Path(splits_file).is_file():
            raise ValueError(f"No split file {splits_file}: give the training run's splits.json to --splits.")
        return Path(splits_file)
    if state.get("splits") is not None:
        return dict(state["splits"])
    beside = path.parent / "splits.json"
    if not uses_shipped_split(dataset) and not beside.is_file():
        raise ValueError(
            f"No split in the checkpoint and no {beside}: evaluation must use the training run's split so "
            "that test cases were never trained on. Pass --splits FILE (the run folder's splits.json)."
        )
    return beside
