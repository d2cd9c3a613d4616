from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from emfformer.data.patches import PatchDataset
from emfformer.data.store import StoredCase


def _stored(tmp_path: Path, shape=(10, 2, 96, 128), box=(slice(60, 70), slice(100, 110))) -> StoredCase:
    """One case of S slices, C channels: channel c holds c + row / 1000; a label square in slices 4-5."""
    s, c, h, w = shape
    planes = np.zeros(shape, np.float16)
    planes += np.arange(c, dtype=np.float16)[None, :, None, None]
    label = np.zeros((s, h, w), np.uint8)
    label[4:6, box[0], box[1]] = 1
    fg = np.argwhere(label == 1)
    np.save(tmp_path / "x.npy", planes)
    np.save(tmp_path / "x_seg.npy", label)
    np.save(tmp_path / "x_fg.npy", np.column_stack([np.ones(len(fg)), fg]).astype(np.int32))
    return StoredCase("x", tmp_path / "x.npy", tmp_path / "x_seg.npy", tmp_path / "x_fg.npy", shape,
                      (-5.0,) * c, (4, 5))  # fmt: skip


def test_a_third_of_every_epoch_is_forced_onto_foreground(tmp_path: Path) -> None:
    ds = PatchDataset([_stored(tmp_path)], size=32, seed=0)
    for epoch in range(3):
        ds.set_epoch(epoch)
        assert ds.forced.sum() == math.ceil(len(ds) / 3)
        with_fg = [bool(ds[i]["label"].any()) for i in range(len(ds))]
        assert all(f for f, forced in zip(with_fg, ds.forced, strict=True) if forced)


def test_patches_place_the_anatomy_anywhere_and_pad_outside(tmp_path: Path) -> None:
    """Forced patches put the foreground at many positions, not always at the centre."""
    ds = PatchDataset([_stored(tmp_path)], size=32, seed=1, foreground_fraction=1.0)
    centres, padded = set(), 0
    for epoch in range(8):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            sample = ds[i]
            assert sample["image"].shape == (2, 32, 32) and sample["label"].shape == (32, 32)
            rows, cols = np.nonzero(sample["label"].numpy())
            centres.add((int(rows.mean()) // 4, int(cols.mean()) // 4))
            padded += bool((sample["image"] == -5.0).any())  # the window reached past the slice
    assert len(centres) >= 10
    assert padded > 0


def test_context_channels_are_channel_major_and_draws_deterministic(tmp_path: Path) -> None:
    case = _stored(tmp_path)
    a = PatchDataset([case], size=32, context=3, seed=2)
    b = PatchDataset([case], size=32, context=3, seed=2)
    x = a[3]["image"].numpy()
    assert x.shape == (6, 32, 32)
    inside = x[:, x[0] != -5.0]
    assert np.allclose(inside[:3], 0.0) and np.allclose(inside[3:], 1.0)  # c0 x 3 neighbours, then c1
    assert all(np.array_equal(a[i]["image"], b[i]["image"]) for i in range(len(a)))


def test_resize_mode_patch_is_the_slice_and_options_are_checked(tmp_path: Path) -> None:
    case = _stored(tmp_path, shape=(10, 1, 32, 32), box=(slice(4, 8), slice(4, 8)))
    ds = PatchDataset([case], size=32, margin=0)
    assert all(not (ds[i]["image"] == -5.0).any() for i in range(len(ds)))
    with pytest.raises(ValueError, match="keep_empty"):
        PatchDataset([case], size=32, keep_empty=2.0)
    assert len(PatchDataset([case], size=32, keep_empty=0.0)) == 2  # slices 4 and 5 only
    with pytest.raises(ValueError, match="at least one"):
        PatchDataset([], size=32)
    with pytest.raises(ValueError, match="foreground_fraction"):
        PatchDataset([case], size=32, foreground_fraction=1.5)
