"""Plan a 2D training from a dataset fingerprint (nnU-Net's fingerprint -> plan -> preprocess).

The plan is a small readable dict, written as ``plans.json`` into every run folder and stored in every
checkpoint:

* ``orientation``: the training cases' most common orientation;
* ``spacing``: the target voxel size, the median of the cases';
* ``slice_axis``: for anisotropic data (coarsest / finest spacing >= 3, nnU-Net's threshold) the
  coarsest axis, so that slices lie in the fine plane; for 2D datasets the singleton axis; else 2;
* ``normalization``: one scheme per channel (`emfformer.data.normalize`): ``CT`` channels are clipped to
  the dataset's foreground 0.5-99.5 percentiles and standardised with its foreground mean and std;
  ``noNorm`` / ``rescale_to_0_1`` / ``rgb_to_0_1`` as nnU-Net names them; anything else a per-image
  z-score, on the nonzero mask when cropping to the nonzero (non-border) region keeps less than 3/4 of
  the median volume (nnU-Net's rule: e.g. skull-stripped brains);
* ``patch_size``: the side of the square in-plane patch: the larger median in-plane extent on the
  target spacing, rounded up to the model's stride, capped so that a batch of 2 fits the memory budget;
* ``batch_size``: as many patches as the memory budget holds, between 2 and ``max_batch``.

Memory is estimated from the measured training cost of EMF-former-S on this CPU: about 1.5 kB of peak
activation memory per input pixel (1,469 MiB for batch 4 at 512 x 512, docs/benchmarks.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .cases import Case, DataError, DatasetInfo
from .fingerprint import dataset_fingerprint

__all__ = [
    "BYTES_PER_PIXEL",
    "check_memory_budget",
    "make_plan",
    "plan_dataset",
    "plan_summary",
    "ANISOTROPY",
]

BYTES_PER_PIXEL = 1500  # measured training peak of EMF-former-S per input pixel (batch 4, 512^2)
ANISOTROPY = 3.0  # nnU-Net's threshold for "anisotropic" spacing
_NAMED_SCHEMES = {"nonorm": "none", "rescale_to_0_1": "rescale", "rgb_to_0_1": "rgb"}


def _slice_axis(spacing: np.ndarray, shape: np.ndarray) -> int:
    if (shape <= 1).any():
        return int(np.argmin(shape))  # a 2D dataset: the axis with one slice
    if spacing.max() / spacing.min() >= ANISOTROPY:
        return int(np.argmax(spacing))  # slices across the coarse axis
    return 2


def _normalization(fp: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    use_mask = fp["median_crop_fraction"] < 0.75
    for stats in fp["intensity"]:
        name = str(stats["channel"]).strip().lower()
        if name == "ct":
            lo, hi = stats["percentile_00_5"], stats["percentile_99_5"]
            std = stats["clipped_std"] if stats["clipped_std"] > 0 else 1.0
            out.append({"scheme": "ct", "lower": lo, "upper": hi, "mean": stats["clipped_mean"], "std": std})
        elif name in _NAMED_SCHEMES:
            out.append({"scheme": _NAMED_SCHEMES[name]})
        else:
            out.append({"scheme": "zscore", "clip": [0.5, 99.5], "use_mask": bool(use_mask)})
    return out


def make_plan(
    fp: dict[str, Any],
    stride: int = 16,
    memory_budget_mib: float = 1024,
    max_batch: int = 32,
    min_side: int = 32,
    spacing: Sequence[float] | None = None,
    slice_axis: int | None = None,
) -> dict[str, Any]:
    """The plan of a fingerprint (see the module docstring).

    Args:
        fp: from `emfformer.data.fingerprint.dataset_fingerprint`.
        stride: the patch side is a multiple of this (the model's total stride).
        memory_budget_mib: training activation memory allowed for one batch.
        max_batch, min_side: bounds of the batch size and of the patch side.
        spacing: a target spacing chosen by the user (``data.spacing``) instead of the median; the patch
            and the slice axis are planned for it.
        slice_axis: a slice axis chosen by the user (``data.slice_axis``): the patch is planned for the
            planes across it (a 3-axis ensemble gets a patch that fits each axis's slices).

    Raises:
        DataError: the budget cannot hold two patches of the smallest side; ``slice_axis`` not 0, 1 or 2.
    """
    if slice_axis is not None and slice_axis not in (-3, -2, -1, 0, 1, 2):
        raise DataError(f"data.slice_axis must be 0, 1, 2 (or -3..-1) or auto, got {slice_axis!r}")
    median = np.asarray(fp["median_spacing"], float)
    spacing = median if spacing is None else np.asarray(spacing, float)
    shape = np.asarray(fp["median_shape"], float) * median / spacing
    axis = _slice_axis(spacing, shape) if slice_axis is None else int(slice_axis) % 3
    in_plane = [a for a in range(3) if a != axis]
    cases = fp.get("cases") or [{"shape": shape, "spacing": spacing}]
    on_target = np.median(
        [np.asarray(c["shape"]) * np.asarray(c["spacing"]) / spacing for c in cases], axis=0
    )
    extent = max(on_target[a] for a in in_plane)  # median in-plane extent in voxels of the target spacing
    side = max(min_side, stride * math.ceil(round(float(extent), 3) / stride))  # round: 96 * 0.8 / 0.8 > 96
    budget = memory_budget_mib * 2**20
    fits = stride * math.floor(math.sqrt(budget / (2 * BYTES_PER_PIXEL)) / stride)
    if fits < min_side:
        raise DataError(
            f"a memory budget of {memory_budget_mib} MiB cannot hold 2 patches of {min_side} x {min_side} "
            f"(about {2 * min_side**2 * BYTES_PER_PIXEL / 2**20:.0f} MiB); raise plan.memory_budget_mib"
        )
    capped = side > fits
    side = min(side, fits)
    batch = batch_for(side, memory_budget_mib, max_batch)
    return {
        "orientation": fp["orientation"],
        "spacing": [round(float(s), 5) for s in spacing],
        "slice_axis": axis,
        "patch_size": int(side),
        "patch_capped_by_memory": bool(capped),
        "batch_size": batch,
        "channels": list(fp["channels"]),
        "normalization": _normalization(fp),
        "median_shape": fp["median_shape"],
        "memory_budget_mib": memory_budget_mib,
        "estimated_batch_mib": round(batch * side * side * BYTES_PER_PIXEL / 2**20, 1),
        "class_frequencies": fp["class_frequencies"],
        "class_cases": _class_cases(fp),
        "num_cases": fp["num_cases"],
    }


def _class_cases(fp: dict[str, Any]) -> list[int] | None:
    """Per class, how many of the fingerprinted cases hold at least one voxel of it (None: unknown)."""
    cases = fp.get("cases")
    if not cases or any("class_voxels" not in r for r in cases):
        return None
    return [sum(1 for r in cases if r["class_voxels"][c] > 0) for c in range(len(fp["class_frequencies"]))]


def batch_for(side: int, memory_budget_mib: float, max_batch: int = 32) -> int:
    """Patches of ``side x side`` that the budget holds, between 2 and ``max_batch``."""
    return int(min(max_batch, max(2, memory_budget_mib * 2**20 // (side * side * BYTES_PER_PIXEL))))


def check_memory_budget(side: int, batch: int, memory_budget_mib: float) -> None:
    """Refuse a patch side and batch (set by hand) whose estimated training memory exceeds the budget.

    Raises:
        DataError: naming the estimate, the budget and the keys that change either.
    """
    need = batch * side * side * BYTES_PER_PIXEL / 2**20
    if need > memory_budget_mib:
        raise DataError(
            f"a batch of {batch} patches of {side} x {side} needs about {need:.0f} MiB of training memory, more "
            f"than data.memory_budget_mib = {memory_budget_mib:g}: lower data.size or optim.batch_size (or "
            "leave them auto), or raise data.memory_budget_mib if the machine has the memory"
        )


def plan_dataset(
    info: DatasetInfo,
    cases: Sequence[Case],
    stride: int = 16,
    memory_budget_mib: float = 1024,
    cache_dir: Path | None = None,
    progress: bool = True,
    spacing: Sequence[float] | None = None,
    slice_axis: int | None = None,
) -> dict[str, Any]:
    """Fingerprint ``cases`` of ``info`` (cached in ``cache_dir``) and plan from it (for ``spacing`` and
    ``slice_axis`` when given); adds the dataset name."""
    fp = dataset_fingerprint(cases, info.channel_names, info.num_classes, cache_dir, progress)
    plan = make_plan(fp, stride, memory_budget_mib, spacing=spacing, slice_axis=slice_axis)
    return {"dataset": info.name, **plan}


def plan_summary(plan: dict[str, Any], class_names: Sequence[str] = ()) -> str:
    """A few readable lines describing ``plan`` (what `emfformer plan` and `train` print)."""
    norm = ", ".join(
        f"{c}: {n['scheme']}" for c, n in zip(plan["channels"], plan["normalization"], strict=True)
    )
    lines = [
        f"cases {plan['num_cases']}, median shape {' x '.join(f'{v:g}' for v in plan['median_shape'])} "
        f"({plan['orientation']}), target spacing {' x '.join(f'{v:g}' for v in plan['spacing'])} mm",
        f"slice axis {plan['slice_axis']}, patch {plan['patch_size']} x {plan['patch_size']}"
        + (" (capped by the memory budget)" if plan["patch_capped_by_memory"] else "")
        + f", batch {plan['batch_size']} (~{plan['estimated_batch_mib']} MiB of {plan['memory_budget_mib']} MiB)",
        f"normalisation: {norm}",
    ]
    if class_names:
        freq = ", ".join(f"{n} {f:.4f}" for n, f in zip(class_names, plan["class_frequencies"], strict=False))
        lines.append(f"class frequencies: {freq}")
    return "\n".join(lines)
