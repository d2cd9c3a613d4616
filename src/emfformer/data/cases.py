"""Case records shared by every dataset reader, the one NIfTI loader they all use, and atomic writers.

A *case* is one 3D volume (plus its label volume when there is one). Readers (`msd.py`,
`acdc.py`) turn a folder into a `DatasetInfo`; everything downstream (splits, preprocessing,
training, evaluation, prediction) only sees `Case` and `Volume`.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from .formats import ITK_SUFFIXES, PNG_SUFFIXES, read_itk, read_png

log = logging.getLogger(__name__)

__all__ = [
    "Case",
    "DatasetInfo",
    "Volume",
    "load_volume",
    "open_image",
    "is_valid_affine",
    "DataError",
    "NIFTI_SUFFIXES",
    "IMAGE_SUFFIXES",
    "nifti_stem",
    "case_stem",
    "case_signature",
    "LazyVolumes",
]


NIFTI_SUFFIXES = (".nii.gz", ".nii")
IMAGE_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES + PNG_SUFFIXES  # what predict / segment read
_CHANNEL_SUFFIX = re.compile(r"_\d{4}$")  # nnU-Net's channel suffix: case_0000.nii.gz


def nifti_stem(name: str) -> str:
    """``case_001.nii.gz`` -> ``case_001`` (also ``.nii``, ``.nrrd``, ``.mha``); other names unchanged."""
    for ending in IMAGE_SUFFIXES:
        if name.lower().endswith(ending):
            return name[: -len(ending)]
    return name


def case_stem(name: str) -> str:
    """The case id of an image file name: `nifti_stem` without nnU-Net's ``_0000`` channel suffix."""
    return _CHANNEL_SUFFIX.sub("", nifti_stem(name))


def _kind(path: Path) -> str:
    suffix = next((s for s in IMAGE_SUFFIXES if path.name.lower().endswith(s)), "")
    return {".nrrd": "NRRD", ".mha": "MetaImage", ".png": "PNG"}.get(suffix, ".nii/.nii.gz")


class DataError(ValueError):
    """A dataset or a file in it is missing or malformed; the message says which and what to do."""


@dataclass(frozen=True)
class Case:
    """One volume of a dataset.

    Attributes:
        case_id: unique id inside the dataset, e.g. ``hippocampus_004`` or ``patient001_frame01``.
        image: path of the image file (the first channel of a multi-channel case).
        label: path of the label file, or ``None`` for unlabelled cases.
        group: stratification group (ACDC pathology group), ``None`` when not applicable.
        channels: files of the further input channels (nnU-Net ``_0001``, ``_0002``...), in order.
    """

    case_id: str
    image: Path
    label: Path | None = None
    group: str | None = None
    channels: tuple[Path, ...] = ()

    @property
    def images(self) -> tuple[Path, ...]:
        """Every channel file of the case, channel 0 first."""
        return (Path(self.image), *(Path(c) for c in self.channels))


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset read from disk: its class names (index 0 = background), its labelled cases, its input
    channel names (``dataset.json``'s ``channel_names``), its unlabelled ``imagesTs`` cases and the
    nnU-Net ``splits_final.json`` folds when the folder has them."""

    name: str
    root: Path
    class_names: tuple[str, ...]
    cases: tuple[Case, ...] = field(default_factory=tuple)
    channel_names: tuple[str, ...] = ("image",)
    test_cases: tuple[Case, ...] = field(default_factory=tuple)
    splits_final: dict | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass
class Volume:
    """A loaded case. ``image`` is float32 (X, Y, Z), or (X, Y, Z, C) with several input channels;
    ``label`` is int16 (X, Y, Z) or ``None``.

    ``spacing`` is the voxel size in mm (from the header zooms); ``affine`` and ``header`` are kept so
    that predictions are written back with the geometry of the input file.
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    affine: np.ndarray
    header: nib.Nifti1Header
    spacing: tuple[float, float, float]


_MAX_VOLUME_BYTES = 8 * 2**30  # a header asking for more is refused before any voxel is read


def _nifti_stream(path: Path) -> nib.Nifti1Image:
    """A NIfTI file opened by its content: compression from the gzip magic number, not from the name.

    Only the header is read here; voxels stream from the open file when asked for (the size guard
    below runs first).
    """
    with open(path, "rb") as f:
        compressed = f.read(2) == b"\x1f\x8b"
    fileobj = gzip.open(path, "rb") if compressed else open(path, "rb")  # kept open by the image's proxy
    head = fileobj.read(348)
    fileobj.seek(0)
    if head[344:348] == b"n+1\x00":
        kind: type[nib.Nifti1Image] = nib.Nifti1Image
    elif head[4:8] == b"n+2\x00":
        kind = nib.Nifti2Image
    else:
        fileobj.close()
        raise ValueError("no NIfTI-1/2 magic string ('n+1' / 'n+2') in its header")
    holder = nib.FileHolder(str(path), fileobj)
    return kind.from_file_map({"header": holder, "image": holder})


def _open_image(path: Path) -> nib.Nifti1Image:
    """nibabel (or SimpleITK) image of ``path``. nibabel goes by the exact lower-case suffix, so names
    such as ``SCAN.NII.GZ`` and files whose suffix lies about compression are opened by content."""
    lower = path.name.lower()
    if lower.endswith(ITK_SUFFIXES):
        return read_itk(path)
    if lower.endswith(PNG_SUFFIXES):
        return read_png(path)
    if path.name.endswith(NIFTI_SUFFIXES):
        try:
            return nib.load(str(path))
        except Exception:  # e.g. a ``.nii.gz`` stored uncompressed: open it by content, else report this
            try:
                return _nifti_stream(path)
            except Exception:
                pass
            raise
    if lower.endswith(NIFTI_SUFFIXES):
        return _nifti_stream(path)
    return nib.load(str(path))  # other formats nibabel knows (.hdr/.img pairs, .mgz, ...)


@lru_cache(maxsize=1024)
def _warn_unknown_orientation(path: str) -> None:
    """Once per file and process (a batch reads each input twice: check, then segment)."""
    log.warning(
        "%s has neither a qform nor an sform (both codes 0): its orientation is unknown and taken as "
        "nibabel's default (voxel axes scaled by pixdim, x flipped). Set the header's qform/sform if the "
        "labels come out mirrored.",
        path,
    )


def open_image(path: Path, channels: bool = False) -> nib.Nifti1Image:
    """The header-checked image of ``path`` (voxels not read yet): 3D, real, of a sane size.

    ``channels``: also accept (X, Y, Z, C) images whose last axis holds input channels (an RGB PNG, a
    vector-valued ITK file).

    Raises:
        DataError: missing, unreadable, not 3D, RGB/complex, or claiming more than 8 GiB.
    """
    if not path.is_file():
        raise DataError(f"File not found: {path}. Check the dataset folder or re-run `emfformer download`.")
    try:
        img = _open_image(path)
    except Exception as exc:  # nibabel / SimpleITK raise several types for corrupt files
        raise DataError(f"Cannot read image file {path}: {exc}. Is it a valid {_kind(path)} file?") from exc
    if len(img.shape) == 4 and img.shape[3] == 1:  # a 3D volume stored with one time point / channel
        img = img.slicer[..., 0]
    if len(img.shape) != 3 and not (channels and len(img.shape) == 4):
        hint = (
            " It is an RGB(A) PNG: a label map must be a grey PNG whose pixel values are the class indices "
            "(0, 1, 2, ...), not colours; images with several channels go in imagesTr as _0000, _0001, ..."
            if path.name.lower().endswith(".png")
            else " It holds several volumes (e.g. a cine or multi-channel series): save each one as its own 3D file "
            "(e.g. `nibabel.four_to_three`) and segment those."
            if len(img.shape) == 4
            else " A single 2D slice can be saved as (X, Y, 1)."
            if len(img.shape) == 2
            else ""
        )
        raise DataError(
            f"{path} has shape {img.shape}; emfformer expects a single-channel 3D volume (X, Y, Z).{hint}"
        )
    if isinstance(img, nib.Nifti1Image) and not (img.header["qform_code"] or img.header["sform_code"]):
        _warn_unknown_orientation(str(path))
    dtype = img.get_data_dtype()
    if dtype.fields is not None or dtype.kind == "c":  # RGB(A) records, complex numbers
        raise DataError(
            f"{path} stores {'RGB' if dtype.fields else 'complex'} voxels ({dtype}); emfformer needs one real "
            "intensity per voxel. Convert it to a grey-level (magnitude) volume first."
        )
    needed = int(np.prod(img.shape, dtype=np.float64)) * 4  # read as float32
    if needed > _MAX_VOLUME_BYTES:
        raise DataError(
            f"{path} claims {'x'.join(map(str, img.shape))} voxels ({needed / 2**30:.1f} GiB as float32), more "
            f"than the {_MAX_VOLUME_BYTES / 2**30:.0f} GiB a volume may take here. Is the header corrupt?"
        )
    return img


def _read_voxels(img: nib.Nifti1Image, path: Path, dtype: type) -> np.ndarray:
    """The voxel array; a truncated or corrupt data block becomes a DataError naming the file."""
    try:
        data = np.asarray(img.dataobj, dtype=dtype)
    except Exception as exc:  # EOFError, zlib.error, ValueError... for truncated/corrupt files
        raise DataError(
            f"Cannot read the voxels of {path}: {exc or type(exc).__name__}. Is the file complete?"
        ) from exc
    return data


def case_signature(case: Case) -> list[Any]:
    """What a cache of ``case`` depends on: its id, and path, size and modification time of each file.

    Raises:
        DataError: a file cannot be stat'ed (missing, no permission).
    """

    def one(path: Path) -> list[Any]:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise DataError(f"Cannot read {path}: {exc}. Check the dataset folder.") from exc
        return [str(Path(path).resolve()), st.st_size, st.st_mtime_ns]

    return [case.case_id, [one(p) for p in case.images], one(Path(case.label)) if case.label else None]


def is_valid_affine(affine: np.ndarray) -> bool:
    """A finite 4x4 voxel-to-world matrix whose 3x3 part is invertible (orientation and voxel size known)."""
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.isfinite(a).all():
        return False
    # scale-free: tiny voxels (1e-4 mm, microscopy) are fine, a zero or collapsed axis is not
    s = np.linalg.svd(a[:3, :3], compute_uv=False)
    return bool(s[0] > 0 and s[-1] / s[0] > 1e-6)


def _load_channels(case: Case) -> tuple[np.ndarray, nib.Nifti1Image]:
    """The case's image as float32 (X, Y, Z) or (X, Y, Z, C) and the header of its first channel file.

    Channels come from several files (nnU-Net ``_0000``, ``_0001``...) or from one file whose last axis
    holds them (an RGB PNG); every channel must cover the voxels of the first.
    """
    arrays, first = [], None
    for path in case.images:
        img = open_image(path, channels=True)
        if first is None:
            first = img
        elif img.shape[:3] != first.shape[:3] or not np.allclose(img.affine, first.affine, atol=1e-3):
            raise DataError(
                f"Case {case.case_id}: channel file {path} has shape {img.shape[:3]} / another affine than "
                f"{case.image} ({first.shape[:3]}); every channel must be on the same voxel grid."
            )
        data = _read_voxels(img, path, np.float32)
        arrays.append(data if data.ndim == 4 else data[..., None])
    assert first is not None
    image = np.concatenate(arrays, axis=-1) if len(arrays) > 1 else arrays[0]
    if not np.isfinite(image).all():
        n_bad = int(image.size - np.isfinite(image).sum())
        raise DataError(
            f"{case.image} holds {n_bad} NaN or infinite voxel(s); fix or mask them (e.g. set them to 0) first."
        )
    return (image[..., 0] if image.shape[-1] == 1 else image), first


def load_volume(case: Case) -> Volume:
    """Load a case's image (cast to float32, channels last when it has several) and label (cast to
    int16), checking they match.

    Raises:
        DataError: a file is missing/unreadable, not 3D, or image and label differ in shape/affine.
    """
    image, img = _load_channels(case)
    label = None
    if case.label is not None:
        lab = open_image(Path(case.label))
        if lab.shape != img.shape[:3]:
            raise DataError(
                f"Case {case.case_id}: label {case.label} has shape {lab.shape} but image {case.image} "
                f"has {img.shape[:3]}; image and label must cover the same voxels."
            )
        if not np.allclose(lab.affine, img.affine, atol=1e-3):
            raise DataError(
                f"Case {case.case_id}: label {case.label} and image {case.image} have different affines; "
                "resample the label onto the image grid."
            )
        raw = _read_voxels(lab, Path(case.label), np.float64)
        label = np.rint(raw).astype(np.int16)
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    if not is_valid_affine(img.affine):
        axes = np.asarray(img.affine, dtype=np.float64)[:3, :3]
        raise DataError(
            f"{case.image} has a degenerate affine (voxel-to-world matrix {axes.tolist()}): its orientation "
            "and voxel size are unknown. Fix the header (qform/sform and pixdim) first."
        )
    return Volume(case.case_id, image, label, img.affine.copy(), img.header.copy(), zooms)  # type: ignore[arg-type]


class LazyVolumes:
    """Validation volumes read one at a time when asked for (memory stays flat); slicing gives another."""

    def __init__(self, cases: list[Case]) -> None:
        self.cases = list(cases)

    def __len__(self) -> int:
        return len(self.cases)

    def __bool__(self) -> bool:
        return bool(self.cases)

    def __getitem__(self, i: int | slice) -> Any:
        return LazyVolumes(self.cases[i]) if isinstance(i, slice) else load_volume(self.cases[i])

    def __iter__(self) -> Any:
        return (load_volume(c) for c in self.cases)
