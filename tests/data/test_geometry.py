"""Reorientation and resampling to a model's training grid, and the exact way back."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from emfformer.data.cases import Case
from emfformer.data.geometry import (
    check_orientation,
    scores_to_input_grid,
    to_model_grid,
    voxel_spacing,
)


def _one_hot(labels: np.ndarray, n: int) -> np.ndarray:
    return (labels[None] == np.arange(n)[:, None, None, None]).astype(np.float32)


@pytest.mark.parametrize("code, ok", [("RAS", "RAS"), ("lps", "LPS"), ("AIL", "AIL"), ("SPR", "SPR")])
def test_valid_orientations(code: str, ok: str) -> None:
    assert check_orientation(code) == ok


@pytest.mark.parametrize("code", ["RRS", "RA", "RASP", "XYZ", ""])
def test_invalid_orientations_are_refused(code: str) -> None:
    with pytest.raises(ValueError, match="one of L/R"):
        check_orientation(code)


def test_scan_already_on_the_grid_is_untouched() -> None:
    image = np.random.default_rng(0).normal(size=(7, 8, 9)).astype(np.float32)
    out, label, info = to_model_grid(image, np.eye(4), "RAS", (1.0, 1.0, 1.0))
    assert info.ornt is None and not info.resampled and label is None
    np.testing.assert_array_equal(out, image)
    # spacings within 1 % of the target are not interpolated
    _, _, info = to_model_grid(image, np.diag([1.005, 0.996, 1.0, 1.0]), "RAS", (1.0, 1.0, 1.0))
    assert not info.resampled


def test_lps_scan_is_flipped_to_ras_and_back_exactly() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, size=(6, 7, 5)).astype(np.int16)
    image = rng.normal(size=labels.shape).astype(np.float32)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    out, lab, info = to_model_grid(image, lps, "RAS", (1.0, 1.0, 1.0), label=labels)
    np.testing.assert_array_equal(out, image[::-1, ::-1])
    np.testing.assert_array_equal(lab, labels[::-1, ::-1])
    back = scores_to_input_grid(_one_hot(lab, 3), info)
    np.testing.assert_array_equal(back.argmax(0), labels)


def test_permuted_axes_move_their_spacing_with_them() -> None:
    # array axis 0 runs along S (2 mm), axis 1 along R (0.5 mm), axis 2 along A (1 mm)
    affine = np.zeros((4, 4))
    affine[2, 0], affine[0, 1], affine[1, 2], affine[3, 3] = 2.0, 0.5, 1.0, 1.0
    np.testing.assert_allclose(voxel_spacing(affine), [2.0, 0.5, 1.0])
    image = np.arange(4 * 10 * 6, dtype=np.float32).reshape(4, 10, 6)
    out, _, info = to_model_grid(image, affine, "RAS", None)
    np.testing.assert_array_equal(out, image.transpose(1, 2, 0))
    out, _, info = to_model_grid(image, affine, "RAS", (1.0, 1.0, 1.0))
    assert info.oriented_shape == (10, 6, 4) and info.model_shape == (5, 6, 8)
    assert scores_to_input_grid(np.zeros((2, 5, 6, 8), np.float32), info).shape == (2, 4, 10, 6)


def _sphere(shape: tuple[int, ...], spacing: float, radius_mm: float) -> np.ndarray:
    centre = [(n - 1) / 2 * spacing for n in shape]
    grid = np.meshgrid(
        *(np.arange(n) * spacing - c for n, c in zip(shape, centre, strict=True)), indexing="ij"
    )
    return (sum(g**2 for g in grid) < radius_mm**2).astype(np.int16)


def test_fine_scan_is_resampled_to_the_training_spacing_and_back() -> None:
    fine = _sphere((40, 43, 30), 0.7, 9.0)
    out, lab, info = to_model_grid(
        fine.astype(np.float32), np.diag([0.7, 0.7, 0.7, 1.0]), None, (1, 1, 1), fine
    )
    assert info.model_shape == (28, 30, 21) and out.shape == lab.shape == info.model_shape
    assert set(np.unique(lab)) == {0, 1}  # nearest-neighbour labels invent no classes
    # the object keeps its physical size: ~ 4/3 pi 9^3 mm^3 at 1 mm voxels
    assert abs(lab.sum() - 4 / 3 * np.pi * 9**3) / (4 / 3 * np.pi * 9**3) < 0.1
    back = scores_to_input_grid(_one_hot(lab, 2), info).argmax(0)
    assert back.shape == fine.shape
    dice = 2 * (back * fine).sum() / (back.sum() + fine.sum())
    assert dice > 0.95


def test_scores_of_the_wrong_shape_are_refused() -> None:
    _, _, info = to_model_grid(np.zeros((4, 4, 4), np.float32), np.eye(4), "RAS", None)
    with pytest.raises(ValueError, match="do not fit the model grid"):
        scores_to_input_grid(np.zeros((2, 4, 4, 5), np.float32), info)


def test_fingerprint_takes_the_majority_orientation_and_median_spacing(tmp_path: Path) -> None:
    from emfformer.data.fingerprint import dataset_fingerprint

    cases = []
    for i, (zooms, flip) in enumerate([((1, 1, 2), 1), ((1, 1, 3), 1), ((2, 1, 3), -1)]):
        affine = np.diag([flip * zooms[0], flip * zooms[1], zooms[2], 1.0])
        path = tmp_path / f"c{i}.nii.gz"
        nib.save(
            nib.Nifti1Image(np.random.default_rng(i).normal(size=(3, 3, 3)).astype(np.float32), affine), path
        )
        cases.append(Case(f"c{i}", path))
    fp = dataset_fingerprint(cases, ("MRI",), 2, progress=False)
    assert fp["orientation"] == "RAS" and fp["median_spacing"] == [1.0, 1.0, 3.0]


@pytest.mark.parametrize("fill", [0.0, 37.5])
def test_a_constant_border_is_cropped_and_comes_back_as_background(fill: float) -> None:
    rng = np.random.default_rng(0)
    inner = rng.normal(100, 10, (10, 12, 6)).astype(np.float32)
    field = np.full((40, 30, 6), fill, np.float32)
    field[25:35, 3:15] = inner
    label = np.zeros(field.shape, np.int16)
    label[27:30, 5:8, 2:4] = 1
    image, lab, info = to_model_grid(field, np.eye(4), "RAS", None, label, crop_border=True)
    assert info.bbox == ((25, 35), (3, 15), (0, 6)) and np.array_equal(image, inner)
    assert lab.sum() == label.sum()  # nothing labelled is cut away
    scores = np.stack([1 - lab, lab]).astype(np.float32)
    back = scores_to_input_grid(scores, info)
    assert back.shape == (2, 40, 30, 6) and np.array_equal(back.argmax(0), label)
    assert (back[0][:25] == 1).all()  # the border is background
    untouched = to_model_grid(inner, np.eye(4), "RAS", None, crop_border=True)[2]
    assert untouched.bbox is None  # corners that differ: nothing to crop


@pytest.mark.parametrize(
    ("voxel", "warned"),
    [(0.001, True), (0.05, True), (0.5, False), (1.0, False), (12.0, True)],
)
def test_a_voxel_size_far_from_the_models_is_warned_about(
    voxel: float, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    image = np.ones((6, 8, 5), np.float32)
    with caplog.at_level("WARNING"):
        to_model_grid(image, np.diag([voxel, voxel, voxel, 1.0]), "RAS", (1.0, 1.0, 1.0))
    found = [r.getMessage() for r in caplog.records if "more than 10x apart" in r.getMessage()]
    assert len(found) == int(warned), found
    assert all(f"{voxel:g} x {voxel:g}" in m for m in found)


def test_a_resampling_beyond_4_gib_is_refused_naming_both_spacings() -> None:
    from emfformer.data.cases import DataError

    image = np.ones((36, 52, 38), np.float32)  # 40 mm voxels -> 1440 x 2080 x 1520 at 1 mm: 18 GB
    with pytest.raises(
        DataError, match=r"1440 x 2080 x 1520 voxels .*40 x 40 x 40 mm, the model's 1 x 1 x 1 mm"
    ):
        to_model_grid(image, np.diag([40.0, 40.0, 40.0, 1.0]), "RAS", (1.0, 1.0, 1.0))
