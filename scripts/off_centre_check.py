"""Dice of a model on real cases placed off-centre in a 3x wider field (issue: any field of view).

    python scripts/off_centre_check.py --data DIR [--checkpoint hippocampus] [--cases hippocampus_017 ...]

For each case: fg Dice as stored, then at 0.7 mm, axis 0 flipped, pasted off-centre into a field 3x
wider in-plane on a zero and on a constant (the case's mean) background; with the constant-border crop
on (the default) and off (what the network alone does).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "engine"))
from scan_copies import border_crop, fg_dice, off_centre  # noqa: E402

from emfformer.api import load_pretrained, segment  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--checkpoint", default="hippocampus")
    p.add_argument("--cases", nargs="+", default=["hippocampus_017", "hippocampus_041", "hippocampus_048"])
    args = p.parse_args()
    model = load_pretrained(args.checkpoint)
    print(
        "| case | as stored | zero field, crop on | constant field, crop on | zero, crop off | constant, crop off |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for case in args.cases:
        img = nib.load(Path(args.data) / "imagesTr" / f"{case}.nii.gz")
        truth = np.asarray(nib.load(Path(args.data) / "labelsTr" / f"{case}.nii.gz").dataobj).astype(np.int16)
        image = np.asarray(img.dataobj, dtype=np.float32)
        row = [fg_dice(segment(image, model, affine=img.affine), truth)]
        for crop in (True, False):
            for fill in (0.0, float(image.mean())):
                field, field_truth, affine = off_centre(image, truth, img.affine, fill)
                with border_crop(model, crop):
                    row.append(fg_dice(segment(field, model, affine=affine), field_truth))
        print(f"| {case} | " + " | ".join(f"{d:.3f}" for d in row) + " |")


if __name__ == "__main__":
    main()
