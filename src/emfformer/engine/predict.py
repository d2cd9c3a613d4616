"""Prediction: scan file(s) in -> label file(s) out, same names, format, shape, affine and header.

All inputs are checked before anything is written (no partial output on bad input); each output is
written atomically. Optional PNG overlays show the image with the predicted labels (overlays.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from emfformer.progress import tqdm

from ..data.cases import IMAGE_SUFFIXES, Case, DataError, case_stem, load_volume, nifti_stem
from ..data.formats import ITK_SUFFIXES, PNG_SUFFIXES, write_itk_labels, write_png_labels
from ..guard import KIND_KEY, LABEL_DESCRIP, PNG_KEY, check_outputs
from ..io import atomic_write, save_nifti
from .checkpoint import load_members
from .export import load_exported, onnx_members
from .inference import Member, predict_scores, resolve_device

__all__ = ["find_inputs", "group_channels", "run_prediction", "save_overlay", "SkippedInputs"]

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


def group_channels(files: list[Path], channels: int) -> list[Case]:
    """One case per scan: with a multi-channel model, nnU-Net's ``<case>_0000``, ``_0001``... files of a
    case are its channels (in order); otherwise every file is a case. Output names drop the ``_0000``."""
    if channels == 1:
        more = sorted(
            f.name
            for f in files
            if case_stem(f.name) != nifti_stem(f.name) and not nifti_stem(f.name).endswith("_0000")
        )
        firsts = {case_stem(f.name) for f in files if nifti_stem(f.name).endswith("_0000")}
        clash = [n for n in more if case_stem(n) in firsts]
        if clash:
            raise DataError(
                f"{clash[0]} is channel {int(nifti_stem(clash[0])[-4:])} of case {case_stem(clash[0])} (nnU-Net "
                "naming), but the model takes 1 channel: give only the _0000 files, or a model trained on these channels"
            )
        cases = [Case(nifti_stem(f.name).removesuffix("_0000"), f) for f in files]
        names: dict[str, Path] = {}
        for c in cases:
            other = names.setdefault(_output_name(c), Path(c.image))
            if other != Path(c.image):
                raise DataError(
                    f"{other} and {c.image} would both be written as {_output_name(c)}: rename one, or segment "
                    "them apart."
                )
        return cases
    groups: dict[str, dict[int, Path]] = {}
    for f in files:
        stem = nifti_stem(f.name)
        index = int(stem[-4:]) if case_stem(f.name) != stem else -1
        groups.setdefault(case_stem(f.name), {})[index] = f
    cases = []
    for cid, by_index in groups.items():
        if sorted(by_index) != list(range(channels)) and not (len(by_index) == 1 and 0 in by_index):
            names = ", ".join(p.name for p in by_index.values())
            raise DataError(
                f"case {cid}: files {names}; a {channels}-channel model needs {cid}_0000 .. {cid}_{channels - 1:04d} "
                "(nnU-Net's channel suffixes), one file per channel"
            )
        fs = [by_index[k] for k in sorted(by_index)]
        cases.append(Case(cid, fs[0], channels=tuple(fs[1:])))
    return cases


def _output_name(case: Case) -> str:
    """``<case id><the input's ending>``: ``la_001_0000.nii.gz`` -> ``la_001.nii.gz``."""
    name = Path(case.image).name
    return case.case_id + name[len(nifti_stem(name)) :]


def _check_input(case: Case, members: list[Member]) -> None:
    """Fully read one input (readable, finite, 3D, the model's channels) once and drop it."""
    vol = load_volume(case)
    have = 1 if vol.image.ndim == 3 else vol.image.shape[-1]
    want = members[0][1].channels
    if have != want and want == 1 and not case.channels:
        raise DataError(
            f"{case.image} has shape {vol.image.shape}: several volumes or channels in one file, but the model "
            "takes a single-channel 3D volume. Save each volume as its own 3D file (e.g. `nibabel.four_to_three`)."
        )
    if have != want:
        raise DataError(
            f"{case.image}: {have} input channel(s), but the model takes {want}; give the files of every "
            "channel as <case>_0000, <case>_0001, ... in the input folder"
        )


def save_overlay(
    image: np.ndarray,
    labels: np.ndarray,
    path: Path,
    class_names: Sequence[str] | int,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    window: tuple[float, float] | None = None,
    title: str | None = None,
) -> None:
    """PNG of 5 slices spread over the predicted structure with the labels and a legend (overlays.py).

    ``class_names``: the legend's names (a class count, as before v0.4, names them "class 0", ...).
    ``window``: (low, high) display intensities (default: robust percentiles of ``image``).
    """
    from .overlays import overlay_figure  # imported here: only --overlays needs matplotlib (0.3 s)

    if isinstance(class_names, int):
        class_names = [f"class {i}" for i in range(class_names)]
    fig = overlay_figure(image, labels, class_names, spacing=spacing, window=window, title=title)
    meta = {PNG_KEY: "emfformer overlay"}  # the never-destroy marker (guard.py)
    atomic_write(
        path, lambda tmp: fig.savefig(tmp, format="png", dpi=90, metadata=meta, facecolor=fig.get_facecolor())
    )


class SkippedInputs(DataError):
    """Some inputs of a folder could not be segmented; the others were written."""


def _save_probabilities(scores: np.ndarray, path: Path, png: bool = False) -> None:
    """nnU-Net's ``.npz``: ``probabilities`` float16 (C, Z, Y, X), i.e. the class axis first, then the
    image axes reversed as nnU-Net stores them (its arrays are SimpleITK's z, y, x); for a PNG
    (C, 1, rows, cols), as nnU-Net's natural-image reader lays them out."""
    axes = (0, 3, 1, 2) if png else (0, 3, 2, 1)
    probs = np.ascontiguousarray(scores.transpose(axes)).astype(np.float16)
    atomic_write(
        path,
        lambda tmp: np.savez_compressed(tmp, probabilities=probs, **{KIND_KEY: "probabilities"}),
        suffix=".npz",
    )


def _segment(
    case: Case, out: Path, members: list, class_names: list[str], tta: bool, bf16: bool, overlays: bool,
    probabilities: bool = False, window: Sequence[float] | None = None,
) -> Path:  # fmt: skip
    """Segment one case and write its label volume (and overlay, probabilities) atomically."""
    f, name = Path(case.image), _output_name(case)
    vol = load_volume(case)  # one volume in memory at a time
    with torch.inference_mode():
        scores = predict_scores(members, vol.image, bf16=bf16, tta=tta, affine=vol.affine, warn=True)
    labels = scores.argmax(axis=0).astype(np.int16)
    dtype = np.uint8 if len(class_names) <= 256 else np.int16
    if f.name.lower().endswith(PNG_SUFFIXES):
        path = atomic_write(out / name, lambda tmp: write_png_labels(labels, tmp), suffix=".png")
    elif f.name.lower().endswith(ITK_SUFFIXES):  # the input's own format and ITK geometry
        suffix = Path(f.name).suffix.lower()  # writers pick the format from a lower-case suffix
        path = atomic_write(
            out / name, lambda tmp: write_itk_labels(labels.astype(dtype), f, tmp), suffix=suffix
        )
    else:
        header = vol.header.copy()
        header.set_data_dtype(dtype)
        header.set_slope_inter(1, 0)
        header["descrip"] = LABEL_DESCRIP  # the never-destroy marker (guard.py)
        path = save_nifti(nib.Nifti1Image(labels.astype(dtype), vol.affine, header), out / name)
    if probabilities:  # after the labels: a label that cannot be written leaves no orphan .npz
        _save_probabilities(scores, out / f"{case.case_id}.npz", png=f.name.lower().endswith(PNG_SUFFIXES))
    if overlays:  # named after the whole file name: x.nii and x.nii.gz do not share an overlay
        from .overlays import display_window

        first = vol.image if vol.image.ndim == 3 else vol.image[..., 0]  # the first channel is shown
        # a CT plan's HU window, unless --window overrides it
        shown = display_window(first, members[0][1].normalization, window)
        save_overlay(first, labels, out / "overlays" / f"{name}.png", class_names, vol.spacing, shown, name)
    return path


def _planned_outputs(
    cases: list[Case], out: Path, overlays: bool, probabilities: bool
) -> list[tuple[Path, str]]:
    """Every file a prediction of ``cases`` writes, with its kind for the never-destroy check (guard.py)."""
    planned = []
    for case in cases:
        name = _output_name(case)
        planned.append((out / name, "labels"))
        if probabilities:
            planned.append((out / f"{case.case_id}.npz", "probabilities"))
        if overlays:
            planned.append((out / "overlays" / f"{name}.png", "overlay"))
    return planned


def _write_all(good: list[Case], out: Path, progress: bool, segment: Any) -> list[Path]:
    """``segment(case)`` for every case; on a failure (disk full) the folders this call created are
    removed again when empty, and the error names the file (atomic writes leave no partial file)."""
    created = [d for d in (out, out / "overlays") if not d.exists()]
    out.mkdir(parents=True, exist_ok=True)
    try:
        with tqdm(good, desc="predict", disable=not progress) as bar:  # closed on errors too
            return [segment(c) for c in bar]
    except BaseException:
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty: finished label files stay
        raise


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


def _check_window(window: Sequence[float] | None, overlays: bool) -> None:
    """Refuse a ``window`` without overlays (it would do nothing) or one that is no LO < HI pair."""
    if window is None:
        return
    if not overlays:
        raise ValueError("--window sets the overlays' intensities: add --overlays (or drop --window)")
    if len(window) != 2 or not float(window[0]) < float(window[1]):
        raise ValueError(f"--window takes LO HI with LO < HI, got {list(window)}")


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
    save_probabilities: bool = False,
    overwrite: bool = False,
    window: Sequence[float] | None = None,
) -> list[Path]:
    """Segment every input volume; returns the written label files.

    ``checkpoint``: a run's ``best.pt``, an ensemble file from ``emfformer pack``, a shipped name
    (default ``hippocampus``), or a list of these whose probabilities are averaged. ``exported``: an
    ONNX / TorchScript file from ``emfformer export`` instead (run through onnxruntime / TorchScript).
    ``tta``: mirror test-time augmentation (``None``: what the checkpoint recommends). ``engine``:
    ``torch`` or ``onnxruntime`` (the networks exported to ONNX on the fly and checked; faster on CPU).
    ``fast``: the first network of an ensemble only, without TTA (for the shipped model 15x faster and
    2.1 points of test mIoU lower, docs/benchmarks.md); refused together with ``tta=True``.
    ``save_probabilities``: also ``<case>.npz`` with the class probabilities (nnU-Net's layout).
    ``overwrite``: replace existing files in ``out_dir`` that predict did not write (an input never).
    Multi-channel models take nnU-Net-named files (``<case>_0000``, ``_0001``...) as one case.

    Outputs keep the input file names (without nnU-Net's ``_0000`` channel suffix), shapes, affines and
    headers (data type set to uint8/int16).
    With ``overlays``, PNGs go to ``out_dir/overlays/<file name>.png``: 5 slices spread over the
    predicted structure, intensities in ``window`` (LO, HI), by default a CT plan's HU window, else the
    scan's 0.5-99.5 percentiles. Every input is checked first; in
    a folder, bad files are skipped (one warning each), the good ones segmented, and then
    `SkippedInputs` names the skipped files.

    Raises:
        DataError: the input (or every input of a folder) is missing, unreadable, not a 3D volume or
            holds NaN/inf voxels: nothing is written.
        SkippedInputs: some inputs of a folder were skipped, the others were written.
        ValueError: bad checkpoint, or ``out_dir`` is the input folder (inputs would be overwritten), a
            file, named like an image file, or holds a file of an output's name that predict did not
            write (without ``overwrite``; an input, always).
    """
    files = find_inputs(inputs)
    out = _checked_output(Path(out_dir), files)
    if engine not in ("torch", "onnxruntime"):
        raise ValueError(f"engine must be torch or onnxruntime, got {engine!r}")
    if fast and tta:
        raise ValueError("--fast runs without mirror TTA; drop --tta (or --fast)")
    _check_window(window, overlays)
    if exported is not None:  # an ONNX / TorchScript file from `emfformer export`: same pre/post-processing
        members, class_names, recommended = load_exported(exported)
    else:
        members, class_names, recommended, _ = load_members(checkpoint, resolve_device(device))
    if fast:
        log.info("fast: the first of %d network(s), without TTA", len(members))
        members, tta = members[:1], False
    if engine == "onnxruntime" and exported is None:
        members = onnx_members(members)
    tta = recommended if tta is None else tta
    good, bad = [], []
    cases = group_channels(files, members[0][1].channels)
    # never destroy (guard.py): every output is new, or a file predict wrote, and none is an input
    check_outputs(_planned_outputs(cases, out, overlays, save_probabilities), files, overwrite)
    for case in tqdm(cases, desc="check inputs", disable=not progress):  # every input, before any write
        try:
            _check_input(case, members)
            good.append(case)
        except DataError as exc:
            log.warning("skipping %s: %s", case.image, exc)
            bad.append(f"{Path(case.image).name}: {exc}")
    if not good:
        raise DataError(
            bad[0] if len(bad) == 1 else f"none of the {len(bad)} inputs can be segmented: " + "; ".join(bad)
        )
    written = _write_all(
        good, out, progress,
        lambda c: _segment(c, out, members, class_names, tta, bf16, overlays, save_probabilities, window),
    )  # fmt: skip
    if bad:
        raise SkippedInputs(
            f"{len(bad)} of {len(cases)} inputs were skipped (the other {len(written)} are in {out}): "
            + "; ".join(bad)
        )
    log.info("wrote %d label file(s) to %s", len(written), out)
    return written
