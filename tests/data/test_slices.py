from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import get_track_meta

import emfformer.data.slices as slices_mod
from emfformer.data.cases import Case, DataError
from emfformer.data.preprocess import PreprocessConfig
from emfformer.data.slices import (
    SliceArrays,
    SliceDataset,
    build_slice_cache,
    train_transforms,
)

SHAPES = [(35, 50, 6), (31, 47, 5), (40, 40, 4)]


def _write(path: Path, arr: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(arr, np.eye(4)), str(path))


@pytest.fixture()
def cases(tmp_path: Path) -> list[Case]:
    """Three tiny labelled volumes; the first and last slice of each are all background."""
    rng = np.random.default_rng(0)
    out = []
    for i, shape in enumerate(SHAPES):
        image = rng.normal(100, 20, size=shape).astype(np.float32)
        label = np.zeros(shape, dtype=np.uint8)
        label[10:20, 10:25, 1:-1] = 1
        label[12:16, 12:18, 2:-1] = 2
        img_path, lab_path = tmp_path / f"case_{i}.nii.gz", tmp_path / f"case_{i}_gt.nii.gz"
        _write(img_path, image)
        _write(lab_path, label)
        out.append(Case(f"case_{i}", img_path, lab_path))
    return out


def _count_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = slices_mod.load_volume

    def counting(case: Case):
        calls.append(case.case_id)
        return real(case)

    monkeypatch.setattr(slices_mod, "load_volume", counting)
    return calls


def test_build_stacks_all_slices(cases: list[Case]) -> None:
    arrays = build_slice_cache(cases, PreprocessConfig(), cache_dir=None, progress=False)
    n = sum(s[2] for s in SHAPES)
    assert len(arrays) == n
    assert arrays.images.shape == (n, 1, 64, 64) and arrays.images.dtype == np.float16
    assert (
        arrays.labels is not None and arrays.labels.shape == (n, 64, 64) and arrays.labels.dtype == np.uint8
    )
    assert arrays.case_ids == ("case_0", "case_1", "case_2")
    assert arrays.case_index.tolist() == [0] * 6 + [1] * 5 + [2] * 4
    assert arrays.slice_index.tolist() == list(range(6)) + list(range(5)) + list(range(4))
    assert [info.original_shape for info in arrays.infos] == SHAPES
    assert arrays.case_rows(1).tolist() == list(range(6, 11))
    f32 = build_slice_cache(cases, PreprocessConfig(), progress=False, dtype=np.float32)
    assert f32.images.dtype == np.float32 and np.allclose(f32.images, arrays.images, atol=1e-2)


def test_cache_is_written_and_reused(
    cases: list[Case], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_dir = tmp_path / "cache"
    calls = _count_loads(monkeypatch)
    first = build_slice_cache(cases, PreprocessConfig(), cache_dir=cache_dir, progress=False)
    assert len(calls) == 3
    files = list(cache_dir.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"  # no temp files left behind

    second = build_slice_cache(cases, PreprocessConfig(), cache_dir=cache_dir, progress=False)
    assert len(calls) == 3  # nothing re-read
    assert np.array_equal(first.images, second.images) and np.array_equal(first.labels, second.labels)
    assert np.array_equal(first.case_index, second.case_index)
    assert first.case_ids == second.case_ids and first.infos == second.infos

    build_slice_cache(cases, PreprocessConfig(size=48), cache_dir=cache_dir, progress=False)
    assert len(calls) == 6 and len(list(cache_dir.iterdir())) == 2  # other config -> other cache


def test_cache_invalidated_when_a_file_changes(
    cases: list[Case], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_dir = tmp_path / "cache"
    build_slice_cache(cases, PreprocessConfig(), cache_dir=cache_dir, progress=False)
    label = np.zeros(SHAPES[1], dtype=np.uint8)
    _write(cases[1].label, label)  # type: ignore[arg-type]
    st = os.stat(cases[1].label)  # type: ignore[arg-type]
    os.utime(cases[1].label, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # type: ignore[arg-type]
    calls = _count_loads(monkeypatch)
    arrays = build_slice_cache(cases, PreprocessConfig(), cache_dir=cache_dir, progress=False)
    assert len(calls) == 3
    assert arrays.labels is not None and not arrays.labels[arrays.case_rows(1)].any()


def test_corrupt_cache_is_rebuilt(cases: list[Case], tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    build_slice_cache(cases, PreprocessConfig(), cache_dir=cache_dir, progress=False)
    (path,) = cache_dir.iterdir()
    path.write_bytes(b"not a zip file")
    arrays = build_slice_cache(cases, PreprocessConfig(), cache_dir=cache_dir, progress=False)
    assert len(arrays) == 15
    assert len(build_slice_cache(cases, PreprocessConfig(), cache_dir=cache_dir, progress=False)) == 15


def test_build_errors(cases: list[Case], tmp_path: Path) -> None:
    cfg = PreprocessConfig()
    with pytest.raises(ValueError, match="at least one"):
        build_slice_cache([], cfg, progress=False)
    with pytest.raises(ValueError, match="Duplicate"):
        build_slice_cache([cases[0], cases[0]], cfg, progress=False)
    with pytest.raises(DataError, match="labels"):
        build_slice_cache([cases[0], Case("x", cases[1].image)], cfg, progress=False)
    with pytest.raises(DataError):
        build_slice_cache([Case("y", tmp_path / "missing.nii.gz")], cfg, cache_dir=tmp_path, progress=False)


def test_unlabelled_cases(cases: list[Case]) -> None:
    unlabelled = [Case(c.case_id, c.image) for c in cases]
    arrays = build_slice_cache(unlabelled, PreprocessConfig(), progress=False)
    assert arrays.labels is None
    sample = SliceDataset(arrays)[0]
    assert set(sample) == {"image"}
    with pytest.raises(ValueError, match="labelled"):
        SliceDataset(arrays, keep_empty=0.5)


def test_dataset_items(cases: list[Case]) -> None:
    arrays = build_slice_cache(cases, PreprocessConfig(), progress=False)
    ds = SliceDataset(arrays)
    assert len(ds) == 15
    item = ds[3]
    assert item["image"].shape == (1, 64, 64) and item["image"].dtype == torch.float32
    assert item["label"].shape == (64, 64) and item["label"].dtype == torch.int64
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 1, 64, 64) and batch["label"].shape == (4, 64, 64)


def _synthetic_arrays(n: int = 40, size: int = 32, n_empty: int = 30) -> SliceArrays:
    rng = np.random.default_rng(0)
    labels = np.zeros((n, size, size), dtype=np.uint8)
    labels[n_empty:, 8:20, 8:20] = 1
    labels[n_empty:, 10:14, 10:14] = 2
    images = rng.normal(size=(n, 1, size, size)).astype(np.float16)
    zeros = np.zeros(n, dtype=np.int32)
    return SliceArrays(images, labels, zeros, np.arange(n, dtype=np.int32), ("a",), ())


def test_keep_empty_fraction_is_deterministic() -> None:
    arrays = _synthetic_arrays()
    assert len(SliceDataset(arrays, keep_empty=0.0)) == 10
    assert all(SliceDataset(arrays, keep_empty=0.0)[i]["label"].any() for i in range(10))
    ds = SliceDataset(arrays, keep_empty=0.5, seed=1)
    assert len(ds) == 10 + 15
    assert np.array_equal(ds.indices, SliceDataset(arrays, keep_empty=0.5, seed=1).indices)
    first = ds.indices.copy()
    ds.set_epoch(1)
    assert len(ds) == 25 and not np.array_equal(ds.indices, first)  # new subset each epoch
    ds.set_epoch(0)
    assert np.array_equal(ds.indices, first)
    with pytest.raises(ValueError, match="keep_empty"):
        SliceDataset(arrays, keep_empty=1.5)


def _augmented(seed: int, arrays: SliceArrays, **kwargs) -> list[dict[str, torch.Tensor]]:
    ds = SliceDataset(arrays, transform=train_transforms(32, seed=seed, **kwargs))
    return [ds[i] for i in range(len(ds))]


def test_augmentation_is_deterministic_and_keeps_labels_valid() -> None:
    arrays = _synthetic_arrays(n=20, n_empty=0)
    kw = {"affine_prob": 1.0, "intensity_prob": 1.0}
    a, b, c = _augmented(3, arrays, **kw), _augmented(3, arrays, **kw), _augmented(4, arrays, **kw)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["label"], y["label"])
    assert any(not torch.equal(x["image"], z["image"]) for x, z in zip(a, c, strict=True))
    moved = 0
    for x, raw in zip(a, arrays.labels, strict=True):
        assert type(x["image"]) is torch.Tensor and x["image"].shape == (1, 32, 32)
        assert x["image"].dtype == torch.float32 and torch.isfinite(x["image"]).all()
        assert x["label"].shape == (32, 32) and x["label"].dtype == torch.int64
        assert set(x["label"].unique().tolist()) <= {0, 1, 2}
        moved += not np.array_equal(x["label"].numpy(), raw)
    assert moved > 0  # the affine does move the labels with the image
    assert get_track_meta()  # MONAI's global switch is restored after each call


def test_augmentation_options_validated() -> None:
    with pytest.raises(ValueError, match="affine_prob"):
        train_transforms(64, 0, affine_prob=2.0)
    with pytest.raises(ValueError, match="scale"):
        train_transforms(64, 0, scale=1.5)
    flips = train_transforms(32, 0, affine_prob=0.0, intensity_prob=0.0, flip_prob=1.0)
    sample = {
        "image": torch.arange(32.0 * 32).reshape(1, 32, 32),
        "label": torch.zeros(32, 32, dtype=torch.int64),
    }
    assert not torch.equal(flips(sample)["image"], sample["image"])
