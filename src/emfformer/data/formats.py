"""Image formats besides NIfTI: ``.nrrd`` and ``.mha`` through SimpleITK (optional extra ``formats``).

A scan in one of these formats is read into a `nibabel.Nifti1Image` (voxels in x, y, z order, affine
in NIfTI's RAS world), so everything downstream is format-blind; a label volume is written back in the
input's own format with its origin, spacing and direction copied (ITK's LPS world).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = ["ITK_SUFFIXES", "read_itk", "write_itk_labels"]

ITK_SUFFIXES = (".nrrd", ".mha")
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def _sitk():
    try:
        import SimpleITK as sitk
    except ImportError as exc:
        raise ImportError(
            "reading .nrrd / .mha needs SimpleITK: pip install 'emfformer[formats]' (or convert to NIfTI)"
        ) from exc
    return sitk


def _image_io(path: Path) -> str:
    return "NrrdImageIO" if Path(path).name.lower().endswith(".nrrd") else "MetaImageIO"


def read_itk(path: Path) -> nib.Nifti1Image:
    """A ``.nrrd`` / ``.mha`` scan as a Nifti1Image (x, y, z voxels; RAS affine from ITK's LPS geometry).

    Raises:
        ImportError: SimpleITK is not installed.
        RuntimeError: SimpleITK cannot read the file.
        ValueError: not a single-channel 3D image.
    """
    sitk = _sitk()
    img = sitk.ReadImage(str(path), imageIO=_image_io(path))  # ITK picks readers by lower-case suffix
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(
            f"it has {img.GetDimension()} dimensions and {img.GetNumberOfComponentsPerPixel()} values per voxel; "
            "emfformer expects a single-channel 3D volume"
        )
    data = np.ascontiguousarray(sitk.GetArrayFromImage(img).transpose(2, 1, 0))  # (z, y, x) -> (x, y, z)
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = _LPS_TO_RAS @ direction @ np.diag(img.GetSpacing())
    affine[:3, 3] = _LPS_TO_RAS @ np.asarray(img.GetOrigin())
    out = nib.Nifti1Image(data, affine)
    out.header.set_zooms(img.GetSpacing())
    return out


def write_itk_labels(labels: np.ndarray, reference: Path, path: Path) -> None:
    """Write an (x, y, z) label volume to ``path`` with the geometry of the ``reference`` scan."""
    sitk = _sitk()
    ref = sitk.ReadImage(str(reference), imageIO=_image_io(reference))
    out = sitk.GetImageFromArray(np.ascontiguousarray(labels.transpose(2, 1, 0)))
    out.CopyInformation(ref)
    sitk.WriteImage(out, str(path), useCompression=True)
