"""Prediction: scan file(s) in -> label file(s) out, same names, format, shape, affine and header.

All inputs are checked before anything is written (no partial output on bad input); each output is
written atomically. Optional PNG overlays show the image with the predicted labels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.cases import IMAGE_SUFFIXES, Case, DataError, load_volume, nifti_stem
from ..data.formats import ITK_SUFFIXES, write_itk_labels
from ..io import atomic_write, save_nifti
from .checkpoint import load_members
from .export import load_exported, onnx_members
from .inference import Member, predict_volume, resolve_device

__all__ = ["find_inputs", "run_prediction", "save_overlay", "SkippedInputs"]

log = logging.getLogger(__name__)


def find_inputs(inputs: str | Path) -> list[Path]:
    """An image file, or every ``.nii``/``.nii.gz``/``.nrrd``/``.mha`` file directly inside a folder (sorted).

    Raises:
        DataError: the path does not exist, is not NIfTI, or the folder holds no NIfTI file.
    """
    path = Path(inputs)
    if path.is_file():
        if not path.name.lower().endswith(IMAGE_SUFFIXES):
            raise DataError(f"{path} is not an image file emfformer reads ({', '.join(IMAGE_SUFFIXES)}).")
        return [path]
    if path.is_dir():
        files = sorted(
            p
            for p in path.iterdir()
            if p.is_file()
            and p.name.lower().endswith(IMAGE_SUFFIXES)
            and not p.name.startswith("._")  # macOS debris
        )
        if not files:
            raise DataError(f"No image files ({', '.join(IMAGE_SUFFIXES)}) in folder {path}.")
        return files
    raise DataError(f"Input {path} does not exist. Give a NIfTI file or a folder of them.")


def _check_input(path: Path, members: list[Member]) -> None:
    """Fully read one input (readable, finite, 3D) once and drop it; warn when pad mode will crop it."""
    shape = load_volume(Case(nifti_stem(path.name), path)).image.shape
    for model, preprocess in members:
        in_plane = [n for a, n in enumerate(shape) if a != preprocess.slice_axis % 3]
        if (
            preprocess.mode == "pad"
            and max(in_plane) > preprocess.size
            and not getattr(model, "input_multiple", None)
        ):
            log.warning(
                "%s: in-plane size %s is larger than the model's %d x %d input (pad mode): the border outside "
                "the central crop is labelled background. Use a checkpoint trained on larger inputs or mode=resize.",
                path, "x".join(map(str, in_plane)), preprocess.size, preprocess.size,
            )  # fmt: skip


def save_overlay(
    image: np.ndarray, labels: np.ndarray, path: Path, num_classes: int, slice_axis: int = 2
) -> None:
    """PNG of up to 3 slices (those with the most foreground) with the labels drawn over the image."""
    from matplotlib import colormaps  # imported here: only --overlays needs matplotlib (0.3 s)
    from matplotlib.figure import Figure

    img, lab = np.moveaxis(image, slice_axis, 0), np.moveaxis(labels, slice_axis, 0)
    fg = lab.reshape(len(lab), -1).astype(bool).sum(1)
    picks = sorted(np.argsort(fg)[::-1][:3].tolist()) if fg.any() else [len(lab) // 2]
    fig = Figure(figsize=(3.2 * len(picks), 3.4))
    axes = fig.subplots(1, len(picks), squeeze=False)
    cmap = colormaps["tab10"].resampled(max(num_classes, 2))
    for ax, k in zip(axes[0], picks, strict=True):
        ax.imshow(img[k].T, cmap="gray", origin="lower")
        masked = np.ma.masked_equal(lab[k].T, 0)
        ax.imshow(masked, cmap=cmap, vmin=0, vmax=max(num_classes - 1, 1), alpha=0.45, origin="lower")
        ax.set_title(f"slice {k}")
        ax.axis("off")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))


class SkippedInputs(DataError):
    """Some inputs of a folder could not be segmented; the others were written."""


def _segment(
    f: Path, out: Path, members: list, num_classes: int, tta: bool, bf16: bool, overlays: bool
) -> Path:
    """Segment one file and write its label volume (and overlay) atomically."""
    vol = load_volume(Case(nifti_stem(f.name), f))  # one volume in memory at a time
    with torch.inference_mode():
        labels = predict_volume(members, vol.image, bf16=bf16, tta=tta, affine=vol.affine, warn=True)
    dtype = np.uint8 if num_classes <= 256 else np.int16
    if f.name.lower().endswith(ITK_SUFFIXES):  # the input's own format and ITK geometry
        suffix = Path(f.name).suffix.lower()  # writers pick the format from a lower-case suffix
        path = atomic_write(
            out / f.name, lambda tmp: write_itk_labels(labels.astype(dtype), f, tmp), suffix=suffix
        )
    else:
        header = vol.header.copy()
        header.set_data_dtype(dtype)
        header.set_slope_inter(1, 0)
        path = save_nifti(nib.Nifti1Image(labels.astype(dtype), vol.affine, header), out / f.name)
    if overlays:  # named after the whole file name: x.nii and x.nii.gz do not share an overlay
        save_overlay(
            vol.image, labels, out / "overlays" / f"{f.name}.png", num_classes, members[0][1].slice_axis
        )
    return path


def _checked_output(out: Path, files: list[Path]) -> Path:
    """``out`` if it can be the output folder of ``files``, else a ValueError saying what to give."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"Output {out} is a file; -o takes a folder (labels keep the input file names).")
    if not out.exists() and out.name.lower().endswith(IMAGE_SUFFIXES):
        raise ValueError(
            f"-o {out} looks like a file name; -o takes a folder, and the labels keep the input file names "
            f"(e.g. -o {out.parent / 'labels'})."
        )
    if any(f.parent.resolve() == out.resolve() for f in files):
        raise ValueError(
            f"Output folder {out} holds the inputs; choose another -o so they are not overwritten."
        )
    return out


def run_prediction(
    inputs: str | Path,
    out_dir: str | Path,
    checkpoint: str | Path | Sequence[str | Path] | None = None,
    overlays: bool = False,
    device: str = "auto",
    bf16: bool = False,
    progress: bool = True,
    tta: bool | None = None,
    exported: str | Path | None = None,
    engine: str = "torch",
    fast: bool = False,
) -> list[Path]:
    """Segment every input volume; returns the written label files.

    ``checkpoint``: a run's ``best.pt``, an ensemble file from ``emfformer pack``, a shipped name
    (default ``hippocampus``), or a list of these whose probabilities are averaged. ``exported``: an
    ONNX / TorchScript file from ``emfformer export`` instead (run through onnxruntime / TorchScript).
    ``tta``: mirror test-time augmentation (``None``: what the checkpoint recommends). ``engine``:
    ``torch`` or ``onnxruntime`` (the networks exported to ONNX on the fly and checked; faster on CPU).
    ``fast``: the first network of an ensemble only, without TTA (for the shipped model 15x faster and
    2.1 points of test mIoU lower, docs/benchmarks.md); refused together with ``tta=True``.

    Outputs keep the input file names, shapes, affines and headers (data type set to uint8/int16).
    With ``overlays``, PNGs go to ``out_dir/overlays/<file name>.png``. Every input is checked first; in
    a folder, bad files are skipped (one warning each), the good ones segmented, and then
    `SkippedInputs` names the skipped files.

    Raises:
        DataError: the input (or every input of a folder) is missing, unreadable, not a 3D volume or
            holds NaN/inf voxels: nothing is written.
        SkippedInputs: some inputs of a folder were skipped, the others were written.
        ValueError: bad checkpoint, or ``out_dir`` is the input folder (inputs would be overwritten), a
            file, or named like an image file.
    """
    files = find_inputs(inputs)
    out = _checked_output(Path(out_dir), files)
    if engine not in ("torch", "onnxruntime"):
        raise ValueError(f"engine must be torch or onnxruntime, got {engine!r}")
    if fast and tta:
        raise ValueError("--fast runs without mirror TTA; drop --tta (or --fast)")
    if exported is not None:  # an ONNX / TorchScript file from `emfformer export`: same pre/post-processing
        members, class_names, recommended = load_exported(exported)
    else:
        members, class_names, recommended, _ = load_members(checkpoint, resolve_device(device))
    if fast:
        log.info("fast: the first of %d network(s), without TTA", len(members))
        members, tta = members[:1], False
    if engine == "onnxruntime" and exported is None:
        members = onnx_members(members)
    num_classes = len(class_names)
    tta = recommended if tta is None else tta
    good, bad = [], []
    for f in tqdm(files, desc="check inputs", disable=not progress):  # every input, before any write
        try:
            _check_input(f, members)
            good.append(f)
        except DataError as exc:
            log.warning("skipping %s: %s", f, exc)
            bad.append(f"{f.name}: {exc}")
    if not good:
        raise DataError(
            bad[0] if len(bad) == 1 else f"none of the {len(bad)} inputs can be segmented: " + "; ".join(bad)
        )
    out.mkdir(parents=True, exist_ok=True)
    written = [
        _segment(f, out, members, num_classes, tta, bf16, overlays)
        for f in tqdm(good, desc="predict", disable=not progress)
    ]
    if bad:
        raise SkippedInputs(
            f"{len(bad)} of {len(files)} inputs were skipped (the other {len(written)} are in {out}): "
            + "; ".join(bad)
        )
    log.info("wrote %d label file(s) to %s", len(written), out)
    return written
