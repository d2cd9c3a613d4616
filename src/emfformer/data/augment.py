"""Training augmentation of 2D patches: MONAI dictionary transforms, run per sample on the CPU.

`train_transforms` builds the seeded pipeline; `SliceAugment` applies it to
``{"image": float32 (K, H, W), "label": int64 (H, W)}`` samples (`emfformer.data.patches`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import monai.transforms as mt
import torch
from monai.data import get_track_meta, set_track_meta

__all__ = ["SliceAugment", "train_transforms"]

Sample = dict[str, torch.Tensor]


class SliceAugment:
    """Per-sample augmentation: a MONAI `Compose` applied to ``{"image", "label"}`` slice samples.

    Takes and returns ``{"image": float32 (1, H, W), "label": int64 (H, W)}`` (the label is optional).
    MONAI metadata tracking is switched off while the transforms run (and restored afterwards): the
    MetaTensor bookkeeping costs more than the resampling itself on 64x64 slices, and nothing here
    needs it. The switch is a MONAI module global, so do not share one instance across threads.
    """

    def __init__(self, transforms: mt.Compose) -> None:
        self.transforms = transforms

    def set_random_state(self, seed: int) -> SliceAugment:
        """Reseed every random transform (deterministic sequence of augmentations from here on)."""
        self.transforms.set_random_state(seed=int(seed) % 2**32)
        return self

    def __call__(self, sample: Sample) -> Sample:
        d: dict[str, Any] = {"image": sample["image"]}
        if "label" in sample:
            d["label"] = sample["label"][None].float()  # MONAI wants channel-first
        prev = get_track_meta()
        set_track_meta(False)
        try:
            d = self.transforms(d)
        finally:
            set_track_meta(prev)
        out = dict(sample)
        out["image"] = torch.as_tensor(d["image"], dtype=torch.float32)
        if "label" in d:
            out["label"] = torch.as_tensor(d["label"])[0].round().long()
        return out


def train_transforms(
    size: int,
    seed: int,
    *,
    affine_prob: float = 0.5,
    rotate_deg: float = 15.0,
    scale: float = 0.15,
    intensity_prob: float = 0.15,
    flip_prob: float = 0.0,
) -> SliceAugment:
    """Training augmentation for (1, size, size) slices, seeded.

    * `RandAffined` (probability ``affine_prob``): rotation in +-``rotate_deg`` and an independent
      scale factor in 1 +- ``scale`` per axis (MONAI draws one factor per axis); image bilinear with
      border padding (edges are background), label nearest with background padding.
    * `RandGaussianNoised` (std 0.1 of the z-scored intensities), `RandScaleIntensityd` (x 0.75..1.25)
      and `RandAdjustContrastd` (gamma 0.7..1.5), each with probability ``intensity_prob``.
    * No flips by default: left and right hippocampus / RV and LV positions are anatomical facts the
      network may use. ``flip_prob > 0`` flips each in-plane axis with that probability (nnU-Net's
      mirroring; pairs with mirror test-time augmentation).

    ``affine_prob`` is 0.5 rather than 1 for speed (see docs): the affine resampling is the costly part.

    Args:
        size: slice side (the affine output keeps ``size x size``; its base grid is cached).
        seed: seed of all random draws. Other arguments: see above.

    Returns:
        A `SliceAugment` callable on `SliceDataset` samples.
    """
    for name, p in dict(affine_prob=affine_prob, intensity_prob=intensity_prob, flip_prob=flip_prob).items():
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {p}.")
    if size < 1 or rotate_deg < 0 or not 0 <= scale < 1:
        raise ValueError(
            f"Need size >= 1, rotate_deg >= 0, 0 <= scale < 1; got {size}, {rotate_deg}, {scale}."
        )
    keys = ("image", "label")
    transforms: list[Callable[..., Any]] = []
    if flip_prob > 0:  # each in-plane axis flipped independently: all 4 mirrorings occur, as in TTA
        transforms += [
            mt.RandFlipd(keys=keys, prob=flip_prob, spatial_axis=axis, allow_missing_keys=True)
            for axis in (0, 1)
        ]
    transforms += [
        mt.RandAffined(
            keys=keys,
            prob=affine_prob,
            rotate_range=math.radians(rotate_deg),
            scale_range=(scale, scale),
            mode=("bilinear", "nearest"),
            padding_mode=("border", "zeros"),
            spatial_size=(size, size),
            cache_grid=True,
            allow_missing_keys=True,
        ),
        mt.RandGaussianNoised(keys="image", prob=intensity_prob, mean=0.0, std=0.1),
        mt.RandScaleIntensityd(keys="image", factors=0.25, prob=intensity_prob),
        mt.RandAdjustContrastd(keys="image", prob=intensity_prob, gamma=(0.7, 1.5)),
    ]
    return SliceAugment(mt.Compose(transforms)).set_random_state(seed)
