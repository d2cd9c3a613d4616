"""Segment real test cases on other grids with a checkpoint: original, LPS copy, 0.7 mm and 2 mm (with
the true affine, and "naive": the same array taken as 1 mm). Prints the foreground Dice of each.

    python scripts/geometry_check.py --data DIR [--checkpoint hippocampus] [--cases 017 041 048]

The numbers quoted in README.md ("Any user's scan") and docs/model_card.md come from this script.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "engine"))
from scan_copies import fg_dice, flipped_xy, resampled  # noqa: E402

from emfformer.api import load_pretrained, segment  # noqa: E402


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
        lps_image, lps_affine = flipped_xy(image, img.affine)
        lps = segment(lps_image, model, affine=lps_affine)[::-1, ::-1]
        row = [f"{fg_dice(reference, truth):.3f}", str(bool((lps == reference).all()))]
        for mm in (0.7, 2.0):
            grid, grid_truth, affine = resampled(image, truth.astype(np.int16), img.affine, mm)
            row += [f"{fg_dice(segment(grid, model, affine=affine), grid_truth):.3f}",
                    f"{fg_dice(segment(grid, model), grid_truth):.3f}"]  # fmt: skip
        print(f"{case} | " + " | ".join(row))


if __name__ == "__main__":
    main()
