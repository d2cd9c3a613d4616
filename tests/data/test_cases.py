"""load_volume refuses what it cannot segment faithfully, with one message naming the file."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from emfformer.data.cases import Case, DataError, is_valid_affine, load_volume


def _save(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), path)
    return path


def test_a_header_claiming_30000_cubed_voxels_is_refused_before_reading(tmp_path: Path) -> None:
    path = _save(tmp_path / "huge.nii", np.zeros((2, 2, 2), np.float32))
    raw = bytearray(path.read_bytes())
    raw[42:48] = np.array([30000, 30000, 30000], dtype="<i2").tobytes()  # dim[1..3] in the header
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"claims 30000x30000x30000 voxels .*Is the header corrupt\?") as info:
        load_volume(Case("huge", path))
    assert str(path) in str(info.value)


def test_complex_voxels_are_refused_not_truncated_to_their_real_part(tmp_path: Path) -> None:
    path = _save(
        tmp_path / "complex.nii.gz", (np.ones((4, 4, 4)) + 1j * np.ones((4, 4, 4))).astype(np.complex64)
    )
    with pytest.raises(DataError, match="complex") as info:
        load_volume(Case("c", path))
    assert "magnitude" in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_voxels_are_refused_with_their_count(tmp_path: Path, value: float) -> None:
    data = np.zeros((4, 4, 4), np.float32)
    data[0, 0, :2] = value
    path = _save(tmp_path / "bad.nii.gz", data)
    with pytest.raises(DataError, match=r"holds 2 NaN or infinite voxel\(s\)"):
        load_volume(Case("b", path))


def test_a_degenerate_affine_is_refused(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), None)
    img.header["sform_code"] = 1  # an sform whose second axis has no extent: orientation and spacing unknown
    img.header["srow_x"], img.header["srow_y"], img.header["srow_z"] = (
        [1, 0, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 1, 0],
    )
    path = tmp_path / "flat.nii.gz"
    nib.save(img, path)
    with pytest.raises(DataError, match="degenerate affine") as info:
        load_volume(Case("f", path))
    assert str(path) in str(info.value)


def test_names_in_any_case_and_mislabelled_compression_are_read_from_their_bytes(tmp_path: Path) -> None:
    data = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    reference = _save(tmp_path / "ref.nii.gz", data)
    names = {"UPPER.NII.GZ": reference.read_bytes(), "Mixed.Nii.Gz": reference.read_bytes()}
    names["plain_named_gz.nii.gz"] = _save(tmp_path / "plain.nii", data).read_bytes()  # not compressed
    names["gz_named_plain.nii"] = reference.read_bytes()  # compressed
    for name, raw in names.items():
        (tmp_path / name).write_bytes(raw)
        np.testing.assert_array_equal(load_volume(Case(name, tmp_path / name)).image, data, err_msg=name)


def test_a_trailing_singleton_axis_is_dropped_and_other_shapes_get_a_hint(tmp_path: Path) -> None:
    vol = load_volume(Case("one", _save(tmp_path / "one.nii.gz", np.ones((3, 4, 5, 1), np.float32))))
    assert vol.image.shape == (3, 4, 5)
    # a 4D file is read channels-last; whether its channels fit is the model's (predict) or dataset's check
    assert load_volume(
        Case("cine", _save(tmp_path / "cine.nii.gz", np.ones((3, 4, 5, 2), np.float32)))
    ).image.shape == (3, 4, 5, 2)
    with pytest.raises(DataError, match=r"2D slice can be saved as \(X, Y, 1\)"):
        load_volume(Case("flat", _save(tmp_path / "flat.nii.gz", np.ones((3, 4), np.float32))))


def test_a_header_without_qform_and_sform_is_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    img = nib.Nifti1Image(np.ones((3, 4, 5), np.float32), None)  # both codes 0
    nib.save(img, tmp_path / "bare.nii.gz")
    for _ in range(2):
        load_volume(Case("bare", tmp_path / "bare.nii.gz"))
    warned = [r for r in caplog.records if "neither a qform nor an sform" in r.getMessage()]
    assert len(warned) == 1 and "bare.nii.gz" in warned[0].getMessage()
    load_volume(Case("ok", _save(tmp_path / "ok.nii.gz", np.ones((3, 4, 5), np.float32))))
    assert len([r for r in caplog.records if "neither a qform" in r.getMessage()]) == 1


@pytest.mark.parametrize(
    ("affine", "valid"),
    [
        (np.eye(4), True),
        (np.diag([1e-4, 1e-4, 1e-4, 1.0]), True),  # microscopy-size voxels: tiny, not degenerate
        (np.diag([0.7, 0.7, 3.0, 1.0])[[1, 0, 2, 3]], True),  # axes swapped
        (np.diag([1.0, 1.0, 0.0, 1.0]), False),  # a collapsed axis
        (np.diag([1.0, 1.0, 1e-9, 1.0]), False),  # numerically collapsed next to the others
        (np.full((4, 4), np.nan), False),
        (np.eye(3), False),
    ],
    ids=["identity", "1e-4-mm", "swapped", "zero-axis", "collapsed", "nan", "3x3"],
)
def test_valid_affine_is_scale_free(affine: np.ndarray, valid: bool) -> None:
    assert is_valid_affine(affine) is valid
