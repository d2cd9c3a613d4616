"""The nnU-Net v2 raw layout: channels, endings, imagesTs, splits_final.json, and its bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from emfformer.data.cases import DataError
from emfformer.data.msd import check_msd_dataset, read_msd_dataset
from emfformer.data.splits import select_cases
from emfformer.data.synthetic_nnunet import write_nnunet_dataset
from emfformer.engine.config import DataConfig


@pytest.fixture()
def mri2(tmp_path: Path) -> Path:
    return write_nnunet_dataset(tmp_path / "Dataset002_MRI", "mri2", n_cases=5, n_test=2, shape=(16, 16, 3))


def _meta(root: Path, **changes: object) -> None:
    meta = json.loads((root / "dataset.json").read_text())
    meta.update(changes)
    (root / "dataset.json").write_text(json.dumps(meta))


def test_channels_test_cases_and_splits_final_are_read(mri2: Path, tmp_path: Path) -> None:
    folds = [{"train": ["case_000", "case_001", "case_002"], "val": ["case_003", "case_004"]}]
    (mri2 / "splits_final.json").write_text(json.dumps(folds))
    info = read_msd_dataset(mri2)
    assert info.channel_names == ("T2", "ADC") and len(info.cases) == 5
    assert [p.name for p in info.cases[0].images] == ["case_000_0000.nii.gz", "case_000_0001.nii.gz"]
    assert [c.case_id for c in info.test_cases] == ["test_000", "test_001"] and info.test_cases[
        0
    ].label is None
    data = DataConfig(dataset="msd", data_dir=str(mri2))
    run = tmp_path / "run"
    run.mkdir()
    assert [c.case_id for c in select_cases(info, data, "val", run / "splits.json")] == [
        "case_003",
        "case_004",
    ]
    assert json.loads((run / "splits_final.json").read_text()) == folds  # written back in nnU-Net's format
    assert json.loads((run / "splits.json").read_text())["test"] == []
    with pytest.raises(DataError, match="holds no cases"):
        select_cases(info, data, "test", run / "splits.json")


@pytest.mark.parametrize(
    ("break_it", "match"),
    [
        (lambda r: _labels(r, value=7), r"values \[7\] outside 0..2 \(the labels of dataset.json\)"),
        (lambda r: (r / "imagesTr" / "case_001_0001.nii.gz").unlink(), "image file missing: .*case_001_0001"),
        (
            lambda r: shutil.copy(r / "labelsTr" / "case_000.nii.gz", r / "labelsTr" / "extra.nrrd"),
            "mixes file endings",
        ),
        (lambda r: _meta(r, file_ending=".jpg"), "file_ending '.jpg' is not one of"),
        (lambda r: _flat_case(r), "2D .* 3D"),
        (
            lambda r: (r / "splits_final.json").write_text('[{"train": ["nope"], "val": []}]'),
            "not in labelsTr",
        ),
        (
            lambda r: (r / "labelsTr" / "case_003.nii.gz").unlink(),
            r"2 image file\(s\) of .*imagesTr have no label .*case_003_0000.nii.gz, case_003_0001.nii.gz",
        ),
    ],
    ids=[
        "label-value",
        "channel-count",
        "mixed-endings",
        "bad-ending",
        "2d-and-3d",
        "stale-splits-final",
        "missing-label",
    ],  # fmt: skip
)
def test_bad_datasets_give_one_clear_error(mri2: Path, break_it, match: str) -> None:
    break_it(mri2)
    with pytest.raises(DataError, match=match):
        read_msd_dataset(mri2)


def _labels(root: Path, value: int) -> None:
    path = root / "labelsTr" / "case_002.nii.gz"
    img = nib.load(path)
    data = np.asarray(img.dataobj).copy()
    data[0, 0, 0] = value
    nib.save(nib.Nifti1Image(data, img.affine), path)


def _flat_case(root: Path) -> None:
    for name in ("imagesTr/case_004_0000", "imagesTr/case_004_0001", "labelsTr/case_004"):
        path = root / f"{name}.nii.gz"
        img = nib.load(path)
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:, :, :1], img.affine), path)


def test_a_numtraining_that_disagrees_is_a_warning(mri2: Path, caplog: pytest.LogCaptureFixture) -> None:
    _meta(mri2, numTraining=9)
    with caplog.at_level("WARNING"):
        info = read_msd_dataset(mri2)
    assert len(info.cases) == 5
    assert "says numTraining 9, but labelsTr holds 5 labelled case(s)" in caplog.text


def test_an_rgb_label_png_says_labels_are_grey_class_indices(tmp_path: Path) -> None:
    from PIL import Image

    root = write_nnunet_dataset(tmp_path / "Dataset004_Png", "png", n_cases=3, seed=0)
    label = root / "labelsTr" / "case_001.png"
    grey = np.asarray(Image.open(label))
    Image.fromarray(np.stack([grey * 255] * 3, -1).astype(np.uint8)).save(label)  # a colour mask
    with pytest.raises(DataError, match="case_001.png .* RGB\\(A\\) PNG: a label map must be a grey PNG"):
        check_msd_dataset(read_msd_dataset(root, check=False))


def test_one_channel_images_without_the_channel_suffix_are_cases(tmp_path: Path) -> None:
    # case ids that end in 4 digits, images without _0000: each image is its case's (not "unlabelled")
    root = tmp_path / "Dataset003_Plain"
    for sub in ("imagesTr", "labelsTr"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        nib.save(
            nib.Nifti1Image(rng.random((8, 8, 3)).astype(np.float32), np.eye(4)),
            root / "imagesTr" / f"case_{i:04d}.nii.gz",
        )
        nib.save(
            nib.Nifti1Image((rng.random((8, 8, 3)) > 0.5).astype(np.int16), np.eye(4)),
            root / "labelsTr" / f"case_{i:04d}.nii.gz",
        )
    meta = {
        "channel_names": {"0": "MRI"},
        "labels": {"background": 0, "fg": 1},
        "numTraining": 3,
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    info = read_msd_dataset(root)
    assert [c.case_id for c in info.cases] == ["case_0000", "case_0001", "case_0002"]
