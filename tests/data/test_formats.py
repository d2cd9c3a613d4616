"""NRRD and MetaImage scans read like NIfTI (voxels and world geometry) and labels go back in their format."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from emfformer.data.cases import Case, DataError, load_volume
from emfformer.data.formats import read_png, write_itk_labels, write_png_labels


def _scan(rng: np.random.Generator) -> sitk.Image:
    img = sitk.GetImageFromArray(rng.normal(size=(7, 9, 11)).astype(np.float32))  # (z, y, x) = 11 x 9 x 7
    img.SetSpacing((0.7, 1.2, 2.5))
    img.SetOrigin((10.0, -20.0, 5.0))
    angle = np.deg2rad(20)
    img.SetDirection((np.cos(angle), -np.sin(angle), 0, np.sin(angle), np.cos(angle), 0, 0, 0, -1))
    return img


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".NRRD", ".MHA"])
def test_itk_formats_read_like_the_same_scan_in_nifti(suffix: str, tmp_path: Path) -> None:
    img = _scan(np.random.default_rng(0))
    sitk.WriteImage(img, str(tmp_path / f"written{suffix.lower()}"))
    (tmp_path / f"written{suffix.lower()}").rename(tmp_path / f"scan{suffix}")  # ITK writes lower case only
    sitk.WriteImage(img, str(tmp_path / "scan.nii.gz"))  # ITK's own NIfTI writer: the reference geometry
    got = load_volume(Case("scan", tmp_path / f"scan{suffix}"))
    ref = nib.load(tmp_path / "scan.nii.gz")
    np.testing.assert_array_equal(got.image, np.asarray(ref.dataobj, dtype=np.float32))
    np.testing.assert_allclose(got.affine, ref.affine, atol=1e-5)
    np.testing.assert_allclose(got.spacing, (0.7, 1.2, 2.5), atol=1e-6)


def test_labels_are_written_back_with_the_input_geometry(tmp_path: Path) -> None:
    img = _scan(np.random.default_rng(1))
    sitk.WriteImage(img, str(tmp_path / "scan.nrrd"))
    labels = np.random.default_rng(2).integers(0, 3, size=(11, 9, 7)).astype(np.uint8)  # (x, y, z)
    write_itk_labels(labels, tmp_path / "scan.nrrd", tmp_path / "labels.nrrd")
    out = sitk.ReadImage(str(tmp_path / "labels.nrrd"))
    assert out.GetSize() == img.GetSize() and out.GetSpacing() == img.GetSpacing()
    np.testing.assert_allclose(out.GetOrigin(), img.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(out.GetDirection(), img.GetDirection(), atol=1e-9)  # NRRD text: last digit
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out).transpose(2, 1, 0), labels)


@pytest.mark.parametrize(
    "image, match",
    [
        (sitk.Image(8, 8, sitk.sitkFloat32), "2 dimensions"),
    ],
)
def test_non_volumes_are_refused_naming_the_file(image: sitk.Image, match: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.mha"
    sitk.WriteImage(image, str(path))
    with pytest.raises(DataError, match=match) as info:
        load_volume(Case("bad", path))
    assert str(path) in str(info.value)


def test_a_vector_image_is_read_as_channels(tmp_path: Path) -> None:
    path = tmp_path / "vec.mha"
    sitk.WriteImage(sitk.Image([4, 5, 6], sitk.sitkVectorFloat32, 3), str(path))
    assert load_volume(Case("vec", path)).image.shape == (4, 5, 6, 3)


def test_an_rgb_png_is_a_one_slice_three_channel_case(tmp_path: Path) -> None:
    from PIL import Image

    rgb = np.zeros((7, 9, 3), np.uint8)
    rgb[2, 3] = (10, 20, 30)
    Image.fromarray(rgb).save(tmp_path / "x_0000.png")
    Image.fromarray(np.eye(7, 9, dtype=np.uint8)).save(tmp_path / "x.png")
    vol = load_volume(Case("x", tmp_path / "x_0000.png", tmp_path / "x.png"))
    assert vol.image.shape == (7, 9, 1, 3) and vol.image[2, 3, 0].tolist() == [10, 20, 30]
    assert vol.label.shape == (7, 9, 1) and vol.label[:, :, 0].tolist() == np.eye(7, 9).tolist()
    write_png_labels(vol.label.astype(np.uint8), tmp_path / "out.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), np.eye(7, 9, dtype=np.uint8))


@pytest.mark.parametrize("mode", ["1", "L", "I;16"])
def test_grey_pngs_of_any_bit_depth_are_label_maps(tmp_path: Path, mode: str) -> None:
    from PIL import Image

    mask = np.eye(7, 9, dtype=np.uint8)
    image = Image.fromarray(mask * 255).convert("1") if mode == "1" else Image.fromarray(mask).convert(mode)
    image.save(tmp_path / "m.png")
    data = np.asarray(read_png(tmp_path / "m.png").dataobj)  # a 1-bit mask: 0 / 1, not bools
    assert data.shape == (7, 9, 1) and data[:, :, 0].tolist() == mask.tolist(), mode


def test_a_corrupt_nrrd_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.nrrd"
    path.write_bytes(b"NRRD0004\ntype: float\ndimension: 3\nsizes: 10 10 10\nencoding: raw\n\n" + b"\0" * 100)
    with pytest.raises(DataError, match="Cannot read image file .*broken.nrrd"):
        load_volume(Case("broken", path))


@pytest.mark.parametrize("dtype", [np.int64, np.uint64, np.int32])
def test_a_64_bit_integer_mha_reads_like_any_other(dtype: type, tmp_path: Path) -> None:
    voxels = np.arange(4 * 5 * 6).reshape(6, 5, 4).astype(dtype)  # (z, y, x)
    sitk.WriteImage(sitk.GetImageFromArray(voxels), str(tmp_path / "scan.mha"))
    vol = load_volume(Case("scan", tmp_path / "scan.mha"))
    assert vol.image.dtype == np.float32
    np.testing.assert_array_equal(vol.image, voxels.transpose(2, 1, 0).astype(np.float32))


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("broken.nrrd", b"NRRD0004\ntype: float\ndimension: 3\nsizes: 4 4 4\nencoding: raw\n\nxx", "endian"),
        (
            "short.mha",
            b"ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_FLOAT\n"
            b"ElementDataFile = LOCAL\nxx",
            "File cannot be read",
        ),
        ("junk.mha", b"garbage", "File cannot be read"),
    ],
)
def test_an_itk_read_error_is_one_line(
    name: str, content: bytes, reason: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=reason) as info:
        load_volume(Case("bad", path))
    message = str(info.value)
    assert "\n" not in message and "cxx" not in message and "0x" not in message, message
    assert str(path) in message
    assert capfd.readouterr().err == ""  # ITK's own lines are held back, not printed beside the error
