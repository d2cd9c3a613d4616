"""Image formats besides NIfTI: ``.nrrd`` and ``.mha`` through SimpleITK (optional extra ``formats``),
and 2D ``.png`` images (nnU-Net's natural-image datasets: one grey or RGB PNG per case) through Pillow.

A scan in one of these formats is read into a `nibabel.Nifti1Image` (voxels in x, y, z order, affine
in NIfTI's RAS world), so everything downstream is format-blind; a label volume is written back in the
input's own format with its origin, spacing and direction copied (ITK's LPS world).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = ["ITK_SUFFIXES", "PNG_SUFFIXES", "read_itk", "write_itk_labels", "read_png", "write_png_labels"]

ITK_SUFFIXES = (".nrrd", ".mha")
PNG_SUFFIXES = (".png",)
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
        ValueError: not a 3D image. A vector image (several values per voxel) gives (x, y, z, c).
    """
    sitk = _sitk()
    img = sitk.ReadImage(str(path), imageIO=_image_io(path))  # ITK picks readers by lower-case suffix
    if img.GetDimension() != 3:
        raise ValueError(f"it has {img.GetDimension()} dimensions; emfformer expects a 3D volume")
    array = sitk.GetArrayFromImage(img)  # (z, y, x) or (z, y, x, c)
    axes = (2, 1, 0, 3) if array.ndim == 4 else (2, 1, 0)
    data = np.ascontiguousarray(array.transpose(axes))  # -> (x, y, z[, c])
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = _LPS_TO_RAS @ direction @ np.diag(img.GetSpacing())
    affine[:3, 3] = _LPS_TO_RAS @ np.asarray(img.GetOrigin())
    out = nib.Nifti1Image(data, affine)
    out.header.set_zooms(tuple(img.GetSpacing()) + ((1.0,) if data.ndim == 4 else ()))
    return out


def write_itk_labels(labels: np.ndarray, reference: Path, path: Path) -> None:
    """Write an (x, y, z) label volume to ``path`` with the geometry of the ``reference`` scan."""
    sitk = _sitk()
    ref = sitk.ReadImage(str(reference), imageIO=_image_io(reference))
    out = sitk.GetImageFromArray(np.ascontiguousarray(labels.transpose(2, 1, 0)))
    out.CopyInformation(ref)
    out.SetMetaData("emfformer", "labels")  # guard.ITK_KEY: marks the file as ours (never-destroy rule)
    sitk.WriteImage(out, str(path), useCompression=True)


def read_png(path: Path) -> nib.Nifti1Image:
    """A 2D PNG as a one-slice volume: grey (rows, cols, 1), RGB(A) (rows, cols, 1, 3) without alpha.

    The pixel grid is taken as 1 x 1 x 1 mm with an identity affine (PNG has no geometry).
    """
    from PIL import Image  # Pillow comes with matplotlib

    with Image.open(path) as im:
        im.load()
        mode = im.mode
        # alpha is dropped; a palette PNG keeps its indices (label maps are often saved that way)
        converted = {"RGBA": "RGB", "CMYK": "RGB", "LA": "L", "PA": "P"}.get(mode)
        data = np.asarray(im.convert(converted) if converted else im)
    if data.ndim == 3:
        data = data[:, :, None, :3]  # (rows, cols, 1 slice, RGB)
    elif data.ndim == 2:
        data = data[:, :, None]
    else:
        raise ValueError(f"a PNG of mode {mode} with shape {data.shape} is neither grey nor RGB")
    return nib.Nifti1Image(np.ascontiguousarray(data), np.eye(4))


def write_png_labels(labels: np.ndarray, path: Path) -> None:
    """Write a (rows, cols, 1) label volume as an 8-bit grey PNG (the values are the class indices)."""
    from PIL import Image

    if labels.ndim != 3 or labels.shape[2] != 1 or labels.max(initial=0) > 255:
        raise ValueError(f"a PNG label map needs (rows, cols, 1) values in 0..255, got {labels.shape}")
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", "emfformer labels")  # guard.PNG_KEY / LABEL_DESCRIP: marks the file as ours
    Image.fromarray(np.ascontiguousarray(labels[:, :, 0].astype(np.uint8))).save(
        path, format="PNG", pnginfo=info
    )
