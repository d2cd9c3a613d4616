"""Segment real test cases on other grids with a checkpoint: original, LPS copy, 0.7 mm and 2 mm (with
the true affine, and "naive": the same array taken as 1 mm). Prints the foreground Dice of each.

    python scripts/geometry_check.py --data DIR [--checkpoint hippocampus] [--cases 017 041 048]

The numbers quoted in README.md ("Any user's scan") and docs/model_card.md come from this script.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import zoom

from emfformer.api import load_pretrained, segment


def fg_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Foreground Dice over all non-zero classes (mean of the per-class Dice)."""
    scores = []
    for c in np.unique(truth[truth > 0]):
        p, t = pred == c, truth == c
        scores.append(2 * (p & t).sum() / max(p.sum() + t.sum(), 1))
    return float(np.mean(scores))


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="a Task04_Hippocampus folder")
    p.add_argument("--checkpoint", default="hippocampus")
    p.add_argument("--cases", nargs="+", default=["017", "041", "048"])
    args = p.parse_args()
    model = load_pretrained(args.checkpoint)
    print("case | original | LPS copy same labels | 0.7 mm | 0.7 mm naive | 2 mm | 2 mm naive")
    for case in args.cases:
        img = nib.load(Path(args.data) / "imagesTr" / f"hippocampus_{case}.nii.gz")
        truth = np.asarray(nib.load(Path(args.data) / "labelsTr" / f"hippocampus_{case}.nii.gz").dataobj)
        image = np.asarray(img.dataobj, dtype=np.float32)
        reference = segment(image, model, affine=img.affine)
        flip = np.diag([-1.0, -1.0, 1.0, 1.0])
        flip[:3, 3] = [image.shape[0] - 1, image.shape[1] - 1, 0]
        lps = segment(image[::-1, ::-1].copy(), model, affine=img.affine @ flip)[::-1, ::-1]
        row = [f"{fg_dice(reference, truth):.3f}", str(bool((lps == reference).all()))]
        for mm in (0.7, 2.0):
            grid, grid_truth, affine = resampled(image, truth.astype(np.int16), img.affine, mm)
            row += [f"{fg_dice(segment(grid, model, affine=affine), grid_truth):.3f}",
                    f"{fg_dice(segment(grid, model), grid_truth):.3f}"]  # fmt: skip
        print(f"{case} | " + " | ".join(row))


if __name__ == "__main__":
    main()
