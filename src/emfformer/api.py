"""The Python API for notebooks: build a model, load the pretrained one, segment a scan.

>>> import emfformer
>>> model = emfformer.load_pretrained("hippocampus")        # the shipped model (3 fused members)
>>> labels = emfformer.segment("hippocampus_001.nii.gz", model)  # int16 labels on the scan's grid
>>> net = emfformer.create_model("emf_former_s", in_channels=1, num_classes=4)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data.cases import Case, DataError, is_valid_affine, load_volume, nifti_stem
from .engine.checkpoint import load_members
from .engine.inference import Member, predict_volume, resolve_device

__all__ = ["Pretrained", "load_pretrained", "segment"]


@dataclass
class Pretrained:
    """A loaded checkpoint: its models with their preprocessing, class names and TTA recommendation."""

    members: list[Member]
    class_names: list[str]
    tta: bool

    def __repr__(self) -> str:  # the networks themselves would print hundreds of lines in a notebook
        nets = ", ".join(
            f"{type(m).__name__}(axis {pre.slice_axis}, {pre.size}x{pre.size})" for m, pre in self.members
        )
        return f"Pretrained(members=[{nets}], class_names={self.class_names}, tta={self.tta})"


def load_pretrained(name_or_path: str | Path = "hippocampus", device: str = "cpu") -> Pretrained:
    """Load a shipped model by name (``"hippocampus"``), a run's ``best.pt`` or a packed ensemble.

    Example:
        >>> model = load_pretrained("hippocampus")
        >>> model.class_names
        ['background', 'Anterior', 'Posterior']
    """
    names = name_or_path if isinstance(name_or_path, list | tuple) else [name_or_path]
    if not names or not all(n is None or isinstance(n, str | os.PathLike) for n in names):
        raise TypeError(
            "load_pretrained takes a shipped model name (e.g. 'hippocampus'), a checkpoint path (a run's "
            f"best.pt or a packed ensemble) or a list of them, got {type(name_or_path).__name__} "
            f"{name_or_path!r}"
        )
    members, class_names, tta, _ = load_members(name_or_path, resolve_device(device))
    return Pretrained(members, class_names, tta)


def _checked_affine(affine: np.ndarray) -> np.ndarray:
    a = np.asarray(affine, dtype=np.float64)
    if not is_valid_affine(a):  # the rule load_volume applies to file headers
        raise ValueError(
            f"affine must be a finite, invertible 4x4 voxel-to-world matrix (e.g. nibabel's img.affine), got "
            f"shape {a.shape}" + ("" if a.shape != (4, 4) else " with a singular or non-finite 3x3 part")
        )
    return a


def _check_arguments(image: object, tta: object, affine: object, fast: object) -> None:
    """Refuse what segment would otherwise misread: a non-bool ``tta`` / ``fast``, a complex array,
    an ``affine`` given with a file (the file's header holds its own)."""
    if tta is not None and not isinstance(tta, bool | np.bool_):
        raise ValueError(f"tta must be True, False or None (the model's recommendation), got {tta!r}")
    if not isinstance(fast, bool | np.bool_):
        raise ValueError(f"fast must be True or False, got {fast!r}")
    if fast and tta:
        raise ValueError("fast=True runs without TTA; leave tta unset")
    if isinstance(image, str | Path):
        if affine is not None:
            raise ValueError(
                f"affine goes only with an array: {image} is a file, whose header gives its own "
                "voxel-to-world matrix; drop affine= or pass the voxels as an array"
            )
    elif np.iscomplexobj(image):
        raise DataError(
            "segment needs real intensities; this array is complex (e.g. raw k-space or a complex MR "
            "reconstruction): pass its magnitude, np.abs(image)"
        )


def segment(
    image: str | Path | np.ndarray,
    model: Pretrained | str | Path | None = None,
    tta: bool | None = None,
    affine: np.ndarray | None = None,
    fast: bool = False,
) -> np.ndarray:
    """Segment a 3D scan: a file path or an (X, Y, Z) array ((X, Y, Z, C) for a C-channel model) -> int16
    labels (X, Y, Z) on its grid.

    ``model``: from :func:`load_pretrained`, or a name / path it takes; default the shipped
    Hippocampus model. ``tta``: ``None`` = what the model recommends. ``fast``: the first network of
    an ensemble without TTA, as ``emfformer predict --fast`` (shipped model: ~15x faster, 2 points of
    test mIoU less). A file
    is reoriented and resampled to the model's training grid and the labels come back on the file's
    grid. An array is taken as it is (already on the training grid) unless its 4x4 ``affine`` is given.

    Example:
        >>> labels = segment(np.random.rand(36, 50, 35).astype("float32"))
        >>> labels.shape
        (36, 50, 35)
    """
    if model is None or isinstance(model, str | Path):
        model = load_pretrained("hippocampus" if model is None else model)
    if not isinstance(model, Pretrained):
        raise TypeError(
            f"model must come from load_pretrained() (or be a name or path), got {type(model).__name__}"
        )
    _check_arguments(image, tta, affine, fast)
    tta = None if tta is None else bool(tta)
    if isinstance(image, str | Path):
        vol = load_volume(Case(nifti_stem(Path(image).name), Path(image)))
        image, affine = vol.image, vol.affine
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 4 and image.shape[3] == 1:  # (X, Y, Z, 1): one channel / time point
        image = image[..., 0]
    channels = model.members[0][1].channels
    want = "3D array (X, Y, Z)" if channels == 1 else f"array (X, Y, Z, {channels})"
    if image.ndim not in (3, 4) or image.shape[3:] != (() if channels == 1 else (channels,)):
        raise DataError(f"segment needs a finite {want} for this model; got shape {image.shape}")
    if not np.isfinite(image).all():
        raise DataError(f"segment needs a finite {want}; this one holds NaN or infinite values")
    if affine is not None:
        affine = _checked_affine(affine)
    members = model.members[:1] if fast else model.members
    tta = False if fast else (model.tta if tta is None else tta)
    with torch.inference_mode():
        return predict_volume(members, image, tta=tta, affine=affine, warn=True)
