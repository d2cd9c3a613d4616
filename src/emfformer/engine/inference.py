"""Whole-volume inference: volume -> 2D slices -> model(s) -> per-class probabilities -> label volume.

Slices larger than the training patch are tiled with MONAI's `SlidingWindowInferer` (half-patch
overlap, Gaussian importance weights, as nnU-Net predicts), so that the network always sees inputs of
the size it was trained on, on any field of view.

Several models (e.g. one per slice axis, or one per fold) are fused as nnU-Net does: each model's
softmax probabilities are put back on the volume's own voxel grid, averaged, then argmaxed. Mirror
test-time augmentation (``tta=True``) averages each model over the 4 in-plane mirrorings.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Sequence
from typing import Any, TypedDict, Unpack

import numpy as np
import torch
from torch import nn

from emfformer.progress import tqdm

from ..data.cases import Volume
from ..data.geometry import scores_to_input_grid, to_model_grid
from ..data.preprocess import PreprocessConfig, slices_to_scores, volume_to_slices

__all__ = [
    "predict_slices",
    "slices_per_pass",
    "predict_scores",
    "predict_volume",
    "InferenceOptions",
    "autocast",
    "resolve_device",
    "Member",
    "evaluate_volumes",
]

log = logging.getLogger(__name__)

Member = tuple[nn.Module, PreprocessConfig]  # a model and the preprocessing it was trained with
# pixels per forward pass: 64 slices of 64 x 64; large slices go in smaller batches, so that memory
# stays bounded (a batch of 64 slices of 512 x 512 would hold gigabytes of activations)
_PIXELS_PER_BATCH = 64 * 64 * 64
_MIRRORS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


def resolve_device(device: str) -> torch.device:
    """``auto`` (CUDA, else MPS, else CPU) | ``cpu`` | ``cuda`` | ``cuda:N`` | ``mps`` -> a checked device.

    Raises:
        ValueError: an unknown name, or a device this machine does not have.
    """
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", device):
        raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got {device!r}")
    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device} was asked for but this machine has no such CUDA GPU; use cpu or auto"
            )
    if device == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device=mps was asked for but MPS is not available here; use cpu or auto")
    return torch.device(device)


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on ``device`` when ``bf16``, else a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def slices_per_pass(height: int, width: int, batch_size: int = 64) -> int:
    """Slices of ``height`` x ``width`` per forward pass: ``batch_size`` at most, and no more pixels
    than 64 slices of 64 x 64 (5 slices of 224 x 224), which also keeps the activations cache-sized."""
    return max(1, min(batch_size, _PIXELS_PER_BATCH // max(1, height * width)))


def _mirrored_probs(model: nn.Module, x: torch.Tensor, bf16: bool, tta: bool) -> torch.Tensor:
    """Softmax probabilities of one batch, averaged over the 4 in-plane mirrorings with ``tta``."""
    probs: torch.Tensor | float = 0.0
    for dims in _MIRRORS if tta else _MIRRORS[:1]:
        with autocast(x.device, bf16):
            logits = model(x.flip(dims) if dims else x)
        p = logits.float().softmax(dim=1)
        probs = probs + (p.flip(dims) if dims else p)
    return probs / (len(_MIRRORS) if tta else 1)  # type: ignore[return-value]


@torch.no_grad()
def predict_slices(
    model: nn.Module,
    slices: np.ndarray | torch.Tensor,
    batch_size: int = 64,
    bf16: bool = False,
    tta: bool = False,
    patch: int | None = None,
) -> torch.Tensor:
    """Softmax probabilities for 2D slices: (S, K, H, W) -> float32 (S, C, H, W) on the CPU.

    ``batch_size`` slices per forward pass at most, fewer for slices above 64 x 64 pixels (the same
    pixels per pass). ``tta``: the mean over the 4 in-plane mirrorings (each flipped back before
    averaging). ``patch``: slices larger than ``patch x patch`` are tiled by a sliding window of that
    size (overlap 0.5, Gaussian weights; MONAI `SlidingWindowInferer`).
    """
    device = next(model.parameters()).device
    x = torch.as_tensor(slices, dtype=torch.float32)
    tiled = patch is not None and (x.shape[-2] > patch or x.shape[-1] > patch)
    chunk = slices_per_pass(x.shape[-2], x.shape[-1], batch_size)
    inferer = None
    if tiled:
        from monai.inferers import SlidingWindowInferer  # imported on use: MONAI takes ~1 s to import

        inferer = SlidingWindowInferer(
            roi_size=(patch, patch), sw_batch_size=slices_per_pass(patch, patch, batch_size), overlap=0.5,
            mode="gaussian", sigma_scale=0.125, padding_mode="replicate", sw_device=device, device="cpu",
        )  # fmt: skip
    outs = []
    for i in range(0, len(x), chunk):
        batch = x[i : i + chunk]
        if inferer is None:
            outs.append(_mirrored_probs(model, batch.to(device), bf16, tta).cpu())
        else:
            outs.append(inferer(batch, lambda t: _mirrored_probs(model, t, bf16, tta)).float())
    return torch.cat(outs)


def predict_scores(
    members: Sequence[Member],
    image: np.ndarray,
    batch_size: int = 64,
    bf16: bool = False,
    tta: bool = False,
    *,
    affine: np.ndarray | None = None,
    warn: bool = False,
) -> np.ndarray:
    """Mean class probabilities of ``members`` on the grid of a 3D volume: (X, Y, Z[, C]) -> (C, X, Y, Z).

    With the scan's ``affine``, each member sees it in the orientation and voxel spacing it was trained
    on (:mod:`emfformer.data.geometry`) and its probabilities come back on the scan's grid. Without
    one, the array is taken as already on the model's grid.
    """
    if not members:
        raise ValueError("predict_scores needs at least one model")
    total: np.ndarray | None = None
    for i, (model, pre) in enumerate(members):
        grid_image, _, grid = to_model_grid(
            image, affine, pre.orientation, pre.spacing, crop_border=pre.crop_border
        )
        if warn and i == 0:
            _warn_outside_training(grid_image.shape[:3], members)
        slices, _, info = volume_to_slices(grid_image, pre)
        patch = pre.size if pre.mode == "pad" else None
        scores = slices_to_scores(predict_slices(model, slices, batch_size, bf16, tta, patch), info)
        scores = scores_to_input_grid(scores, grid)
        if total is not None and scores.shape != total.shape:
            raise ValueError(
                f"models disagree on the number of classes: {scores.shape[0]} vs {total.shape[0]}"
            )
        total = scores if total is None else total + scores
    return total / len(members)


def _warn_outside_training(shape: tuple[int, ...], members: Sequence[Member]) -> None:
    """Warn, once per problem, about volumes too thin for a member (any number of members): fewer
    slices along its slice axis than the 2.5D context it stacks (the missing neighbours are padding),
    or in-plane strips under 3 voxels wide (both mostly give background). ``shape``: the volume on the
    first member's grid."""
    thin = [(p.slice_axis % 3, p.context) for _, p in members if shape[p.slice_axis % 3] < p.context]
    for axis, context in sorted(set(thin)):
        log.warning(
            "the volume has only %d slice(s) along axis %d, fewer than the %d adjacent slices the model stacks "
            "as its input (2.5D context): the missing ones are padding and the labels are likely empty or "
            "wrong. Segment a volume with at least %d slices along that axis.",
            shape[axis], axis, context, context,
        )  # fmt: skip
    strips = any(min(n for a, n in enumerate(shape[:3]) if a != p.slice_axis % 3) < 3 for _, p in members)
    if strips:
        log.warning(
            "the volume has only %d voxel(s) along axis %d: a model that slices along another axis sees strips "
            "that thin and mostly votes background. Segment thicker volumes, or use a model that slices along "
            "axis %d.", min(shape[:3]), int(np.argmin(shape[:3])), int(np.argmin(shape[:3])),
        )  # fmt: skip


class InferenceOptions(TypedDict, total=False):
    """The keyword options `predict_volume` passes on to `predict_scores` (see there)."""

    batch_size: int
    bf16: bool
    tta: bool
    affine: np.ndarray | None
    warn: bool


def predict_volume(
    members: nn.Module | Sequence[Member],
    image: np.ndarray,
    preprocess: PreprocessConfig | None = None,
    **options: Unpack[InferenceOptions],
) -> np.ndarray:
    """Segment one 3D volume (X, Y, Z) slice by slice; returns the int16 label volume (X, Y, Z).

    ``members`` is one model (then give its ``preprocess``) or a list of ``(model, preprocess)``
    pairs whose probabilities are averaged. The preprocessing is inverted exactly; ``options``
    (``batch_size``, ``bf16``, ``tta``, ``affine``, ``warn``) are those of `predict_scores`: with
    ``affine`` the scan is also moved to each model's training grid and back; ``warn`` logs when the
    volume is far from what the models were trained on (too thin, much wider).
    """
    if isinstance(members, nn.Module):
        if preprocess is None:
            raise ValueError("predict_volume: a single model needs its PreprocessConfig")
        members = [(members, preprocess)]
    return predict_scores(members, image, **options).argmax(axis=0).astype(np.int16)


def evaluate_volumes(
    members: Sequence[Member],
    volumes: list[Volume],
    class_names: list[str],
    hd95: bool = False,
    bf16: bool = False,
    tta: bool = False,
    progress: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Segment and score whole volumes: per-case rows and the summary (see :mod:`emfformer.metrics`)."""
    # imported here: the metrics load MONAI (about 2 s), which predict never needs
    from ..metrics import case_metrics, summarize

    for model, _ in members:
        model.eval()
    rows = []
    for vol in tqdm(volumes, desc="evaluate", disable=not progress, leave=False):
        pred = predict_volume(members, vol.image, bf16=bf16, tta=tta, affine=vol.affine)
        row = case_metrics(pred, vol.label, len(class_names), vol.spacing, hd95=hd95)
        rows.append({"case_id": vol.case_id, **row})
    return rows, summarize(rows, class_names)
