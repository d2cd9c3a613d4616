"""Evaluation: checkpoint + dataset part -> Dice / IoU / HD95 (mm) on 3D volumes, and the report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..data.cases import load_volume
from ..report import write_report
from .checkpoint import load_checkpoint, model_from_checkpoint
from .config import config_from_dict
from .parts import load_dataset, select_cases
from .train import evaluate_volumes, resolve_device

__all__ = ["run_evaluation"]

log = logging.getLogger(__name__)


def run_evaluation(
    checkpoint: str | Path,
    part: str = "test",
    data_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    splits_file: str | Path | None = None,
    max_cases: int | None = None,
    device: str = "auto",
    bf16: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on a part of its dataset; returns the summary dict.

    Args:
        checkpoint: a ``best.pt`` / ``last.pt`` written by ``emfformer train``.
        part: ``test`` (held-out; default), ``val``, ``train`` or ``external_test`` (ACDC testing/).
        data_dir: dataset folder; default: the one recorded in the checkpoint, then $EMFFORMER_DATA, cache.
        out_dir: report folder; default ``<run folder>/eval_<part>`` (``eval_<part>_<stem>`` for a
            checkpoint other than ``best.pt``).
        splits_file: split JSON; default the ``splits.json`` beside the checkpoint (the training split).
        max_cases: evaluate only the first N cases of the part.

    Writes ``metrics.json``, ``per_case.csv`` and ``summary.md`` to ``out_dir``.
    """
    checkpoint = Path(checkpoint)
    state = load_checkpoint(checkpoint)
    cfg = config_from_dict(state["config"])
    if data_dir is not None:
        cfg.data.data_dir = str(data_dir)
    cfg.data.max_cases = max_cases
    splits = Path(splits_file) if splits_file else checkpoint.parent / "splits.json"
    if cfg.data.dataset != "acdc" and not splits.is_file():
        raise ValueError(
            f"No split file {splits}: evaluation must use the training run's split so that test cases "
            "were never trained on. Pass --splits FILE (the run folder's splits.json)."
        )
    info = load_dataset(cfg.data, check=False)
    cases = select_cases(info, cfg.data, part, splits, state.get("seed", 0))
    model, preprocess = model_from_checkpoint(state)
    model.to(resolve_device(device))
    volumes = [load_volume(c) for c in tqdm(cases, desc="load", disable=not progress, leave=False)]
    with torch.inference_mode():
        rows, summary = evaluate_volumes(
            model, volumes, preprocess, list(state["class_names"]), hd95=True, bf16=bf16, progress=progress
        )
    suffix = (
        "" if checkpoint.stem == "best" else f"_{checkpoint.stem}"
    )  # last.pt must not overwrite best's report
    out = Path(out_dir) if out_dir else checkpoint.parent / f"eval_{part}{suffix}"
    extra = {
        "checkpoint": str(checkpoint),
        "model_name": state["model_name"],
        "epoch": state.get("epoch"),
        "part": part,
        "splits_file": str(splits) if cfg.data.dataset != "acdc" else "emfformer/splits/acdc_split.json",
        "data_dir": str(info.root),
        "num_cases": len(cases),
    }
    write_report(out, rows, summary, list(state["class_names"]), info.name, extra)
    log.info("wrote %s (fg Dice %.4f, fg mIoU %.4f)", out, summary["mean_dice_fg"], summary["miou_fg"])
    return {**summary, "out_dir": str(out)}
