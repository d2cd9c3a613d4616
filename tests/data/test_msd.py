"""MSD / nnU-Net folder reader and integrity check, on synthetic folders (and the real one if given)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from emfformer.data.cases import DataError, load_volume
from emfformer.data.msd import check_msd_dataset, read_msd_dataset


def _rewrite_label(path: Path, data: np.ndarray) -> None:
    ref = nib.load(str(path))
    nib.save(nib.Nifti1Image(data, ref.affine), str(path))


def _edit_meta(root: Path, **changes: object) -> None:
    meta = json.loads((root / "dataset.json").read_text())
    meta.update(changes)
    (root / "dataset.json").write_text(json.dumps(meta))


def test_read_synthetic(msd_root: Path) -> None:
    info = read_msd_dataset(msd_root)
    assert info.class_names == ("background", "Anterior", "Posterior")
    assert info.num_classes == 3
    assert [c.case_id for c in info.cases] == [f"hippocampus_{i:03d}" for i in range(1, 7)]
    case = info.cases[0]
    assert case.image == msd_root / "imagesTr" / "hippocampus_001.nii.gz"
    assert case.label == msd_root / "labelsTr" / "hippocampus_001.nii.gz"
    vol = load_volume(info.cases[2])  # stored as uint8, loaded as float32
    assert vol.image.dtype == np.float32 and vol.image.shape == (16, 20, 12)
    assert set(np.unique(vol.label).tolist()) == {0, 1, 2}


def test_nnunet_v2_style(msd_root: Path) -> None:
    for image in (msd_root / "imagesTr").glob("*.nii.gz"):
        image.rename(image.with_name(image.name.replace(".nii.gz", "_0000.nii.gz")))
    meta = json.loads((msd_root / "dataset.json").read_text())
    meta = {
        "channel_names": {"0": "T1"},
        "labels": {"background": 0, "anterior": 1, "posterior": 2},
        "numTraining": meta["numTraining"],
        "file_ending": ".nii.gz",
    }
    (msd_root / "dataset.json").write_text(json.dumps(meta))
    info = read_msd_dataset(msd_root)
    assert info.class_names == ("background", "anterior", "posterior")
    assert len(info.cases) == 6
    assert info.cases[0].image.name == "hippocampus_001_0000.nii.gz"


def test_missing_label(msd_root: Path) -> None:
    (msd_root / "labelsTr" / "hippocampus_003.nii.gz").unlink()
    with pytest.raises(DataError, match=r"label file missing: .*hippocampus_003\.nii\.gz"):
        read_msd_dataset(msd_root)
    assert len(read_msd_dataset(msd_root, check=False).cases) == 6


def test_shape_mismatch(msd_root: Path) -> None:
    _rewrite_label(msd_root / "labelsTr" / "hippocampus_002.nii.gz", np.zeros((16, 20, 11), np.uint8))
    with pytest.raises(DataError, match=r"hippocampus_002\.nii\.gz has shape \(16, 20, 11\)"):
        read_msd_dataset(msd_root)


def test_affine_mismatch(msd_root: Path) -> None:
    path = msd_root / "labelsTr" / "hippocampus_004.nii.gz"
    img = nib.load(str(path))
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), img.affine * 2), str(path))
    with pytest.raises(DataError, match="different affines"):
        read_msd_dataset(msd_root)


def test_bad_label_value(msd_root: Path) -> None:
    path = msd_root / "labelsTr" / "hippocampus_005.nii.gz"
    data = np.asarray(nib.load(str(path)).dataobj).copy()
    data[0, 0, 0] = 5
    _rewrite_label(path, data)
    with pytest.raises(DataError, match=r"hippocampus_005\.nii\.gz has values \[5\] outside 0\.\.2"):
        read_msd_dataset(msd_root)


def test_problems_are_collected(msd_root: Path) -> None:
    (msd_root / "labelsTr" / "hippocampus_001.nii.gz").unlink()
    (msd_root / "imagesTr" / "hippocampus_002.nii.gz").unlink()
    with pytest.raises(DataError, match=r"2 problem\(s\)") as err:
        check_msd_dataset(read_msd_dataset(msd_root, check=False), progress=False)
    assert "hippocampus_001" in str(err.value) and "hippocampus_002" in str(err.value)


def test_a_channel_count_that_differs_from_dataset_json_is_refused(msd_root: Path) -> None:
    _edit_meta(msd_root, modality={"0": "T2", "1": "ADC"})
    with pytest.raises(DataError, match=r"1 input channel\(s\) in .*dataset.json lists 2"):
        read_msd_dataset(msd_root)


@pytest.mark.parametrize(
    "labels",
    [{"0": "background", "2": "b"}, {"0": "background", "1": [1, 2]}, {}, {"background": 0, "x": "y"}],
)
def test_bad_labels(msd_root: Path, labels: dict) -> None:
    _edit_meta(msd_root, labels=labels)
    with pytest.raises(DataError, match="dataset.json"):
        read_msd_dataset(msd_root)


def test_missing_dataset_json_and_folder(msd_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_msd_dataset(tmp_path / "nope")
    with pytest.raises(DataError, match="No dataset.json"):
        read_msd_dataset(msd_root.parent)
    (msd_root / "labelsTr").rename(msd_root / "labels")
    with pytest.raises(DataError, match="labelsTr"):
        read_msd_dataset(msd_root)


def test_real_hippocampus() -> None:
    root = os.environ.get("EMFFORMER_TEST_DATA")
    if not root:
        pytest.skip("EMFFORMER_TEST_DATA is not set (point it to a Task04_Hippocampus folder)")
    info = read_msd_dataset(Path(root), check=True)
    assert len(info.cases) == 208
    assert info.num_classes == 3
    for case in (info.cases[0], info.cases[100], info.cases[-1]):
        vol = load_volume(case)
        assert vol.image.dtype == np.float32 and vol.image.ndim == 3
        assert vol.label.shape == vol.image.shape
        assert set(np.unique(vol.label).tolist()) <= {0, 1, 2}
        assert np.allclose(vol.spacing, 1.0)
