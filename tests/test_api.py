"""The notebook API: import emfformer, load the shipped model, segment a path or an array."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import emfformer
from emfformer.data.cases import DataError


def test_top_level_entry_points() -> None:
    assert emfformer.__version__
    net = emfformer.create_model("emf_former_t", in_channels=1, num_classes=3)
    assert sum(p.numel() for p in net.parameters()) > 0
    with pytest.raises(AttributeError):
        emfformer.no_such_thing  # noqa: B018


def test_segment_an_array_and_a_file_with_the_shipped_model(tmp_path: Path) -> None:
    model = emfformer.load_pretrained("hippocampus")
    assert model.class_names == ["background", "Anterior", "Posterior"]
    image = np.random.default_rng(0).normal(size=(30, 44, 32)).astype(np.float32)
    labels = emfformer.segment(image, model, tta=False)
    assert labels.shape == image.shape and labels.dtype == np.int16
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(image, np.eye(4)), path)
    np.testing.assert_array_equal(emfformer.segment(path, model, tta=False), labels)
    with pytest.raises(DataError, match="finite 3D"):
        emfformer.segment(np.zeros((4, 4)), model)
