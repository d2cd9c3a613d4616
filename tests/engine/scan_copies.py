"""Copies of a real scan on other grids, each with its true affine, and the Dice to score them.

Shared by the real-data tests and the geometry scripts (scripts/geometry_check*.py, off_centre_check.py),
so that every published geometry number and every CI check builds its copies the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from scipy.ndimage import zoom


def fg_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Foreground Dice over all non-zero classes of ``truth`` (mean of the per-class Dice)."""
    scores = []
    for c in np.unique(truth[truth > 0]):
        p, t = pred == c, truth == c
        scores.append(2 * (p & t).sum() / max(p.sum() + t.sum(), 1))
    return float(np.mean(scores))


def flipped_xy(volume: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same scan stored with axes 0 and 1 reversed (RAS -> LPS), every voxel at its world position."""
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:3, 3] = [volume.shape[0] - 1, volume.shape[1] - 1, 0]  # index i -> n-1-i
    return volume[::-1, ::-1].copy(), affine @ flip


def resampled(image: np.ndarray, truth: np.ndarray, affine: np.ndarray, voxel: float | np.ndarray):
    """``image``/``truth`` on voxels ``voxel`` times the stored ones (a number or one per axis) over the
    same field of view, and that grid's exact affine."""
    # grid_mode: voxels are boxes and both grids span the same extent, so the new spacing is exactly
    # n_old / n_new and no edge voxel samples outside the scan (which mode="constant" would fill with 0)
    fine = zoom(image, 1 / np.asarray(voxel, float), order=1, grid_mode=True, mode="nearest")
    fine_truth = zoom(truth, np.array(fine.shape) / truth.shape, order=0, grid_mode=True, mode="nearest")
    ratio = np.array(image.shape) / np.array(fine.shape)
    out = affine.copy()
    out[:3, :3] *= ratio
    out[:3, 3] = affine[:3, :3] @ ((ratio - 1) / 2) + affine[:3, 3]  # the first new voxel's centre
    return fine, fine_truth, out


def pasted(
    image: np.ndarray, truth: np.ndarray, affine: np.ndarray, scale: int, at: tuple[int, int], fill: float
):
    """The scan pasted at in-plane index ``at`` into a field ``scale`` times as wide on axes 0 and 1, filled
    with ``fill`` (labels 0 there); the affine keeps the scan at its world position."""
    x, y, z = image.shape
    field = np.full((scale * x, scale * y, z), fill, np.float32)
    field_truth = np.zeros(field.shape, np.int16)
    field[at[0] : at[0] + x, at[1] : at[1] + y] = image
    field_truth[at[0] : at[0] + x, at[1] : at[1] + y] = truth
    shift = np.eye(4)
    shift[:2, 3] = [-at[0], -at[1]]
    return field, field_truth, affine @ shift


def off_centre(image: np.ndarray, truth: np.ndarray, affine: np.ndarray, fill: float):
    """A 1 mm scan at 0.7 mm, pasted off-centre into a field 3x wider in-plane, axis 0 flipped."""
    fine, fine_truth, fine_affine = resampled(image, truth, affine, 0.7)
    x, y, _ = fine.shape
    field, field_truth, field_affine = pasted(
        fine, fine_truth, fine_affine, 3, (int(1.8 * x), int(0.3 * y)), fill
    )
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = field.shape[0] - 1
    return field[::-1].copy(), field_truth[::-1].copy(), field_affine @ flip


@contextmanager
def border_crop(model, on: bool) -> Iterator[None]:
    """Every member of a loaded model (``emfformer.api.load_pretrained``) with its constant-border crop
    on or off for the block; each member's own setting comes back afterwards, also on an error."""
    shipped = list(model.members)
    model.members[:] = [(net, dataclasses.replace(pre, crop_border=on)) for net, pre in shipped]
    try:
        yield
    finally:
        model.members[:] = shipped
