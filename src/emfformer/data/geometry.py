"""Bring a scan onto the grid a model was trained on (orientation, voxel spacing) and predictions back.

A model learns anatomy in one orientation and at one voxel size. A user's scan may be stored LPS
instead of RAS, or at 0.7 mm instead of 1 mm. As nnU-Net does, the scan is first reoriented to the
training orientation (a permutation and flips of the array axes: exact, no interpolation), then
resampled to the training spacing (trilinear for images, nearest for labels). Predicted per-class
probabilities go back the same way in reverse (trilinear, then argmax), so labels land on the scan's
own grid, affine and header.

The training grid is stored with the model (`PreprocessConfig.orientation` / ``.spacing``); ``None``
means "use the array as it is", which is what checkpoints from before this module do.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

from .cases import DataError

__all__ = [
    "GridInfo",
    "border_bbox",
    "border_mask",
    "check_orientation",
    "voxel_spacing",
    "to_model_grid",
    "scores_to_input_grid",
]

_PAIRS = ("LR", "PA", "IS")
SPACING_RTOL = 0.01  # spacings within 1 % of the target are not resampled (no needless interpolation)
MAX_RESAMPLED_BYTES = 4 * 2**30  # a scan resampled to the model's spacing may take this much (float32)
SPACING_RATIO_WARN = 10.0  # a voxel size this many times off the model's is warned about

log = logging.getLogger(__name__)


def check_orientation(code: str) -> str:
    """Validate axis codes such as ``"RAS"`` or ``"lps"``: one letter of each of L/R, P/A, I/S.

    Returns the upper-case code; raises ValueError otherwise.
    """
    up = str(code).upper()
    if len(up) != 3 or sorted(next((i for i, p in enumerate(_PAIRS) if c in p), -1) for c in up) != [0, 1, 2]:
        raise ValueError(
            f"orientation must be 3 axis codes with one of L/R, one of P/A and one of I/S (e.g. RAS, LPS), "
            f"got {code!r}"
        )
    return up


def voxel_spacing(affine: np.ndarray) -> np.ndarray:
    """Voxel size in mm along each array axis: the lengths of the affine's first three columns."""
    return np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))


@dataclass(frozen=True)
class GridInfo:
    """How `to_model_grid` moved one scan, so that `scores_to_input_grid` can undo it.

    Attributes:
        input_shape: (X, Y, Z) of the scan as given.
        ornt: nibabel orientation transform from the scan's axes to the model's, or None (not reoriented).
        oriented_shape: shape after reorientation, before resampling.
        model_shape: shape the model sees (after resampling).
        bbox: (start, stop) per input axis of the region kept by the border crop, or None (not cropped).
    """

    input_shape: tuple[int, int, int]
    ornt: np.ndarray | None
    oriented_shape: tuple[int, int, int]
    model_shape: tuple[int, int, int]
    bbox: tuple[tuple[int, int], ...] | None = None

    @property
    def resampled(self) -> bool:
        return self.model_shape != self.oriented_shape


def _resample(x: torch.Tensor, shape: Sequence[int], mode: str) -> torch.Tensor:
    """(C, X, Y, Z) -> (C, *shape) by ``trilinear`` or ``nearest-exact`` interpolation (voxel centres kept)."""
    kwargs = {"align_corners": False} if mode == "trilinear" else {}
    return F.interpolate(x[None], size=tuple(shape), mode=mode, **kwargs)[0]


def border_bbox(image: np.ndarray) -> tuple[tuple[int, int], ...] | None:
    """The bounding box of the voxels that differ from a constant border, or None.

    A border is constant when the 8 corner voxels of every channel hold one value (zero fill outside a
    skull-stripped brain, a CT's padding value, a scan pasted into a larger empty field). nnU-Net crops
    to the nonzero region; this is the same rule for any fill value. ``image``: (X, Y, Z[, C]).
    """
    chans = image if image.ndim == 4 else image[..., None]
    corners = chans[[0, -1]][:, [0, -1]][:, :, [0, -1]].reshape(-1, chans.shape[-1])
    if not (corners == corners[0]).all():
        return None
    mask = (chans != corners[0]).any(axis=-1)
    if not mask.any():
        return None
    box = []
    for axis in range(3):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        box.append((int(hit[0]), int(hit[-1]) + 1))
    if all(b == (0, n) for b, n in zip(box, mask.shape, strict=True)):
        return None
    return tuple(box)


def border_mask(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """`border_bbox` as a ``select_fn`` for MONAI's ``CropForegroundd``: channel-first (C, X, Y, Z) ->
    bool (1, X, Y, Z), True inside the box (everywhere when there is no constant border, so that
    MONAI crops nothing where emfformer crops nothing)."""
    chans = np.moveaxis(np.asarray(image.detach().cpu() if torch.is_tensor(image) else image), 0, -1)
    box = border_bbox(chans)
    if box is None:
        return torch.ones((1, *chans.shape[:3]), dtype=torch.bool)
    mask = torch.zeros((1, *chans.shape[:3]), dtype=torch.bool)
    mask[(slice(None), *(slice(a, b) for a, b in box))] = True
    return mask


def _check_resampling(
    oriented: tuple[int, ...], target: tuple[int, ...], vox: np.ndarray, tgt: np.ndarray, channels: int
) -> None:
    """Refuse a resampling whose result would not fit in memory; warn when the scan's voxel size is more
    than 10x off the model's (a scan stored in metres, or a wrong header): the labels would be empty.

    Raises:
        DataError: the resampled volume would exceed `MAX_RESAMPLED_BYTES`.
    """
    spacings = (
        f"the scan's voxels are {' x '.join(f'{v:g}' for v in vox)} mm, the model's "
        f"{' x '.join(f'{t:g}' for t in tgt)} mm"
    )
    need = float(np.prod(target, dtype=np.float64)) * 4 * channels
    if need > MAX_RESAMPLED_BYTES:
        raise DataError(
            f"resampling this {' x '.join(map(str, oriented))} scan to the model's voxel size gives "
            f"{' x '.join(map(str, target))} voxels ({need / 2**30:.1f} GiB as float32, more than "
            f"{MAX_RESAMPLED_BYTES / 2**30:.0f} GiB): {spacings}. Is the header's voxel size right "
            "(e.g. cm or metres instead of mm)? Fix the pixdim / spacing of the file."
        )
    ratio = np.maximum(vox / tgt, tgt / vox)
    if (ratio > SPACING_RATIO_WARN).any():
        log.warning(
            "%s: more than %gx apart on axis %d. Is the header's voxel size right (mm, not metres or cm)? "
            "The labels are likely empty or wrong.",
            spacings, SPACING_RATIO_WARN, int(np.argmax(ratio)),
        )  # fmt: skip


def _target_shape(
    oriented: tuple[int, ...], vox: np.ndarray | None, spacing: Sequence[float] | None, channels: int
) -> tuple[int, ...]:
    """The shape at the model's ``spacing`` (axes within 1 % keep theirs), checked by `_check_resampling`."""
    if vox is None or spacing is None:
        return oriented
    tgt = np.asarray(spacing, dtype=np.float64)
    close = np.abs(vox - tgt) <= SPACING_RTOL * tgt
    target = tuple(
        n if c else max(1, round(n * v / t)) for n, v, t, c in zip(oriented, vox, tgt, close, strict=True)
    )
    _check_resampling(oriented, target, vox, tgt, channels)
    return target


def to_model_grid(
    image: np.ndarray,
    affine: np.ndarray | None,
    orientation: str | None,
    spacing: Sequence[float] | None,
    label: np.ndarray | None = None,
    crop_border: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, GridInfo]:
    """Crop a constant border, reorient a 3D scan to ``orientation`` and resample it to ``spacing``
    (mm, in that orientation).

    Args:
        image: (X, Y, Z) or channels-last (X, Y, Z, C) real array.
        affine: its 4x4 voxel-to-world matrix; ``None`` treats the array as already on the model's grid.
        orientation: target axis codes (``"RAS"``); ``None`` keeps the array axes.
        spacing: target voxel size per (reoriented) axis; ``None`` keeps the voxel size. Axes within 1 %
            of the target are not resampled.
        label: optional (X, Y, Z) integer labels, moved with nearest-neighbour sampling.
        crop_border: first crop to `border_bbox` (undone by `scores_to_input_grid`: background there).

    Returns:
        image and label on the model grid (float32 / int16; the inputs themselves when nothing moves),
        and the `GridInfo` to undo it.

    Raises:
        DataError: the resampled scan would take more than 4 GiB (a voxel size far off the model's).
    """
    shape = tuple(int(n) for n in image.shape[:3])
    bbox = border_bbox(image) if crop_border else None
    if bbox is not None:
        region = tuple(slice(a, b) for a, b in bbox)
        image = image[region]
        label = None if label is None else label[region]
    ornt = None
    vox = None if affine is None else voxel_spacing(affine)
    if affine is not None and orientation is not None:
        ornt = ornt_transform(io_orientation(affine), axcodes2ornt(tuple(check_orientation(orientation))))
        if np.array_equal(ornt, [[0, 1], [1, 1], [2, 1]]):
            ornt = None  # already in the model's orientation
        else:
            image = apply_orientation(image, ornt)
            label = None if label is None else apply_orientation(label, ornt)
            vox = vox[np.argsort(ornt[:, 0])]  # spacing follows its axis to the new position
    oriented = tuple(int(n) for n in image.shape[:3])
    target = _target_shape(oriented, vox, spacing, 1 if image.ndim == 3 else int(image.shape[3]))
    info = GridInfo(shape, ornt, oriented, target, bbox)  # type: ignore[arg-type]
    image = np.ascontiguousarray(image, dtype=np.float32)
    if info.resampled:
        chans = torch.from_numpy(
            np.ascontiguousarray(np.moveaxis(image[..., None] if image.ndim == 3 else image, -1, 0))
        )
        moved = np.moveaxis(_resample(chans, target, "trilinear").numpy(), 0, -1)
        image = np.ascontiguousarray(moved[..., 0] if image.ndim == 3 else moved)
        if label is not None:
            lab = torch.from_numpy(np.ascontiguousarray(label, dtype=np.float32))[None]
            label = _resample(lab, target, "nearest-exact")[0].numpy().round().astype(np.int16)
    if label is not None:
        label = np.ascontiguousarray(label, dtype=np.int16)
    return image, label, info


def scores_to_input_grid(scores: np.ndarray, info: GridInfo) -> np.ndarray:
    """Per-class scores on the model grid (C, *model_shape) -> (C, *input_shape) on the scan's grid.

    Resampling is undone by trilinear interpolation of the scores (take the argmax afterwards), the
    reorientation exactly.
    """
    if tuple(scores.shape[1:]) != info.model_shape:
        raise ValueError(f"scores of shape {scores.shape} do not fit the model grid {info.model_shape}")
    if info.resampled:
        scores = _resample(torch.from_numpy(np.ascontiguousarray(scores)), info.oriented_shape, "trilinear")
        scores = scores.numpy()
    if info.ornt is not None:  # nibabel orients the first 3 axes: move the class axis last and back
        scores = np.moveaxis(apply_orientation(np.moveaxis(scores, 0, -1), _inverse(info.ornt)), -1, 0)
    if info.bbox is not None:  # outside the cropped region: the constant border, background
        full = np.zeros((scores.shape[0], *info.input_shape), dtype=np.float32)
        full[0] = 1.0
        full[(slice(None), *(slice(a, b) for a, b in info.bbox))] = scores
        scores = full
    return np.ascontiguousarray(scores)


def _inverse(ornt: np.ndarray) -> np.ndarray:
    """The orientation transform that undoes ``ornt`` (axis permutation plus flips)."""
    inv = np.zeros_like(ornt)
    for axis, (new_axis, flip) in enumerate(ornt):
        inv[int(new_axis)] = (axis, flip)
    return inv
