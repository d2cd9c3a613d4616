from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import get_track_meta

from emfformer.data.augment import train_transforms


def _samples(n: int = 12) -> list[dict[str, torch.Tensor]]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        label = np.zeros((32, 32), np.int64)
        label[8:20, 10:24] = 1
        label[12:16, 12:18] = 2
        out.append({"image": torch.from_numpy(rng.normal(size=(1, 32, 32)).astype(np.float32)),
                    "label": torch.from_numpy(label)})  # fmt: skip
    return out


def test_augmentation_is_deterministic_and_keeps_labels_valid() -> None:
    kw = {"affine_prob": 1.0, "intensity_prob": 1.0}
    raw = _samples()
    a, b, c = ([train_transforms(32, seed=s, **kw)(x) for x in raw] for s in (3, 3, 4))
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["label"], y["label"])
    assert any(not torch.equal(x["image"], z["image"]) for x, z in zip(a, c, strict=True))
    moved = 0
    for x, r in zip(a, raw, strict=True):
        assert type(x["image"]) is torch.Tensor and x["image"].shape == (1, 32, 32)
        assert x["image"].dtype == torch.float32 and torch.isfinite(x["image"]).all()
        assert x["label"].shape == (32, 32) and x["label"].dtype == torch.int64
        assert set(x["label"].unique().tolist()) <= {0, 1, 2}
        moved += not torch.equal(x["label"], r["label"])
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
