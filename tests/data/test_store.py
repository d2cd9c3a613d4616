from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import emfformer.data.store as store_mod
from emfformer.data.cases import Case, DataError
from emfformer.data.preprocess import PreprocessConfig
from emfformer.data.store import preprocess_cases

SHAPES = [(35, 50, 6), (31, 47, 5), (70, 40, 4)]


@pytest.fixture()
def cases(tmp_path: Path) -> list[Case]:
    """Three small labelled volumes; the first and last slice of each are all background."""
    rng = np.random.default_rng(0)
    out = []
    for i, shape in enumerate(SHAPES):
        label = np.zeros(shape, dtype=np.uint8)
        label[10:20, 10:25, 1:-1] = 1
        label[12:16, 12:18, 2:-1] = 2
        img, lab = tmp_path / f"c{i}.nii.gz", tmp_path / f"c{i}_gt.nii.gz"
        nib.save(nib.Nifti1Image(rng.normal(100, 20, shape).astype(np.float32), np.eye(4)), str(img))
        nib.save(nib.Nifti1Image(label, np.eye(4)), str(lab))
        out.append(Case(f"c{i}", img, lab))
    return out


def test_store_writes_one_memmap_per_case_and_never_crops(cases: list[Case], tmp_path: Path) -> None:
    stored = preprocess_cases(cases, PreprocessConfig(size=48), tmp_path / "cache", progress=False)
    assert [s.case_id for s in stored] == ["c0", "c1", "c2"]
    for s, shape in zip(stored, SHAPES, strict=True):
        planes = s.planes()
        assert isinstance(planes, np.memmap) and planes.dtype == np.float16
        # padded up to the 48 patch where smaller, whole where larger (70 stays 70: tiled, not cut)
        assert planes.shape == (shape[2], 1, max(shape[0], 48), max(shape[1], 48)) == s.shape
        assert s.labels().shape == (shape[2], *planes.shape[2:])
        assert int(s.labels().astype(bool).sum()) == 10 * 15 * (shape[2] - 2)  # no label voxel lost
        assert s.nonempty == tuple(range(1, shape[2] - 1))
        fg = np.load(s.fg)
        assert fg.shape[1] == 4 and set(fg[:, 0].tolist()) == {1, 2}
        assert (s.labels()[fg[:, 1], fg[:, 2], fg[:, 3]] == fg[:, 0]).all()


def test_store_is_reused_and_rebuilt_when_a_file_changes(
    cases: list[Case], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = store_mod.load_volume
    monkeypatch.setattr(store_mod, "load_volume", lambda c: calls.append(c.case_id) or real(c))
    cfg = PreprocessConfig(size=48)
    first = preprocess_cases(cases, cfg, tmp_path, progress=False)
    assert len(calls) == 3
    assert preprocess_cases(cases, cfg, tmp_path, progress=False) == first and len(calls) == 3
    os.utime(cases[1].image, ns=(1, 1))
    again = preprocess_cases(cases, cfg, tmp_path, progress=False)
    assert len(calls) == 6 and again[0].image.parent != first[0].image.parent
    assert (
        preprocess_cases(cases, PreprocessConfig(size=48, context=3), tmp_path, progress=False) == again
    )  # context: at sample time


def test_store_errors(cases: list[Case], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one"):
        preprocess_cases([], PreprocessConfig(), tmp_path, progress=False)
    with pytest.raises(ValueError, match="Duplicate"):
        preprocess_cases([cases[0], cases[0]], PreprocessConfig(), tmp_path, progress=False)
    with pytest.raises(DataError, match="Cannot read|not found"):
        preprocess_cases(
            [Case("y", tmp_path / "missing.nii.gz")], PreprocessConfig(), tmp_path, progress=False
        )


def test_a_corrupt_index_is_rebuilt(
    cases: list[Case], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = preprocess_cases(cases, PreprocessConfig(size=48), tmp_path, progress=False)
    index = first[0].image.parent / "index.json"
    index.write_bytes(b"\x00junk")
    again = preprocess_cases(cases, PreprocessConfig(size=48), tmp_path, progress=False)
    assert len(again) == 3 and again == first and "rebuilding" in caplog.text
    assert preprocess_cases(cases, PreprocessConfig(size=48), tmp_path, progress=False) == first
