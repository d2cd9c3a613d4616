"""Dataset fingerprint: what planning needs to know about the training cases (nnU-Net's first step).

Per case: shape and voxel spacing in the dataset's common orientation (after the constant-border
crop), the fraction of the volume that crop keeps (nnU-Net's crop to the nonzero region, for any
constant fill value), voxel counts per class and a seeded sample
of foreground intensities per channel. Aggregated: median shape and spacing, per-channel foreground
intensity statistics (percentiles 0.5 / 99.5, mean, std) and class frequencies. Cached on disk, keyed
by the files' sizes and modification times.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

from emfformer.io import atomic_write_json
from emfformer.progress import tqdm

from .cases import Case, case_signature, load_volume, open_image
from .geometry import border_bbox, voxel_spacing

__all__ = ["FINGERPRINT_VERSION", "dataset_fingerprint", "case_fingerprint"]

FINGERPRINT_VERSION = 2
_SAMPLES_PER_CASE = 10_000  # foreground intensities kept per case and channel (nnU-Net: 10 k)


def _orientation(cases: Sequence[Case]) -> str:
    import nibabel as nib

    codes = Counter("".join(nib.aff2axcodes(open_image(Path(c.image), channels=True).affine)) for c in cases)
    return codes.most_common(1)[0][0]


def case_fingerprint(case: Case, orientation: str, num_classes: int, seed: int = 0) -> dict[str, Any]:
    """The fingerprint of one labelled case (see the module docstring); reads the whole case once."""
    vol = load_volume(case)
    image = vol.image if vol.image.ndim == 4 else vol.image[..., None]
    label = vol.label if vol.label is not None else np.zeros(image.shape[:3], np.int16)
    bbox = border_bbox(image)
    full = image.shape[0] * image.shape[1] * image.shape[2]
    if bbox is not None:
        region = tuple(slice(a, b) for a, b in bbox)
        image, label = image[region], label[region]
    perm = np.argsort(ornt_transform(io_orientation(vol.affine), axcodes2ornt(tuple(orientation)))[:, 0])
    fg = label > 0
    rng = np.random.default_rng([seed, len(case.case_id)])
    samples = []
    for c in range(image.shape[-1]):
        values = image[..., c][fg] if fg.any() else image[..., c].ravel()
        take = min(len(values), _SAMPLES_PER_CASE)
        samples.append(rng.choice(values, size=take, replace=False).astype(float).tolist() if take else [])
    counts = np.bincount(label.ravel().clip(0), minlength=num_classes)[:num_classes]
    return {
        "case_id": case.case_id,
        "shape": [int(image.shape[a]) for a in perm],
        "spacing": [round(float(s), 5) for s in voxel_spacing(vol.affine)[perm]],
        "crop_fraction": float(np.prod(image.shape[:3]) / full),
        "class_voxels": counts.astype(int).tolist(),
        "fg_samples": samples,
    }


def _aggregate(records: list[dict[str, Any]], channels: Sequence[str], orientation: str) -> dict[str, Any]:
    intensity = []
    for c, name in enumerate(channels):
        values = np.concatenate([np.asarray(r["fg_samples"][c], float) for r in records])
        if values.size == 0:
            values = np.zeros(1)
        lo, hi = np.percentile(values, [0.5, 99.5])
        clipped = np.clip(values, lo, hi)
        intensity.append({
            "channel": name, "percentile_00_5": float(lo), "percentile_99_5": float(hi),
            "mean": float(values.mean()), "std": float(values.std()), "median": float(np.median(values)),
            "clipped_mean": float(clipped.mean()), "clipped_std": float(clipped.std()),
        })  # fmt: skip
    voxels = np.sum([r["class_voxels"] for r in records], axis=0)
    return {
        "version": FINGERPRINT_VERSION,
        "orientation": orientation,
        "num_cases": len(records),
        "channels": list(channels),
        "median_shape": [float(v) for v in np.median([r["shape"] for r in records], axis=0)],
        "median_spacing": [float(v) for v in np.median([r["spacing"] for r in records], axis=0)],
        "median_crop_fraction": float(np.median([r["crop_fraction"] for r in records])),
        "class_frequencies": (voxels / max(1, voxels.sum())).round(8).tolist(),
        "intensity": intensity,
        "cases": [{k: v for k, v in r.items() if k != "fg_samples"} for r in records],
    }


def _key(cases: Sequence[Case], channels: Sequence[str], num_classes: int) -> str:
    payload = [case_signature(c) for c in cases]  # the same file signature as the preprocessed store's
    blob = json.dumps([FINGERPRINT_VERSION, list(channels), num_classes, payload]).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def dataset_fingerprint(
    cases: Sequence[Case],
    channels: Sequence[str],
    num_classes: int,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The fingerprint of ``cases`` (read once, then from ``cache_dir/fingerprint_<hash>.json``).

    Raises:
        ValueError: no cases.
        DataError: a case cannot be read.
    """
    if not cases:
        raise ValueError("dataset_fingerprint needs at least one case")
    path = (
        None
        if cache_dir is None
        else Path(cache_dir) / f"fingerprint_{_key(cases, channels, num_classes)}.json"
    )
    if path is not None and path.is_file():
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            pass  # rebuilt below
    orientation = _orientation(cases)
    records = [
        case_fingerprint(c, orientation, num_classes)
        for c in tqdm(cases, desc="fingerprint", unit="case", disable=not progress)
    ]
    fp = _aggregate(records, channels, orientation)
    if path is not None:
        atomic_write_json(path, fp)
    return fp
