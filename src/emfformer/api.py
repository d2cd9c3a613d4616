"""The Python API for notebooks: build a model, load the pretrained one, segment a scan.

>>> import emfformer
>>> model = emfformer.load_pretrained("hippocampus")        # the shipped model (3 fused members)
>>> labels = emfformer.segment("hippocampus_001.nii.gz", model)  # int16 labels on the scan's grid
>>> net = emfformer.create_model("emf_former_s", in_channels=1, num_classes=4)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data.cases import Case, DataError, load_volume, nifti_stem
from .engine.checkpoint import load_members
from .engine.inference import Member, predict_volume, resolve_device

__all__ = ["Pretrained", "load_pretrained", "segment"]


@dataclass
class Pretrained:
    """A loaded checkpoint: its models with their preprocessing, class names and TTA recommendation."""

    members: list[Member]
    class_names: list[str]
    tta: bool


def load_pretrained(name_or_path: str | Path = "hippocampus", device: str = "cpu") -> Pretrained:
    """Load a shipped model by name (``"hippocampus"``), a run's ``best.pt`` or a packed ensemble.

    Example:
        >>> model = load_pretrained("hippocampus")
        >>> model.class_names
        ['background', 'Anterior', 'Posterior']
    """
    members, class_names, tta, _ = load_members(name_or_path, resolve_device(device))
    return Pretrained(members, class_names, tta)


def segment(
    image: str | Path | np.ndarray,
    model: Pretrained | None = None,
    tta: bool | None = None,
    affine: np.ndarray | None = None,
) -> np.ndarray:
    """Segment a 3D scan: a NIfTI path or an (X, Y, Z) array -> int16 labels (X, Y, Z) on its grid.

    ``model`` defaults to the shipped Hippocampus model; ``tta`` to what the model recommends. A file
    is reoriented and resampled to the model's training grid and the labels come back on the file's
    grid. An array is taken as it is (already on the training grid) unless its 4x4 ``affine`` is given.

    Example:
        >>> labels = segment(np.random.rand(36, 50, 35).astype("float32"))
        >>> labels.shape
        (36, 50, 35)
    """
    model = model or load_pretrained()
    if isinstance(image, str | Path):
        vol = load_volume(Case(nifti_stem(Path(image).name), Path(image)))
        image, affine = vol.image, vol.affine
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or not np.isfinite(image).all():
        raise DataError(f"segment needs a finite 3D array (X, Y, Z); got shape {image.shape}")
    with torch.inference_mode():
        return predict_volume(model.members, image, tta=model.tta if tta is None else tta, affine=affine)
