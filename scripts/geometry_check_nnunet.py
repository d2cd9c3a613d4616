"""Dice of a shipped model on its held-out nnU-Net-layout cases stored on other grids and fields of view.

    python scripts/geometry_check_nnunet.py --data DIR [--checkpoint left-atrium] [--cases 16] [--tta]

For each case of the checkpoint's stored test part (nnU-Net v2 layout, one channel): fg Dice as stored;
flipped to LPS (x and y reversed, affine updated: the same scan on another grid); resampled to
1.0 x 1.0 x 2.5 mm (a coarser, anisotropic grid: linear resampling, not a simulated thick-slice
acquisition); at 0.8 mm; and that 0.8 mm copy pasted off-centre into a field twice as wide in-plane on a
zero background, segmented as shipped (the constant-border crop takes the zeros away again) and with the
crop off (the zeros then enter both the intensity normalisation and the sliding window). Every copy
carries its true affine. Labels are resampled by nearest neighbour, which on an even ratio (2.5 mm from
0.625 mm) falls half a stored voxel off the image: the resampled columns are slightly pessimistic. Prints a markdown table, the mean of each column, and
in how many cases the LPS labels, flipped back, equal the stored case's. (scripts/geometry_check.py does
the same for the MSD hippocampus layout; both build their copies with tests/engine/scan_copies.py.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "engine"))
from scan_copies import border_crop, fg_dice, flipped_xy, pasted, resampled  # noqa: E402

from emfformer.api import load_pretrained, segment  # noqa: E402
from emfformer.engine.checkpoint import load_checkpoint, resolve_checkpoint  # noqa: E402


def _variants(image: np.ndarray, truth: np.ndarray, affine: np.ndarray, spacing: np.ndarray):
    """(image, truth, affine) as stored, as LPS, at 1 x 1 x 2.5 mm, at 0.8 mm, and that copy off-centre in a
    2x wider field."""
    yield image, truth, affine
    lps_image, lps_affine = flipped_xy(image, affine)
    yield lps_image, flipped_xy(truth, affine)[0], lps_affine
    # `resampled` takes the new voxel size in units of the stored one
    yield resampled(image, truth, affine, np.array([1.0, 1.0, 2.5]) / spacing)
    fine, fine_truth, fine_affine = resampled(image, truth, affine, 0.8 / spacing)
    yield fine, fine_truth, fine_affine
    yield pasted(fine, fine_truth, fine_affine, 2, (fine.shape[0] - 5, 3), 0.0)


def _row(model, image: np.ndarray, truth: np.ndarray, affine: np.ndarray, spacing: np.ndarray, tta: bool):
    """fg Dice of each copy (the last one twice: crop on, crop off) and whether LPS gave the same labels."""
    copies = list(_variants(image, truth, affine, spacing))
    labels = [segment(i, model, tta=tta, affine=a) for i, _, a in copies]
    with border_crop(model, False):
        labels.append(segment(copies[-1][0], model, tta=tta, affine=copies[-1][2]))
    truths = [t for _, t, _ in copies] + [copies[-1][1]]
    return [fg_dice(p, t) for p, t in zip(labels, truths, strict=True)], bool(
        (labels[1][::-1, ::-1] == labels[0]).all()
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path, help="the nnU-Net v2 dataset folder")
    p.add_argument("--checkpoint", default="left-atrium")
    p.add_argument("--cases", type=int, default=16, help="how many test-part cases (sorted ids)")
    p.add_argument("--tta", action="store_true", help="mirror TTA (off by default: 8x faster)")
    args = p.parse_args()
    model = load_pretrained(args.checkpoint)
    ids = sorted(load_checkpoint(resolve_checkpoint(args.checkpoint))["splits"]["test"])[: args.cases]
    print(
        "| case | as stored | LPS (x, y flipped) | 1.0 x 1.0 x 2.5 mm | 0.8 mm | 0.8 mm off-centre in a 2x wider"
        " zero field | the same, border crop off |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    rows, same = [], 0
    for case in ids:
        img = nib.load(args.data / "imagesTr" / f"{case}_0000.nii.gz")
        truth = np.asarray(nib.load(args.data / "labelsTr" / f"{case}.nii.gz").dataobj).astype(np.int16)
        image, spacing = np.asarray(img.dataobj, np.float32), np.array(img.header.get_zooms()[:3], float)
        dice, lps_same = _row(model, image, truth, img.affine, spacing, args.tta)
        rows.append(dice)
        same += lps_same
        print(f"| {case} | " + " | ".join(f"{v:.3f}" for v in dice) + " |", flush=True)
    print("| **mean** | " + " | ".join(f"**{v:.4f}**" for v in np.mean(rows, axis=0)) + " |")
    print(f"\nLPS labels, flipped back, equal the stored case's in {same} of {len(ids)} cases.")


if __name__ == "__main__":
    main()
