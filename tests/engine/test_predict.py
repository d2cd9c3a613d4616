"""run_prediction: label files keep the input geometry; bad inputs are skipped or refused, never half-written."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from emfformer.data.cases import Case, DataError, load_volume
from emfformer.engine.checkpoint import load_checkpoint, model_from_checkpoint
from emfformer.engine.inference import predict_volume
from emfformer.engine.predict import SkippedInputs, find_inputs, run_prediction


def _affine(
    zooms: tuple[float, float, float], angles_deg: tuple[float, float, float], shift: tuple
) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = Rotation.from_euler("zxy", angles_deg, degrees=True).as_matrix() @ np.diag(zooms)
    affine[:3, 3] = shift
    return affine


def _phantom(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Noise plus a bright ellipsoid, so the network has something to segment."""
    grid = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    blob = sum(g**2 for g in grid) < 0.4
    return (60 + 80 * blob + rng.normal(0, 8, shape)).astype(np.float32)


def _write(
    path: Path,
    data: np.ndarray,
    affine: np.ndarray,
    qform_code: int,
    sform_code: int,
    dtype: type | None = None,
) -> None:
    img = nib.Nifti1Image(data, None)
    img.set_qform(affine, code=qform_code)
    img.set_sform(affine, code=sform_code)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, path)
    if dtype == np.int16:  # store int16 scaled by scl_slope/scl_inter (header offsets 112, 116)
        raw = bytearray(path.read_bytes())
        raw[112:120] = np.array([0.5, 10.0], dtype="<f4").tobytes()
        path.write_bytes(bytes(raw))


# name -> (shape, zooms, rotation angles, shift, qform code, sform code, dtype)
GEOMETRIES = {
    # anisotropic, rotated and shifted; scanner qform + aligned sform
    "rotated.nii.gz": ((17, 23, 5), (0.7, 1.3, 3.0), (30, 10, 0), (-12.5, 40.2, 7.0), 1, 2, np.float32),
    # larger than the 32 x 32 model input in-plane (cropped in pad mode), uncompressed, qform only
    "big.nii": ((45, 38, 6), (1.1, 0.9, 2.5), (-15, 0, 5), (100.0, -3.0, 0.5), 1, 0, np.int16),
    # thin, flipped axes, sform only; dots in the name
    "odd.case.v2.nii.gz": ((9, 41, 3), (-1.0, 1.7, -4.0), (0, 0, 90), (0.0, 0.0, -60.0), 0, 4, np.float64),
}


@pytest.fixture
def geometry_inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "inputs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, (shape, zooms, angles, shift, qcode, scode, dtype) in GEOMETRIES.items():
        data = _phantom(shape, rng).astype(dtype)
        _write(folder / name, data, _affine(zooms, angles, shift), qcode, scode, dtype)
    scaled = nib.load(folder / "big.nii").dataobj
    assert (scaled.slope, scaled.inter) == (0.5, 10.0)
    return folder


@pytest.fixture(params=["pad", "resize"])
def checkpoint(request: pytest.FixtureRequest) -> Path:
    run = request.getfixturevalue("trained_run" if request.param == "pad" else "resize_run")
    assert load_checkpoint(run / "best.pt")["preprocess"]["mode"] == request.param
    return run / "best.pt"


def test_prediction_keeps_names_shape_and_geometry(
    geometry_inputs: Path, checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "labels"
    written = run_prediction(geometry_inputs, out, checkpoint, device="cpu", progress=False)

    assert sorted(p.name for p in written) == sorted(GEOMETRIES)
    assert sorted(p.name for p in out.iterdir()) == sorted(GEOMETRIES)
    state = load_checkpoint(checkpoint)
    model, preprocess = model_from_checkpoint(state)
    for name, (shape, *_rest) in GEOMETRIES.items():
        src, dst = nib.load(geometry_inputs / name), nib.load(out / name)
        assert dst.shape == src.shape == shape, name
        assert np.allclose(dst.affine, src.affine, atol=1e-5), name
        assert int(dst.header["qform_code"]) == int(src.header["qform_code"]), name
        assert int(dst.header["sform_code"]) == int(src.header["sform_code"]), name
        assert np.allclose(dst.header.get_qform(), src.header.get_qform(), atol=1e-5), name
        assert np.allclose(dst.header.get_sform(), src.header.get_sform(), atol=1e-5), name
        assert np.allclose(dst.header.get_zooms(), src.header.get_zooms()), name
        assert dst.header.get_xyzt_units() == src.header.get_xyzt_units()
        assert np.issubdtype(dst.get_data_dtype(), np.integer), name
        labels = np.asarray(dst.dataobj)
        assert np.issubdtype(labels.dtype, np.integer), "labels must not be scaled by slope/intercept"
        assert set(np.unique(labels).tolist()) <= {0, 1, 2}, name
        # exactly what the model gives for this volume moved to its training grid and back
        vol = load_volume(Case("x", geometry_inputs / name))
        expected = predict_volume(model, vol.image, preprocess, affine=vol.affine)
        np.testing.assert_array_equal(labels, expected)


def test_single_file_and_overlays(geometry_inputs: Path, trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "labels"
    written = run_prediction(
        geometry_inputs / "rotated.nii.gz", out, trained_run / "best.pt", overlays=True, progress=False
    )
    assert written == [out / "rotated.nii.gz"]
    png = out / "overlays" / "rotated.nii.gz.png"
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in out.iterdir()) == ["overlays", "rotated.nii.gz"]


def test_folder_input_with_two_files(msd_phantom: Path, trained_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "two"
    folder.mkdir()
    names = ["hippocampus_001.nii.gz", "hippocampus_003.nii.gz"]  # uint8 and float32 images
    for name in names:
        shutil.copy(msd_phantom / "imagesTr" / name, folder / name)
    (folder / "README.txt").write_text("not an image; ignored in a folder")
    out = tmp_path / "labels"
    written = run_prediction(folder, out, trained_run / "best.pt", progress=False)
    assert [p.name for p in written] == names
    for name in names:
        src, dst = nib.load(folder / name), nib.load(out / name)
        assert dst.shape == src.shape and np.allclose(dst.affine, src.affine)
        assert set(np.unique(np.asarray(dst.dataobj)).tolist()) <= {0, 1, 2}


def test_find_inputs_sorts_and_filters(tmp_path: Path) -> None:
    for name in ("b.nii", "a.nii.gz", "c.txt", "d.nii.gz.bak", "._a.nii.gz"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.nii.gz").mkdir()
    assert [p.name for p in find_inputs(tmp_path)] == ["a.nii.gz", "b.nii"]


# ----------------------------------------------------------------------------------------------
# Bad input: a DataError / ValueError and no output at all
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def good_file(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    path = folder / "good.nii.gz"
    _write(path, _phantom((20, 20, 4), np.random.default_rng(1)), np.eye(4), 1, 1)
    return path


def _bad_4d(folder: Path) -> Path:
    path = folder / "cine.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4, 3), np.float32), np.eye(4)), path)
    return path


def _bad_corrupt(folder: Path) -> Path:
    path = folder / "broken.nii.gz"
    path.write_bytes(b"\x1f\x8b this is not a gzip stream")
    return path


def _bad_2d(folder: Path) -> Path:
    path = folder / "flat.nii"
    nib.save(nib.Nifti1Image(np.zeros((8, 8), np.float32), np.eye(4)), path)
    return path


def _bad_nan(folder: Path) -> Path:
    path = folder / "holes.nii.gz"
    data = np.ones((8, 8, 4), np.float32)
    data[2, 3, 1] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path


def _bad_truncated(folder: Path) -> Path:
    path = folder / "cut.nii.gz"
    nib.save(
        nib.Nifti1Image(np.random.default_rng(0).normal(size=(30, 30, 30)).astype(np.float32), np.eye(4)),
        path,
    )
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _bad_rgb(folder: Path) -> Path:
    path = folder / "colour.nii"
    rgb = np.zeros((8, 8, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), path)
    return path


BAD_FILES = [
    (_bad_4d, "single-channel 3D volume"),
    (_bad_corrupt, "Cannot read image file"),
    (_bad_2d, "3D volume"),
    (_bad_nan, "NaN or infinite"),
    (_bad_truncated, "Is the file complete"),
    (_bad_rgb, "RGB"),
]


@pytest.mark.parametrize(("make_bad", "match"), BAD_FILES, ids=lambda v: getattr(v, "__name__", v))
def test_a_bad_file_in_a_folder_is_skipped_and_the_rest_segmented(
    good_file: Path, trained_run: Path, tmp_path: Path, make_bad, match: str
) -> None:
    bad = make_bad(good_file.parent)
    out = tmp_path / "labels"
    with pytest.raises(SkippedInputs, match=f"1 of 2 inputs were skipped.*{bad.name}: .*{match}"):
        run_prediction(good_file.parent, out, trained_run / "best.pt", progress=False)
    assert sorted(p.name for p in out.iterdir()) == [good_file.name], "only the good scan, no partial file"


@pytest.mark.parametrize(("make_bad", "match"), BAD_FILES, ids=lambda v: getattr(v, "__name__", v))
def test_a_bad_single_file_writes_nothing(trained_run: Path, tmp_path: Path, make_bad, match: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    bad = make_bad(folder)
    out = tmp_path / "labels"
    with pytest.raises(DataError, match=match) as exc:
        run_prediction(bad, out, trained_run / "best.pt", progress=False)
    assert str(bad) in str(exc.value) or bad.name in str(exc.value)
    assert not out.exists(), f"partial output: {list(out.rglob('*'))}"


def test_bad_paths_raise_data_error(good_file: Path, trained_run: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "labels"
    cases = [
        (text, "not an image file"),
        (tmp_path / "missing.nii.gz", "does not exist"),
        (empty, "No image files"),
    ]
    for inputs, match in cases:
        with pytest.raises(DataError, match=match):
            run_prediction(inputs, out, trained_run / "best.pt", progress=False)
    assert not out.exists()


def test_output_folder_equal_to_input_folder_is_refused(
    good_file: Path, trained_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = good_file.parent
    before = good_file.read_bytes()
    for inputs, out in ((folder, folder), (good_file, folder / "sub" / "..")):
        with pytest.raises(ValueError, match="holds the inputs"):
            run_prediction(inputs, out, trained_run / "best.pt", progress=False)
    monkeypatch.chdir(folder.parent)
    with pytest.raises(ValueError, match="holds the inputs"):
        run_prediction(Path("in") / "good.nii.gz", Path("in"), trained_run / "best.pt", progress=False)
    assert sorted(p.name for p in folder.iterdir()) == ["good.nii.gz"]
    assert good_file.read_bytes() == before


def test_an_output_that_is_a_file_or_named_like_one_is_refused(
    good_file: Path, trained_run: Path, tmp_path: Path
) -> None:
    (tmp_path / "taken").write_text("mine")
    for out, match in (
        (tmp_path / "taken", "is a file"),
        (tmp_path / "label.nii.gz", "looks like a file name"),
    ):
        with pytest.raises(ValueError, match=match):
            run_prediction(good_file, out, trained_run / "best.pt", progress=False)
    assert (tmp_path / "taken").read_text() == "mine" and not (tmp_path / "label.nii.gz").exists()


def test_upper_and_mixed_case_file_names_are_segmented_under_their_own_names(
    good_file: Path, trained_run: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    for name in ("A.NII.GZ", "b.Nii.gz", "c.nii.gz"):
        (folder / name).write_bytes(good_file.read_bytes())
    written = run_prediction(folder, tmp_path / "out", trained_run / "best.pt", progress=False)
    assert sorted(p.name for p in written) == ["A.NII.GZ", "b.Nii.gz", "c.nii.gz"]
    assert (tmp_path / "out" / "A.NII.GZ").read_bytes()[:2] == b"\x1f\x8b"  # gzip, as the name says
    labels = [np.asarray(load_volume(Case(p.name, p)).image) for p in written]
    assert all((x == labels[0]).all() for x in labels)


def test_bad_checkpoint_raises_value_error(good_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "labels"
    with pytest.raises(ValueError, match="Checkpoint not found"):
        run_prediction(good_file, out, tmp_path / "none.pt", progress=False)
    assert not out.exists()


def test_nrrd_and_mha_scans_get_labels_in_their_own_format(trained_run: Path, tmp_path: Path) -> None:
    import SimpleITK as sitk

    scans = tmp_path / "scans"
    scans.mkdir()
    img = sitk.GetImageFromArray(_phantom((12, 28, 24), np.random.default_rng(3)))  # (z, y, x)
    img.SetSpacing((1.0, 1.0, 1.5))
    img.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
    for name in ("a.nrrd", "b.mha", "c.nii.gz"):  # the same scan in three formats
        sitk.WriteImage(img, str(scans / name))
    written = run_prediction(scans, tmp_path / "labels", trained_run / "best.pt", progress=False)
    assert [p.name for p in written] == ["a.nrrd", "b.mha", "c.nii.gz"]
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(written[2])))
    for path in written[:2]:
        out = sitk.ReadImage(str(path))
        assert out.GetSize() == img.GetSize() and out.GetSpacing() == img.GetSpacing()
        np.testing.assert_allclose(out.GetDirection(), img.GetDirection())
        np.testing.assert_array_equal(sitk.GetArrayFromImage(out), reference)


def test_x_nii_and_x_nii_gz_in_one_folder_keep_separate_outputs(trained_run: Path, tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    rng = np.random.default_rng(4)
    nib.save(nib.Nifti1Image(_phantom((24, 28, 6), rng), np.eye(4)), scans / "x.nii")
    nib.save(nib.Nifti1Image(_phantom((20, 26, 5), rng), np.eye(4)), scans / "x.nii.gz")
    out = tmp_path / "labels"
    written = run_prediction(scans, out, trained_run / "best.pt", overlays=True, progress=False)
    assert sorted(p.name for p in written) == ["x.nii", "x.nii.gz"]
    assert nib.load(out / "x.nii").shape == (24, 28, 6) and nib.load(out / "x.nii.gz").shape == (20, 26, 5)
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["x.nii.gz.png", "x.nii.png"]


def test_onnxruntime_engine_writes_the_same_labels(
    trained_run: Path, geometry_inputs: Path, tmp_path: Path
) -> None:
    torch_out = run_prediction(geometry_inputs, tmp_path / "torch", trained_run / "best.pt", progress=False)
    ort_out = run_prediction(
        geometry_inputs, tmp_path / "ort", trained_run / "best.pt", progress=False, engine="onnxruntime"
    )
    for a, b in zip(torch_out, ort_out, strict=True):
        np.testing.assert_array_equal(np.asarray(nib.load(a).dataobj), np.asarray(nib.load(b).dataobj))
    with pytest.raises(ValueError, match="engine must be torch or onnxruntime"):
        run_prediction(geometry_inputs, tmp_path / "x", trained_run / "best.pt", progress=False, engine="tvm")


def test_fast_runs_the_first_network_without_tta(good_file: Path, tmp_path: Path) -> None:
    from emfformer.engine.checkpoint import load_members

    (written,) = run_prediction(good_file, tmp_path / "fast", "hippocampus", progress=False, fast=True)
    members, _, recommended_tta, _ = load_members("hippocampus")
    assert len(members) == 3 and recommended_tta  # the shipped model: 3 networks + TTA by default
    vol = load_volume(Case("good", good_file))
    expected = predict_volume(members[:1], vol.image, tta=False, affine=vol.affine)
    np.testing.assert_array_equal(np.asarray(nib.load(written).dataobj), expected)
    with pytest.raises(ValueError, match="--fast runs without mirror TTA"):
        run_prediction(good_file, tmp_path / "x", "hippocampus", progress=False, fast=True, tta=True)
    assert not (tmp_path / "x").exists()


def test_multi_channel_inputs_need_exactly_the_model_channel_suffixes(tmp_path: Path) -> None:
    from emfformer.engine.predict import group_channels

    files = [tmp_path / n for n in ("a_0000.nii.gz", "a_0001.nii.gz", "b_0000.nii.gz", "b_0002.nii.gz")]
    with pytest.raises(
        DataError,
        match=r"case b: files b_0000.nii.gz, b_0002.nii.gz; a 2-channel model needs b_0000 .. b_0001",
    ):
        group_channels(files, 2)
    cases = group_channels(files[:2], 2)
    assert [(c.case_id, c.image.name, [p.name for p in c.channels]) for c in cases] == [
        ("a", "a_0000.nii.gz", ["a_0001.nii.gz"])
    ]
    rgb = group_channels([tmp_path / "x_0000.png"], 3)  # one RGB file holds the 3 channels
    assert [c.case_id for c in rgb] == ["x"] and rgb[0].channels == ()


def test_channel_files_for_a_one_channel_model_are_refused(tmp_path: Path) -> None:
    from emfformer.engine.predict import group_channels

    files = [tmp_path / n for n in ("la_1_0000.nii.gz", "la_1_0001.nii.gz")]
    with pytest.raises(
        DataError, match=r"la_1_0001.nii.gz is channel 1 of case la_1 .* model takes 1 channel"
    ):
        group_channels(files, 1)
    assert [c.case_id for c in group_channels([tmp_path / "scan_2019.nii.gz"], 1)] == ["scan_2019"]
