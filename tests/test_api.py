"""The notebook API: import emfformer, load the shipped model, segment a path or an array."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

import emfformer
from emfformer.data.cases import DataError
from emfformer.engine.inference import predict_volume


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
    fast = emfformer.segment(image, model, fast=True)  # the first network, without TTA
    with torch.inference_mode():
        np.testing.assert_array_equal(fast, predict_volume(model.members[:1], image, tta=False))
    with pytest.raises(ValueError, match="fast=True runs without TTA"):
        emfformer.segment(image, model, fast=True, tta=True)


def test_segment_takes_a_name_and_refuses_bad_arguments_clearly(tmp_path: Path) -> None:
    image = np.random.default_rng(1).normal(size=(20, 24, 16)).astype(np.float32)
    model = emfformer.load_pretrained("Hippocampus")  # names in any case
    reference = emfformer.segment(image, model, tta=False)
    np.testing.assert_array_equal(emfformer.segment(image, "hippocampus", tta=False), reference)
    np.testing.assert_array_equal(emfformer.segment(image[..., None], model, tta=False), reference)
    assert len(repr(model).splitlines()) == 1 and "axis 0" in repr(model)
    np.testing.assert_array_equal(emfformer.segment(image, model, tta=np.False_), reference)
    assert emfformer.create_model("emf_former_t", in_channels=np.int64(2), num_classes=3) is not None
    with pytest.raises(ValueError, match="tta must be True, False or None"):
        emfformer.segment(image, model, tta="no")
    for affine in (np.eye(3), np.zeros((4, 4)), np.full((4, 4), np.nan)):
        with pytest.raises(ValueError, match="finite, invertible 4x4"):
            emfformer.segment(image, model, affine=affine)
    with pytest.raises(TypeError, match="load_pretrained"):
        emfformer.segment(image, 3)
    with pytest.raises(ValueError, match="in_channels must be a positive int"):
        emfformer.create_model("emf_former_t", in_channels="1")


def test_segment_refuses_arguments_it_would_misread(tmp_path: Path) -> None:
    model = emfformer.load_pretrained("hippocampus")
    image = np.random.default_rng(2).normal(size=(12, 16, 10)).astype(np.float32)
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(image, np.eye(4)), path)
    cases = [
        ((image + 1j * image,), {}, DataError, "complex"),
        ((path,), {"affine": np.eye(4)}, ValueError, "affine goes only with an array"),
        ((image,), {"fast": "no"}, ValueError, "fast must be True or False"),
        ((image,), {"fast": 1}, ValueError, "fast must be True or False"),
    ]
    for args, kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            emfformer.segment(*args, model, **kwargs)


def test_load_pretrained_names_what_it_takes() -> None:
    for bad in (3, [], [3], 2.5, {"a": 1}):
        with pytest.raises(TypeError, match="shipped model name"):
            emfformer.load_pretrained(bad)


def test_dir_lists_the_lazy_public_api() -> None:
    names = dir(emfformer)
    assert {"create_model", "build_model", "list_models", "load_pretrained", "segment"} <= set(names)
    assert "Any" not in names  # the module's own imports are not API


def test_the_readme_notebook_example_writes_int16_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("## In a notebook", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    rng = np.random.default_rng(0)
    scan = nib.Nifti1Image((rng.random((36, 48, 36)) * 100).astype(np.float32), np.diag([1.0, 1.0, 1.0, 1.0]))
    nib.save(scan, tmp_path / "scan.nii.gz")
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    out = nib.load(tmp_path / "labels.nii.gz")
    assert out.get_data_dtype() == np.int16 and out.header.get_intent()[0] == "label"
    assert out.shape == scan.shape and np.array_equal(out.affine, scan.affine)
    assert out.dataobj.slope == 1.0 and set(np.unique(np.asarray(out.dataobj))) <= {0, 1, 2}
