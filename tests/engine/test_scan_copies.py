"""tests/engine/scan_copies.py: the copies of a scan that the geometry checks build are where their affines say."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
from scan_copies import border_crop, resampled

from emfformer.data.preprocess import PreprocessConfig


def test_resampling_samples_each_new_voxel_where_its_affine_puts_it() -> None:
    """On a linear image with a permuted, oblique affine and a different ratio on each axis, every resampled
    voxel holds the image's value at its own world point (no zero edge slice, no compressed spacing)."""
    c, s = np.cos(0.3), np.sin(0.3)
    rotation = np.array([[0.0, c, -s], [0.0, s, c], [1.0, 0.0, 0.0]])  # array axes permuted and tilted
    affine = np.eye(4)
    affine[:3, :3] = rotation * np.array([0.7, 0.5, 1.25])  # column j = the world step of array axis j
    affine[:3, 3] = [5.0, -7.0, 2.0]
    ijk = np.indices((30, 26, 20)).astype(np.float32)
    weights = np.array([1.0, -2.0, 3.0], np.float32)
    linear = np.tensordot(weights, ijk, axes=1)  # linear in the index: trilinear resampling is exact
    voxel = np.array([1.6, 2.2, 3.0])
    new, _, new_affine = resampled(linear, np.zeros(linear.shape, np.int16), affine, voxel)
    new_ijk = np.indices(new.shape).reshape(3, -1)
    stored = (np.linalg.inv(affine) @ new_affine @ np.vstack([new_ijk, np.ones(new_ijk.shape[1])]))[:3]
    inside = np.all((stored >= 0) & (stored <= np.array(linear.shape)[:, None] - 1), axis=0)
    assert inside.mean() > 0.5  # edge voxels clamp to the scan's last sample; the rest are compared
    np.testing.assert_allclose(new.reshape(-1)[inside], (weights @ stored)[inside], atol=1e-3)
    np.testing.assert_allclose(
        np.linalg.norm(new_affine[:3, :3], axis=0),
        np.array([0.7, 0.5, 1.25]) * linear.shape / np.array(new.shape),
    )


def test_border_crop_sets_every_member_and_gives_each_its_own_back_even_on_an_error() -> None:
    pre = PreprocessConfig()
    model = SimpleNamespace(
        members=[
            ("a", dataclasses.replace(pre, crop_border=True)),
            ("b", dataclasses.replace(pre, crop_border=False)),
        ]
    )
    shipped = [p.crop_border for _, p in model.members]
    with pytest.raises(RuntimeError), border_crop(model, False):
        assert [p.crop_border for _, p in model.members] == [False, False]
        raise RuntimeError("segmentation failed")
    assert [p.crop_border for _, p in model.members] == shipped == [True, False]
