"""Image formats besides NIfTI: ``.nrrd`` and ``.mha`` through SimpleITK (optional extra ``formats``),
and 2D ``.png`` images (nnU-Net's natural-image datasets: one grey or RGB PNG per case) through Pillow.

A scan in one of these formats is read into a `nibabel.Nifti1Image` (voxels in x, y, z order, affine
in NIfTI's RAS world), so everything downstream is format-blind; a label volume is written back in the
input's own format with its origin, spacing and direction copied (ITK's LPS world).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator
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
    sitk.ProcessObject_SetGlobalWarningDisplay(False)  # ITK's warnings go to stderr, around our messages
    return sitk


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[list[str]]:
    """Hold back what C++ code writes to file descriptor 2 (MetaIO prints its parse errors there, next
    to the exception that repeats them); yields a list that receives those lines."""
    captured: list[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (some notebook kernels): nothing to hold back
        yield captured
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.extend(sink.read().decode(errors="replace").splitlines())


def itk_reason(exc: BaseException, stderr: list[str] | None = None) -> str:
    """The one meaningful line of a SimpleITK error (it spans 8-18 lines: the C++ file and line, the
    IO object's address, "Reason: Success", a trace of the NRRD reader), without a final full stop.

    ``stderr``: what the reader printed meanwhile; MetaIO says there why "File cannot be read"."""
    lines = [ln.strip() for ln in str(exc).splitlines()]
    printed = [ln.strip() for ln in stderr or [] if ln.strip()]
    nrrd = [ln.split(":", 1)[-1].strip() for ln in lines if ln.startswith("[nrrd]")]
    if nrrd:  # the innermost NRRD reader line names the problem ("... require endian info")
        return nrrd[-1].rstrip(".")
    for ln in lines:
        ln = re.sub(r"^(itk::)?ITK ERROR:|^itk::ERROR:", "", ln).strip()
        ln = re.sub(r"^\w+\(0x[0-9a-f]+\):\s*", "", ln)
        skip = ln.startswith(("Exception thrown in SimpleITK", "Reason: Success"))
        if ln and not skip and not re.search(r"\.(cxx|h|hxx):\d+:?$", ln):
            if ln.startswith("File cannot be read") and printed:
                ln = f"{ln.rstrip('.')} ({printed[0]})"
            return ln.rstrip(".")
    return type(exc).__name__


def _image_io(path: Path) -> str:
    return "NrrdImageIO" if Path(path).name.lower().endswith(".nrrd") else "MetaImageIO"


def read_itk(path: Path) -> nib.Nifti1Image:
    """A ``.nrrd`` / ``.mha`` scan as a Nifti1Image (x, y, z voxels; RAS affine from ITK's LPS geometry).

    Raises:
        ImportError: SimpleITK is not installed.
        ValueError: SimpleITK cannot read the file (its one meaningful line), or not a 3D image. A
            vector image (several values per voxel) gives (x, y, z, c).
    """
    sitk = _sitk()
    with _quiet_stderr() as stderr:
        try:
            img = sitk.ReadImage(str(path), imageIO=_image_io(path))  # ITK picks readers by lower-case suffix
        except RuntimeError as exc:
            error = exc
        else:
            error = None
    if error is not None:
        raise ValueError(itk_reason(error, stderr)) from error
    if img.GetDimension() != 3:
        raise ValueError(f"it has {img.GetDimension()} dimensions; emfformer expects a 3D volume")
    array = sitk.GetArrayFromImage(img)  # (z, y, x) or (z, y, x, c)
    axes = (2, 1, 0, 3) if array.ndim == 4 else (2, 1, 0)
    data = np.ascontiguousarray(array.transpose(axes))  # -> (x, y, z[, c])
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = _LPS_TO_RAS @ direction @ np.diag(img.GetSpacing())
    affine[:3, 3] = _LPS_TO_RAS @ np.asarray(img.GetOrigin())
    # 64-bit integers (a valid ITK pixel type) need nibabel's explicit consent; read as float32 downstream
    out = nib.Nifti1Image(data, affine, dtype=data.dtype if data.dtype.itemsize == 8 else None)
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
    if data.dtype == bool:  # a 1-bit PNG (a binary mask): 0 / 1, as a label map of classes 0 and 1
        data = data.astype(np.uint8)
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
