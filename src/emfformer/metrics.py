"""Volume-level segmentation metrics (Dice, IoU, HD95 in mm); the report is in ``report.py``.

EMF-former segments 2D slices, but every number here is computed on the reassembled 3D label volume
of a case (TransUNet-lineage and nnU-Net practice, see ``docs/references.md``). The
formulas are MONAI's: :func:`monai.metrics.compute_dice`, :func:`monai.metrics.compute_iou` (the
function behind ``MeanIoU``) and :func:`monai.metrics.compute_hausdorff_distance` with
``percentile=95`` and the voxel spacing, all on one-hot volumes. This module only decides the edge
cases (a class empty in the prediction and/or the ground truth) *before* calling MONAI, so MONAI never
sees an empty mask and never warns. The conventions are documented in ``docs/metrics.md``:

* class absent from both prediction and ground truth: Dice = IoU = HD95 = NaN, excluded from every
  mean (nnU-Net convention);
* class present in only one of them: Dice = IoU = 0; HD95 = NaN, excluded from the HD95 mean and
  counted in ``hd95_undefined``.

Pipeline: ``case_metrics`` per case -> ``summarize`` over cases -> ``write_report`` to a run folder.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_iou

__all__ = ["case_metrics", "summarize"]

HD95_PERCENTILE = 95.0

# ----------------------------------------------------------------------------------------------
# Per case
# ----------------------------------------------------------------------------------------------


def _one_hot(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """(X, Y, Z) integer labels -> (1, C, X, Y, Z) float64 one-hot, the layout MONAI expects."""
    t = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))
    return torch.nn.functional.one_hot(t, num_classes).permute(3, 0, 1, 2).unsqueeze(0).double()


def _check_labels(name: str, volume: np.ndarray, num_classes: int) -> None:
    if volume.ndim != 3:
        raise ValueError(f"{name} must be a 3D label volume (X, Y, Z), got shape {volume.shape}.")
    if not (np.issubdtype(volume.dtype, np.integer) or volume.dtype == np.bool_):
        raise ValueError(
            f"{name} must hold integer labels, got dtype {volume.dtype}; cast with .astype(np.int16) "
            "(and argmax logits first)."
        )
    if volume.size and (volume.min() < 0 or volume.max() >= num_classes):
        raise ValueError(
            f"{name} has labels in [{volume.min()}, {volume.max()}], outside [0, {num_classes - 1}] "
            f"for num_classes={num_classes}."
        )


def _check_case(
    pred: np.ndarray, gt: np.ndarray, num_classes: int, spacing: tuple[float, float, float]
) -> tuple[float, float, float]:
    """Validate the inputs of `case_metrics`; returns the spacing as floats."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 (background + at least one class), got {num_classes}.")
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt must have the same shape, got {pred.shape} and {gt.shape}.")
    _check_labels("pred", pred, num_classes)
    _check_labels("gt", gt, num_classes)
    spacing_mm = tuple(float(s) for s in spacing)
    if len(spacing_mm) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing_mm):
        raise ValueError(f"spacing must be three positive voxel sizes in mm (X, Y, Z), got {spacing}.")
    return spacing_mm  # type: ignore[return-value]


def case_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    num_classes: int,
    spacing: tuple[float, float, float],
    hd95: bool = True,
) -> dict[str, Any]:
    """Dice, IoU and HD95 (mm) of one case, per class, on the 3D label volumes.

    Inputs are *label maps* (not one-hot); they are one-hot encoded here and passed to MONAI's
    ``compute_dice`` / ``compute_iou`` / ``compute_hausdorff_distance(percentile=95, spacing=...)``.
    HD95 is MONAI's symmetric one: the 95th percentile of the surface-to-surface distances in each
    direction (surface = voxels removed by a binary erosion), the larger of the two, in mm.

    Edge cases, decided here so MONAI never sees an empty mask:

    * class absent from both ``pred`` and ``gt``: Dice = IoU = HD95 = NaN ("not applicable"), and
      ``summarize`` excludes NaN from the means (nnU-Net convention; counting it as 1 would reward
      a case for a structure it does not contain);
    * class present in only one of them: Dice = IoU = 0 and HD95 = NaN (no surface to measure to);
      ``summarize`` excludes it from the HD95 mean and counts it in ``hd95_undefined``. Dice/IoU
      already score the failure; a surrogate distance (e.g. the image diagonal) would make the
      HD95 mean depend on the field of view.

    HD95 is not computed for the background (class 0): its value is always NaN.

    Args:
        pred: predicted labels, integer array (X, Y, Z) with values in ``[0, num_classes)``.
        gt: ground-truth labels, same shape and range.
        num_classes: number of classes including background (ACDC 4, Hippocampus 3).
        spacing: voxel size in mm along (X, Y, Z), e.g. ``Volume.spacing``.
        hd95: compute HD95 (the slow part); ``False`` leaves it NaN, e.g. for per-epoch validation.

    Returns:
        ``{"dice": [C floats], "iou": [C floats], "hd95": [C floats], "gt_present": [C bools],
        "pred_present": [C bools]}``, lists indexed by class (index 0 = background). Add
        ``"case_id"`` to the row before ``write_report``.

    Example:
        >>> gt = np.zeros((8, 8, 8), np.int16); gt[2:6, 2:6, 2:6] = 1
        >>> case_metrics(gt, gt, num_classes=2, spacing=(1.0, 1.0, 1.0))["dice"]
        [1.0, 1.0]
    """
    spacing_mm = _check_case(pred, gt, num_classes, spacing)

    pred_oh, gt_oh = _one_hot(pred, num_classes), _one_hot(gt, num_classes)
    pred_present = pred_oh.flatten(2).any(dim=2)[0]  # (C,)
    gt_present = gt_oh.flatten(2).any(dim=2)[0]

    nan = float("nan")
    dice = [nan] * num_classes
    iou = [nan] * num_classes
    hd95_mm = [nan] * num_classes

    # Present in only one of them: nothing overlaps.
    for c in torch.nonzero(pred_present ^ gt_present).flatten().tolist():
        dice[c] = iou[c] = 0.0

    # Present in the ground truth: MONAI's formulas (an empty prediction gives 0 there).
    in_gt = torch.nonzero(gt_present).flatten()
    if in_gt.numel():
        d = compute_dice(pred_oh[:, in_gt], gt_oh[:, in_gt], include_background=True)[0]
        j = compute_iou(pred_oh[:, in_gt], gt_oh[:, in_gt], include_background=True)[0]
        for k, c in enumerate(in_gt.tolist()):
            dice[c], iou[c] = float(d[k]), float(j[k])

    # Present in both, foreground only: surface distances exist.
    both = torch.nonzero(pred_present & gt_present).flatten()
    both = both[both > 0]
    if hd95 and both.numel():
        with warnings.catch_warnings():
            # MONAI 1.5/1.6 passes its own deprecated argument internally; nothing for us to change.
            warnings.filterwarnings("ignore", message=".*always_return_as_numpy", category=FutureWarning)
            h = compute_hausdorff_distance(
                pred_oh[:, both],
                gt_oh[:, both],
                include_background=True,  # channel 0 of this subset is a foreground class
                percentile=HD95_PERCENTILE,
                spacing=spacing_mm,
            )[0]
        for k, c in enumerate(both.tolist()):
            hd95_mm[c] = float(h[k])

    return {
        "dice": dice,
        "iou": iou,
        "hd95": hd95_mm,
        "gt_present": gt_present.tolist(),
        "pred_present": pred_present.tolist(),
    }


# ----------------------------------------------------------------------------------------------
# Over cases
# ----------------------------------------------------------------------------------------------


def _nanmean(values: np.ndarray, axis: int | None = None) -> Any:
    """``np.nanmean`` without the all-NaN RuntimeWarning (an all-NaN slice gives NaN)."""
    finite = ~np.isnan(values)
    count = finite.sum(axis=axis)
    total = np.where(finite, values, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / np.where(count > 0, count, np.nan)


def _nanstd(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Population std (ddof=0) ignoring NaN; NaN where nothing is left."""
    mean = _nanmean(values, axis=axis)
    return np.sqrt(_nanmean((values - np.expand_dims(mean, axis)) ** 2, axis=axis))


def summarize(rows: list[dict[str, Any]], class_names: list[str]) -> dict[str, Any]:
    """Aggregate ``case_metrics`` rows: mean over cases per class, then mean over classes.

    NaN entries (see ``case_metrics``) are left out of every mean and std; the per-class counts say
    how many cases each mean is over. Dice/IoU are fractions in [0, 1], HD95 in mm.

    Args:
        rows: one ``case_metrics`` dict per case (extra keys such as ``case_id`` are ignored).
        class_names: names of all classes, index 0 = background, ``len == num_classes``.

    Returns:
        ``{"num_cases", "class_names",
        "mean_dice_fg", "miou_fg" (the paper's mIoU, primary), "mean_dice_all", "miou_all",
        "hd95_fg_mm", "<key>_std" for each of these five (std over cases of the per-case
        class-mean, ddof=0), "per_class": {name: {"dice", "dice_std", "iou", "iou_std", "hd95_mm",
        "hd95_std", "n_cases" (cases with a Dice value), "n_hd95" (cases with an HD95 value),
        "hd95_undefined" (cases where the class is in only one of pred/gt)}}}``.
        ``per_class[background]`` has no HD95 (NaN, ``n_hd95 == 0``).
    """
    if not rows:
        raise ValueError("summarize needs at least one case row.")
    num_classes = len(class_names)
    for i, row in enumerate(rows):
        if any(len(row[k]) != num_classes for k in ("dice", "iou", "hd95")):
            raise ValueError(
                f"Row {i} ({row.get('case_id', '?')}) has {len(row['dice'])} classes, "
                f"class_names has {num_classes}."
            )

    dice = np.array([r["dice"] for r in rows], dtype=np.float64)  # (cases, C)
    iou = np.array([r["iou"] for r in rows], dtype=np.float64)
    hd95 = np.array([r["hd95"] for r in rows], dtype=np.float64)
    one_sided = np.array([np.logical_xor(r["gt_present"], r["pred_present"]) for r in rows])

    means = {"dice": _nanmean(dice, 0), "iou": _nanmean(iou, 0), "hd95": _nanmean(hd95, 0)}
    stds = {"dice": _nanstd(dice), "iou": _nanstd(iou), "hd95": _nanstd(hd95)}

    summary: dict[str, Any] = {"num_cases": len(rows), "class_names": list(class_names)}
    aggregates = {
        "mean_dice_fg": dice[:, 1:],
        "miou_fg": iou[:, 1:],
        "mean_dice_all": dice,
        "miou_all": iou,
        "hd95_fg_mm": hd95[:, 1:],
    }
    for key, per_case_class in aggregates.items():
        summary[key] = float(_nanmean(_nanmean(per_case_class, 0)))  # cases first, then classes
        summary[f"{key}_std"] = float(_nanstd(_nanmean(per_case_class, 1)[:, None])[0])

    summary["per_class"] = {
        name: {
            "dice": float(means["dice"][c]),
            "dice_std": float(stds["dice"][c]),
            "iou": float(means["iou"][c]),
            "iou_std": float(stds["iou"][c]),
            "hd95_mm": float(means["hd95"][c]),
            "hd95_std": float(stds["hd95"][c]),
            "n_cases": int((~np.isnan(dice[:, c])).sum()),
            "n_hd95": int((~np.isnan(hd95[:, c])).sum()),
            "hd95_undefined": int(one_sided[:, c].sum()) if c > 0 else 0,
        }
        for c, name in enumerate(class_names)
    }
    return summary
