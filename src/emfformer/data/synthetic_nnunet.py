"""Tiny synthetic datasets in the nnU-Net v2 raw layout, one per kind of data a user brings.

* ``ct``: one-channel CT in Hounsfield units, large slices (default 512 x 512, 0.8 x 0.8 x 4 mm), air
  around a soft-tissue body, three organs of distinct HU at random places (4 classes);
* ``mri2``: two-channel MRI (``T2``, ``ADC``), each class visible in one channel only;
* ``png``: a 2D natural-image set, one RGB PNG per case (``channel_names`` R / G / B) and a grey label PNG.

Not real data: for tests and examples. Every writer returns the dataset folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from emfformer.io import atomic_write_text, save_nifti

__all__ = ["write_nnunet_dataset", "KINDS"]

KINDS = ("ct", "mri2", "png")


def _disk(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    rr, cc = np.ogrid[: shape[0], : shape[1]]
    return (rr - centre[0]) ** 2 + (cc - centre[1]) ** 2 <= radius**2


def _ct_case(shape: tuple[int, int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w, z = shape
    image = np.full(shape, -1000.0, np.float32)  # air
    label = np.zeros(shape, np.uint8)
    body = _disk((h, w), (h / 2, w / 2), 0.42 * min(h, w))
    image[body] = 40.0
    for cls, hu in ((1, 180.0), (2, 320.0), (3, 700.0)):  # organ, enhancing organ, bone
        r = rng.uniform(0.05, 0.09) * min(h, w)
        centre = (rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w)
        disk = _disk((h, w), centre, r) & body
        for k in range(z):
            if abs(k - z / 2) < z / 2 - 0.5:
                image[disk, k] = hu
                label[disk, k] = cls
    image += rng.normal(0, 15, shape).astype(np.float32)
    return np.rint(image).astype(np.int16), label


def _mri2_case(shape: tuple[int, int, int], rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    h, w, z = shape
    label = np.zeros(shape, np.uint8)
    t2 = rng.normal(100, 10, shape).astype(np.float32)
    adc = rng.normal(800, 60, shape).astype(np.float32)
    for cls, channel, value in ((1, t2, 260.0), (2, adc, 1900.0)):  # class 1 in T2 only, class 2 in ADC only
        disk = _disk(
            (h, w), (rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w), rng.uniform(0.12, 0.2) * h
        )
        disk &= label[..., 0] == 0
        label[disk] = cls
        channel[disk] = value + rng.normal(0, 10, (int(disk.sum()), z))
    return [t2, adc], label


def _png_case(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape
    rgb = np.clip(rng.normal(90, 25, (h, w, 3)), 0, 255)
    disk = _disk((h, w), (rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w), rng.uniform(0.12, 0.22) * h)
    rgb[disk] = (220, 60, 40)  # a red lesion on grey skin
    return rgb.astype(np.uint8), disk.astype(np.uint8)


def _nifti(array: np.ndarray, spacing: tuple[float, float, float]) -> nib.Nifti1Image:
    img = nib.Nifti1Image(array, np.diag([*spacing, 1.0]))
    img.header.set_zooms(spacing)
    return img


def _write_case(root: Path, kind: str, case_id: str, shape: tuple[int, int, int], rng: np.random.Generator,
                folder: str = "imagesTr") -> None:  # fmt: skip
    if kind == "png":
        from PIL import Image

        rgb, label = _png_case(shape[:2], rng)
        (root / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(root / folder / f"{case_id}_0000.png")
        if folder == "imagesTr":
            (root / "labelsTr").mkdir(parents=True, exist_ok=True)
            Image.fromarray(label).save(root / "labelsTr" / f"{case_id}.png")
        return
    spacing = (0.8, 0.8, 4.0) if kind == "ct" else (1.0, 1.0, 3.0)
    if kind == "ct":
        image, label = _ct_case(shape, rng)
        channels = [image]
    else:
        channels, label = _mri2_case(shape, rng)
    for c, array in enumerate(channels):
        save_nifti(_nifti(array, spacing), root / folder / f"{case_id}_{c:04d}.nii.gz")
    if folder == "imagesTr":
        save_nifti(_nifti(label, spacing), root / "labelsTr" / f"{case_id}.nii.gz")


def write_nnunet_dataset(
    root: Path, kind: str, n_cases: int = 6, seed: int = 0, shape: tuple[int, int, int] | None = None,
    n_test: int = 0,
) -> Path:  # fmt: skip
    """Write a synthetic nnU-Net v2 dataset of ``kind`` (see the module docstring) into ``root``.

    Args:
        root: the dataset folder to create, e.g. ``tmp/Dataset900_CT``.
        kind: ``ct``, ``mri2`` or ``png``.
        n_cases: labelled cases in imagesTr / labelsTr; ``n_test``: unlabelled cases in imagesTs.
        shape: volume shape (X, Y, Z) (PNG: rows, cols, 1); defaults 512 x 512 x 5, 48 x 48 x 6, 64 x 64 x 1.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if n_cases < 1 or n_test < 0:
        raise ValueError(f"need n_cases >= 1 and n_test >= 0, got {n_cases}, {n_test}")
    shape = shape or {"ct": (512, 512, 5), "mri2": (48, 48, 6), "png": (64, 64, 1)}[kind]
    root = Path(root)
    rng = np.random.default_rng(seed)
    for i in range(n_cases):
        _write_case(root, kind, f"case_{i:03d}", shape, rng)
    for i in range(n_test):
        _write_case(root, kind, f"test_{i:03d}", shape, rng, folder="imagesTs")
    channels = {"ct": {"0": "CT"}, "mri2": {"0": "T2", "1": "ADC"}, "png": {"0": "R", "1": "G", "2": "B"}}[
        kind
    ]
    labels = {
        "ct": {"background": 0, "organ": 1, "enhancing": 2, "bone": 3},
        "mri2": {"background": 0, "t2_lesion": 1, "adc_lesion": 2},
        "png": {"background": 0, "lesion": 1},
    }[kind]
    meta = {
        "name": f"Synthetic_{kind}", "channel_names": channels, "labels": labels, "numTraining": n_cases,
        "file_ending": ".png" if kind == "png" else ".nii.gz",
        "description": "synthetic (emfformer.data.synthetic_nnunet); not real data",
    }  # fmt: skip
    atomic_write_text(root / "dataset.json", json.dumps(meta, indent=2) + "\n")
    return root
