"""Synthetic phantoms written in the exact on-disk layouts of ACDC and of an MSD task.

They exist so that readers, preprocessing and the whole pipeline can be tested without the real data
(ACDC may not be redistributed; no real data may be copied into the repository). Nothing here is derived
from real images: geometry and intensities are drawn from simple shapes plus Gaussian noise.

- `write_acdc_phantoms`: short-axis "hearts" — LV cavity (3) inside a myocardial ring (2) with an RV
  crescent (1) beside it, tapering from base to apex and contracting from ED to ES.
- `write_msd_phantoms`: a tiny MSD task (``dataset.json``, ``imagesTr``, ``labelsTr``) with two touching
  ellipsoid blobs (labels 1 and 2), shaped like Task04_Hippocampus.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from emfformer.io import atomic_write_text, save_nifti

__all__ = ["write_acdc_phantoms", "write_msd_phantoms", "phantom_acdc_group"]

_ACDC_BLOCK_ORDER = ("DCM", "HCM", "MINF", "NOR", "RV")
_ACDC_MEANS = {0: 40.0, 1: 170.0, 2: 80.0, 3: 210.0}  # background/tissue, RV blood, myocardium, LV blood
_MSD_MEANS = {0: 60.0, 1: 130.0, 2: 160.0}


def phantom_acdc_group(patient: int) -> str:
    """Group of a patient number following ACDC's block order (DCM, HCM, MINF, NOR, RV): blocks of 20
    in training (001-100), of 10 in testing (101-150)."""
    if 1 <= patient <= 100:
        return _ACDC_BLOCK_ORDER[(patient - 1) // 20]
    if 101 <= patient <= 150:
        return _ACDC_BLOCK_ORDER[(patient - 101) // 10]
    raise ValueError(f"ACDC patient numbers are 1-150, got {patient}.")


def _patient_plan(patients: dict[str, list[int]] | int) -> dict[str, list[int]]:
    if isinstance(patients, int):
        if not 1 <= patients <= 100:
            raise ValueError(f"patients as a count must be in 1..100, got {patients}.")
        # round-robin over the five group blocks: 1, 21, 41, 61, 81, 2, 22, ...
        return {"training": sorted(1 + 20 * (i % 5) + i // 5 for i in range(patients))}
    plan = {}
    for subset, ids in patients.items():
        lo, hi = {"training": (1, 100), "testing": (101, 150)}.get(subset, (0, -1))
        if hi < 0:
            raise ValueError(f"patients keys must be 'training' or 'testing', got {subset!r}.")
        bad = [i for i in ids if not lo <= i <= hi]
        if bad:
            raise ValueError(f"{subset} patient numbers must be in {lo}..{hi}, got {bad}.")
        plan[subset] = sorted(set(ids))
    return plan


def _ellipse(
    xx: np.ndarray, yy: np.ndarray, center: tuple[float, float], axes: tuple[float, float], angle: float
) -> np.ndarray:
    dx, dy = xx - center[0], yy - center[1]
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    return (u / axes[0]) ** 2 + (v / axes[1]) ** 2 <= 1.0


def _heart_label(
    shape: tuple[int, int, int], spacing: tuple[float, float, float], geo: dict, phase: float
) -> np.ndarray:
    """Label volume (X, Y, Z) for one cardiac phase (0 = ED, 1 = ES)."""
    nx, ny, nz = shape
    xx, yy = np.meshgrid(np.arange(nx) * spacing[0], np.arange(ny) * spacing[1], indexing="ij")
    label = np.zeros(shape, dtype=np.uint8)
    cos, sin = np.cos(geo["angle"]), np.sin(geo["angle"])
    for k in range(nz):
        taper = 1.0 - 0.55 * k / max(nz - 1, 1)  # base (k = 0) to apex
        r_cav = geo["r_lv"] * taper * (1.0 - 0.3 * phase)
        wall = geo["wall"] * (1.0 + 0.35 * phase)
        ax = (r_cav * geo["ecc"], r_cav / geo["ecc"])
        cavity = _ellipse(xx, yy, geo["lv_center"], ax, geo["angle"])
        outer = _ellipse(xx, yy, geo["lv_center"], (ax[0] + wall, ax[1] + wall), geo["angle"])
        if k < nz - 1:  # no RV at the apex slice
            rv_axes = (geo["rv_axes"][0] * taper * (1.0 - 0.25 * phase), geo["rv_axes"][1] * taper)
            off = ax[0] + wall + 0.4 * rv_axes[0]
            rv_center = (geo["lv_center"][0] - off * cos, geo["lv_center"][1] - off * sin)
            rv = _ellipse(xx, yy, rv_center, rv_axes, geo["angle"])
            gap = geo["rv_gap"]
            grown = _ellipse(xx, yy, geo["lv_center"], (ax[0] + wall + gap, ax[1] + wall + gap), geo["angle"])
            label[..., k][rv & ~grown] = 1
        label[..., k][outer] = 2
        label[..., k][cavity] = 3
    return label


def _image_from_label(
    label: np.ndarray, means: dict[int, float], noise: float, rng: np.random.Generator
) -> np.ndarray:
    image = np.zeros(label.shape, dtype=np.float32)
    for value, mean in means.items():
        image[label == value] = mean
    image += rng.normal(0.0, noise, size=label.shape).astype(np.float32)
    return np.clip(image, 0.0, None)


def _nifti(
    data: np.ndarray, spacing: tuple[float, ...], origin: tuple[float, float, float]
) -> nib.Nifti1Image:
    affine = np.diag([*spacing[:3], 1.0])
    affine[:3, 3] = origin
    img = nib.Nifti1Image(data, affine)
    img.header.set_zooms(spacing)
    img.header.set_xyzt_units("mm", "sec")
    return img


def _write_acdc_patient(
    folder: Path, patient: int, seed: int, size: tuple[int, int], n_slices: tuple[int, int], n_frames: int
) -> None:
    rng = np.random.default_rng([seed, patient])
    name = f"patient{patient:03d}"
    nx, ny = (int(v) for v in rng.integers(size[0], size[1] + 1, size=2))
    nz = int(rng.integers(n_slices[0], n_slices[1] + 1))
    inplane = float(np.round(rng.uniform(1.25, 1.6), 2))
    spacing = (inplane, inplane, float(rng.choice([5.0, 6.5, 7.0, 8.0, 10.0])))
    fov = min(nx, ny) * inplane
    centre = np.array([nx * inplane, ny * inplane]) / 2 + rng.uniform(-0.04, 0.04, 2) * fov
    geo = {
        "lv_center": (float(centre[0] + 0.08 * fov), float(centre[1])),
        "r_lv": rng.uniform(0.13, 0.16) * fov,
        "wall": rng.uniform(0.05, 0.07) * fov,
        "ecc": rng.uniform(0.9, 1.1),
        "angle": rng.uniform(-0.3, 0.3),
        "rv_gap": 0.02 * fov,
        "rv_axes": (rng.uniform(0.13, 0.16) * fov, rng.uniform(0.22, 0.27) * fov),
    }
    es = int(rng.integers(2, n_frames + 1))
    shape = (nx, ny, nz)
    origin = (-nx * inplane / 2, -ny * inplane / 2, float(rng.uniform(-50, 50)))
    frames = []
    for t in range(1, n_frames + 1):
        phase = (t - 1) / (es - 1) if t <= es else 1.0 - (t - es) / (n_frames + 1 - es)
        label = _heart_label(shape, spacing, geo, phase)
        image = np.rint(_image_from_label(label, _ACDC_MEANS, 12.0, rng)).astype(np.int16)
        frames.append(image)
        if t in (1, es):
            save_nifti(_nifti(image, spacing, origin), folder / f"{name}_frame{t:02d}.nii.gz")
            save_nifti(_nifti(label, spacing, origin), folder / f"{name}_frame{t:02d}_gt.nii.gz")
    save_nifti(_nifti(np.stack(frames, axis=-1), (*spacing, 1.0), origin), folder / f"{name}_4d.nii.gz")
    info = (
        f"ED: 1\nES: {es}\nGroup: {phantom_acdc_group(patient)}\n"
        f"Height: {rng.uniform(150, 195):.1f}\nNbFrame: {n_frames}\nWeight: {rng.uniform(50, 110):.1f}\n"
    )
    atomic_write_text(folder / "Info.cfg", info)


def write_acdc_phantoms(
    root: Path,
    patients: dict[str, list[int]] | int,
    seed: int = 0,
    size: tuple[int, int] = (48, 80),
    n_slices: tuple[int, int] = (6, 18),
    n_frames: int = 3,
) -> Path:
    """Write synthetic cardiac phantoms in exactly the official ACDC layout.

    Each patient gets ``Info.cfg`` (ED = 1, ES in 2..n_frames, Group, Height, NbFrame, Weight), a 4D
    cine file (X, Y, Z, T) and, for the ED and ES frames, ``patientXXX_frameYY.nii.gz`` (int16, equal to
    the 4D file at that frame) and ``_gt`` (uint8, labels 0 background, 1 RV, 2 MYO, 3 LV). In-plane
    spacing 1.25-1.6 mm, slice spacing 5-10 mm (in the affine and header zooms). Groups follow ACDC's
    block order (`phantom_acdc_group`). A patient's data depend only on ``seed`` and its number.

    Args:
        root: output folder; gets ``training/patientXXX/`` and ``testing/patientXXX/``.
        patients: ``{"training": [1, 21, ...], "testing": [101, ...]}``, or a count n of training
            patients taken round-robin over the groups (1, 21, 41, 61, 81, 2, ...).
        seed: random seed.
        size: inclusive range of the in-plane sizes (pixels, drawn per axis and patient).
        n_slices: inclusive range of the number of short-axis slices.
        n_frames: frames in the 4D file (``NbFrame``), at least 2.

    Returns:
        ``root``.
    """
    if n_frames < 2:
        raise ValueError(f"n_frames must be >= 2 (ED and ES differ), got {n_frames}.")
    if not 16 <= size[0] <= size[1] or not 1 <= n_slices[0] <= n_slices[1]:
        raise ValueError(
            f"need 16 <= size[0] <= size[1] and 1 <= n_slices[0] <= n_slices[1], got {size}, {n_slices}."
        )
    root = Path(root)
    for subset, ids in _patient_plan(patients).items():
        for patient in ids:
            folder = root / subset / f"patient{patient:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            _write_acdc_patient(folder, patient, seed, size, n_slices, n_frames)
    return root


def _blob_label(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    grid = np.stack(np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij"), axis=-1)
    size = np.array(shape, dtype=np.float32)
    centre = size / 2 + rng.uniform(-0.06, 0.06, 3) * size
    radii = np.maximum(size * rng.uniform(0.14, 0.18, 3), 2.0)
    shift = np.array([0.0, radii[1] * 0.9, 0.0])  # anterior and posterior parts along the 2nd axis
    label = np.zeros(shape, dtype=np.uint8)
    for value, c in ((1, centre - shift), (2, centre + shift)):
        inside = (((grid - c) / radii) ** 2).sum(axis=-1) <= 1.0
        label[inside & (label == 0)] = value
    return label


def write_msd_phantoms(
    root: Path,
    n_cases: int,
    seed: int = 0,
    shape: tuple[int, int, int] = (32, 40, 28),
    shape_jitter: int = 0,
    case_prefix: str = "hippocampus",
) -> Path:
    """Write a tiny synthetic MSD task folder shaped like Task04_Hippocampus.

    ``dataset.json`` (MSD format, labels 0 background / 1 Anterior / 2 Posterior, one "MRI" modality),
    ``imagesTr/<prefix>_NNN.nii.gz`` and ``labelsTr/`` with the same names. Images hold two touching
    ellipsoids with class-specific intensities plus noise; every third image is stored as uint8 and the
    rest as float32, like the real task. Spacing 1 mm isotropic.

    Args:
        root: the task folder to create (e.g. ``tmp/Task04_Hippocampus``).
        n_cases: number of labelled cases (>= 1).
        seed: random seed.
        shape: volume shape (X, Y, Z), each >= 8.
        shape_jitter: each axis of each case varies by up to +-``shape_jitter`` voxels.
        case_prefix: case ids are ``<case_prefix>_001``, ``_002``, ...

    Returns:
        ``root``.
    """
    if n_cases < 1 or min(shape) - shape_jitter < 8 or shape_jitter < 0:
        raise ValueError(
            f"need n_cases >= 1 and every axis >= 8 voxels, got {n_cases}, {shape} +- {shape_jitter}."
        )
    root = Path(root)
    rng = np.random.default_rng(seed)
    training = []
    for i in range(1, n_cases + 1):
        case_id = f"{case_prefix}_{i:03d}"
        case_shape = tuple(int(n + rng.integers(-shape_jitter, shape_jitter + 1)) for n in shape)
        label = _blob_label(case_shape, rng)  # type: ignore[arg-type]
        image = _image_from_label(label, _MSD_MEANS, 8.0, rng)
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8) if i % 3 == 0 else image
        origin = (float(rng.uniform(-5, 5)), 0.0, 0.0)
        save_nifti(_nifti(image, (1.0, 1.0, 1.0), origin), root / "imagesTr" / f"{case_id}.nii.gz")
        save_nifti(_nifti(label, (1.0, 1.0, 1.0), origin), root / "labelsTr" / f"{case_id}.nii.gz")
        training.append({"image": f"./imagesTr/{case_id}.nii.gz", "label": f"./labelsTr/{case_id}.nii.gz"})
    meta = {
        "name": "Hippocampus",
        "description": "Synthetic phantom in the MSD Task04 layout (emfformer tests; not real data)",
        "reference": "emfformer.data.synthetic",
        "licence": "CC0",
        "tensorImageSize": "3D",
        "modality": {"0": "MRI"},
        "labels": {"0": "background", "1": "Anterior", "2": "Posterior"},
        "numTraining": n_cases,
        "numTest": 0,
        "training": training,
        "test": [],
    }
    atomic_write_text(root / "dataset.json", json.dumps(meta, indent=4) + "\n")
    return root
