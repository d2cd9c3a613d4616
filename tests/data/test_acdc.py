"""ACDC reader on phantoms written in the official layout, and the published patient split."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from emfformer.data.acdc import (
    ACDC_CLASS_NAMES,
    acdc_patient_id,
    acdc_split,
    load_acdc_split,
    read_acdc,
    read_info_cfg,
)
from emfformer.data.cases import DataError, load_volume
from emfformer.data.synthetic import write_acdc_phantoms

BLOCKS = {
    "DCM": range(1, 21),
    "HCM": range(21, 41),
    "MINF": range(41, 61),
    "NOR": range(61, 81),
    "RV": range(81, 101),
}


def test_read_training(acdc_root: Path) -> None:
    info = read_acdc(acdc_root)
    assert info.name == "ACDC" and info.class_names == ACDC_CLASS_NAMES
    assert len(info.cases) == 10  # 5 patients x (ED, ES)
    assert [c.group for c in info.cases[::2]] == ["DCM", "HCM", "MINF", "NOR", "RV"]
    for case in info.cases:
        cfg = read_info_cfg(case.image.parent / "Info.cfg")
        frames = {f"frame{int(cfg['ED']):02d}", f"frame{int(cfg['ES']):02d}"}
        assert case.case_id.split("_")[1] in frames
        assert case.label is not None and case.label.name == f"{case.case_id}_gt.nii.gz"


def test_volumes(acdc_root: Path) -> None:
    info = read_acdc(acdc_root)
    for case in info.cases[:4]:
        vol = load_volume(case)
        sx, sy, sz = vol.spacing
        assert 1.25 <= sx <= 1.6 and sx == pytest.approx(sy) and 5 <= sz <= 10
        assert 32 <= vol.image.shape[0] <= 48 and 6 <= vol.image.shape[2] <= 10
        assert set(np.unique(vol.label).tolist()) == {0, 1, 2, 3}
        means = [vol.image[vol.label == k].mean() for k in range(4)]
        assert means[3] > means[1] > means[2] > means[0]  # LV blood > RV blood > MYO > background
        frame = int(case.case_id[-2:])
        cine = nib.load(str(case.image.parent / f"{acdc_patient_id(case.case_id)}_4d.nii.gz"))
        assert np.array_equal(np.asarray(cine.dataobj)[..., frame - 1], vol.image)


def test_read_testing_and_database_folder(acdc_root: Path, tmp_path: Path) -> None:
    info = read_acdc(acdc_root, "testing")
    assert [c.case_id[:10] for c in info.cases] == ["patient101"] * 2 + ["patient150"] * 2
    assert {c.group for c in info.cases} == {"DCM", "RV"}
    nested = tmp_path / "download"
    shutil.copytree(acdc_root, nested / "database")
    assert len(read_acdc(nested).cases) == 10
    with pytest.raises(ValueError, match="subset"):
        read_acdc(acdc_root, "validation")


def test_phantom_count_round_robin(tmp_path: Path) -> None:
    root = write_acdc_phantoms(tmp_path, 6, size=(24, 24), n_slices=(2, 3), n_frames=2)
    ids = sorted(p.name for p in (root / "training").iterdir())
    assert ids == ["patient001", "patient002", "patient021", "patient041", "patient061", "patient081"]


@pytest.fixture
def small_acdc(tmp_path: Path) -> Path:
    return write_acdc_phantoms(tmp_path / "ACDC", {"training": [1, 2]}, size=(24, 24), n_slices=(2, 3))


def test_missing_files(small_acdc: Path) -> None:
    folder = small_acdc / "training" / "patient002"
    gt = next(folder.glob("*_gt.nii.gz"))
    gt.unlink()
    with pytest.raises(DataError, match=f"Missing ground truth .*{gt.name}"):
        read_acdc(small_acdc)
    unlabelled = [c for c in read_acdc(small_acdc, require_labels=False).cases if c.label is None]
    assert [c.case_id + "_gt.nii.gz" for c in unlabelled] == [gt.name]
    gt.with_name(gt.name.replace("_gt", "")).unlink()
    with pytest.raises(DataError, match="names frame .* as ED/ES"):
        read_acdc(small_acdc)
    (folder / "Info.cfg").unlink()
    with pytest.raises(DataError, match=r"Missing .*patient002/Info\.cfg"):
        read_acdc(small_acdc)


def test_bad_info_cfg(small_acdc: Path, tmp_path: Path) -> None:
    cfg = small_acdc / "training" / "patient001" / "Info.cfg"
    cfg.write_text("ED: 1\nES: 40\nGroup: DCM\nNbFrame: 3\n")
    with pytest.raises(DataError, match="ES = 40 is outside"):
        read_acdc(small_acdc)
    cfg.write_text("ED: 1\nGroup: DCM\n")
    with pytest.raises(DataError, match=r"lacks \['ES', 'NbFrame'\]"):
        read_acdc(small_acdc)
    with pytest.raises(DataError, match="No ACDC dataset"):
        read_acdc(tmp_path / "empty")


def test_split_file_is_the_public_ssl4mis_split() -> None:
    split = load_acdc_split()
    train, val, test = (set(split[p]) for p in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (70, 10, 20)
    assert not (train & val or train & test or val & test)
    assert train | val | test == {f"patient{i:03d}" for i in range(1, 101)}
    assert split["external_test"] == [f"patient{i:03d}" for i in range(101, 151)]
    assert "SSL4MIS" in split["source"]
    # spot checks against the public lists (HiLab-git/SSL4MIS data/ACDC/*.list)
    assert {"patient001", "patient011", "patient052", "patient093"} <= test
    assert {"patient002", "patient028", "patient087"} <= val
    for group, numbers in BLOCKS.items():
        assert set(split["groups"][group]) == {f"patient{i:03d}" for i in numbers}


def test_acdc_split_on_phantoms(acdc_root: Path) -> None:
    split = load_acdc_split()
    with pytest.raises(DataError, match="strict=False"):
        acdc_split(acdc_root, "train")
    parts = {part: acdc_split(acdc_root, part, strict=False) for part in ("train", "val", "test")}
    found = [c.case_id for cases in parts.values() for c in cases]
    assert sorted(found) == [c.case_id for c in read_acdc(acdc_root).cases]  # each frame exactly once
    for part, cases in parts.items():
        patients = [acdc_patient_id(c.case_id) for c in cases]
        assert set(patients) <= set(split[part])
        assert all(patients.count(p) == 2 for p in patients)  # ED and ES together
    external = acdc_split(acdc_root, "external_test", strict=False)
    assert {acdc_patient_id(c.case_id) for c in external} == {"patient101", "patient150"}
    info = read_acdc(acdc_root)
    assert acdc_split(info, "train", strict=False) == parts["train"]
    with pytest.raises(ValueError, match="part"):
        acdc_split(info, "training")


def test_info_cfg_with_a_byte_order_mark_and_uncompressed_frames(small_acdc: Path) -> None:
    folder = small_acdc / "training" / "patient001"
    cfg = folder / "Info.cfg"
    cfg.write_bytes(b"\xef\xbb\xbf" + cfg.read_bytes())  # saved by a Windows editor
    frame = next(p for p in folder.glob("*_frame*.nii.gz") if "_gt" not in p.name)
    nib.save(nib.load(frame), frame.with_name(frame.name[: -len(".gz")]))  # gunzipped copy
    frame.unlink()
    case = next(c for c in read_acdc(small_acdc).cases if c.image.name == frame.name[: -len(".gz")])
    assert load_volume(case).image.ndim == 3
