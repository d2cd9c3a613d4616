from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emfformer.data.cases import DataError
from emfformer.data.preprocess import (
    PreprocessConfig,
    SliceInfo,
    labels_to_volume,
    normalize_volume,
    slices_to_volume,
    volume_to_slices,
)


def _one_hot(label_slices: np.ndarray, num_classes: int) -> torch.Tensor:
    """(S, H, W) int -> (S, C, H, W) float scores."""
    return F.one_hot(torch.from_numpy(label_slices), num_classes).permute(0, 3, 1, 2).float()


def _blob_label(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Two ellipsoid classes (1, 2) inside a background volume."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    c = rng.uniform(-0.2, 0.2, size=3)
    r2 = sum(((g - ci) / 0.6) ** 2 for g, ci in zip(grids, c, strict=True))
    label = np.zeros(shape, dtype=np.int16)
    label[r2 < 1.0] = 1
    label[(r2 < 1.0) & (grids[0] > c[0])] = 2
    return label


def _dice(a: np.ndarray, b: np.ndarray, cls: int) -> float:
    a, b = a == cls, b == cls
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


# --- config -------------------------------------------------------------------------------------


def test_config_dict_round_trip_through_json() -> None:
    cfg = PreprocessConfig(size=224, mode="resize", slice_axis=-1, clip_percentiles=(1, 99))
    d = json.loads(json.dumps(cfg.to_dict()))
    assert PreprocessConfig.from_dict(d) == cfg
    assert d["clip_percentiles"] == [1.0, 99.0]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 0},
        {"size": 64.0},
        {"mode": "crop"},
        {"slice_axis": 3},
        {"slice_axis": -4},
        {"clip_percentiles": (99.5, 0.5)},
        {"clip_percentiles": (-1.0, 50.0)},
        {"clip_percentiles": (0.0, 50.0, 100.0)},
    ],
)
def test_bad_config_raises(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        PreprocessConfig(**kwargs)


def test_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="sise"):
        PreprocessConfig.from_dict({"sise": 64})


def test_mutated_bad_config_is_caught_at_use() -> None:
    cfg = PreprocessConfig()
    cfg.mode = "zoom"
    with pytest.raises(ValueError, match="mode"):
        volume_to_slices(np.zeros((4, 4, 4)), cfg)


# --- normalisation ------------------------------------------------------------------------------


def test_normalize_is_robust_to_outliers() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(100.0, 10.0, size=(20, 20, 20)).astype(np.float32)
    image[0, 0, 0] = 1e6  # one hot voxel
    out = normalize_volume(image, PreprocessConfig())
    assert out.dtype == np.float32 and out.shape == image.shape
    assert abs(out.mean()) < 1e-3 and abs(out.std() - 1.0) < 1e-3
    assert out.max() < 4.0  # clipped: the outlier does not survive as an extreme value
    # A plain z-score would squash the tissue to ~0 std; ours keeps the bulk's contrast.
    assert np.corrcoef(out.ravel()[1:], image.ravel()[1:])[0, 1] > 0.99


@pytest.mark.parametrize("value", [0.0, 7.5])
def test_normalize_constant_volume_gives_zeros(value: float) -> None:
    out = normalize_volume(np.full((5, 6, 7), value), PreprocessConfig())
    assert np.array_equal(out, np.zeros((5, 6, 7), dtype=np.float32))


def test_normalize_rejects_nan() -> None:
    image = np.ones((3, 3, 3))
    image[1, 1, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        normalize_volume(image, PreprocessConfig())


# --- pad mode -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "axis"),
    [
        ((35, 50, 36), 2),
        ((31, 47, 25), 2),
        ((33, 64, 5), 0),
        ((64, 64, 3), 2),
        ((70, 81, 4), 2),
        ((5, 1, 1), 1),
    ],
)
def test_pad_shapes_and_exact_geometry(shape: tuple[int, int, int], axis: int) -> None:
    rng = np.random.default_rng(1)
    image = rng.normal(size=shape).astype(np.float32)
    # (almost) unique label per voxel, within int16: any misplacement would show
    label = (np.arange(np.prod(shape)) % 32749).reshape(shape)
    cfg = PreprocessConfig(size=64, slice_axis=axis)
    slices, label_slices, info = volume_to_slices(image, cfg, label)
    s = shape[axis]
    h, w = (max(n, 64) for a, n in enumerate(shape) if a != axis)  # padded up to the patch, never cropped
    assert slices.shape == (s, 1, h, w) and slices.dtype == np.float32
    assert label_slices is not None and label_slices.shape == (s, h, w) and label_slices.dtype == np.int64
    assert info.original_shape == shape and info.num_slices == s and info.crop_start == (0, 0)

    back = labels_to_volume(label_slices, info)
    assert back.shape == shape
    assert back.dtype == np.int16 and np.array_equal(back, label)  # every voxel comes back

    # the image is placed on the same pixels as the label
    norm = np.moveaxis(normalize_volume(image, cfg), axis, 0)
    (p0, p1), (l0, l1) = info.pad_before, info.length
    assert (l0, l1) == norm.shape[1:]
    assert np.allclose(slices[:, 0, p0 : p0 + l0, p1 : p1 + l1], norm)
    if p0 > 0:  # padding looks like background (the darkest normalised value)
        assert np.all(slices[:, 0, :p0] == norm.min())


@pytest.mark.parametrize("shape", [(35, 50, 36), (31, 47, 25), (63, 1, 2), (64, 64, 1)])
def test_pad_round_trip_of_one_hot_is_exact(shape: tuple[int, int, int]) -> None:
    label = _blob_label(shape)
    _, label_slices, info = volume_to_slices(
        np.random.default_rng(0).normal(size=shape), PreprocessConfig(), label
    )
    back = slices_to_volume(_one_hot(label_slices, 3), info)
    assert back.dtype == np.int16 and np.array_equal(back, label)
    assert np.array_equal(slices_to_volume(_one_hot(label_slices, 3).numpy(), info), label)  # numpy input


def test_pad_volume_larger_than_the_patch_is_kept_whole_not_cropped() -> None:
    shape = (80, 71, 3)
    label = np.ones(shape, dtype=np.int16)
    slices, label_slices, info = volume_to_slices(np.zeros(shape), PreprocessConfig(size=64), label)
    assert slices.shape == (3, 1, 80, 71) and info.crop_start == (0, 0) and info.pad_before == (0, 0)
    back = slices_to_volume(_one_hot(label_slices, 2), info)
    assert back.shape == shape and back.all()  # the whole slice is segmented (tiled at inference)


def test_multi_channel_volumes_give_channel_major_context() -> None:
    rng = np.random.default_rng(0)
    image = np.stack([rng.normal(0, 1, (20, 24, 5)), rng.normal(500, 50, (20, 24, 5))], axis=-1)
    cfg = PreprocessConfig(size=32, channels=2, context=3)
    slices, _, info = volume_to_slices(image, cfg)
    assert slices.shape == (5, 6, 32, 32) and info.slice_shape == (32, 32)
    centre = slices[:, :, 6:26, 4:28]
    assert not np.allclose(centre[2, 1], centre[1, 0])  # channel 0 at z - 1, z, z + 1, then channel 1
    assert np.allclose(centre[2, 0], centre[1, 1]) and np.allclose(centre[2, 3], centre[1, 4])
    assert abs(float(centre[:, 3:].mean())) < 0.1  # each channel z-scored on its own
    with pytest.raises(DataError, match="takes 2"):
        volume_to_slices(image[..., :1].repeat(3, -1), cfg)


# --- resize mode --------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(154, 190, 8), (300, 257, 3), (224, 224, 6)])
def test_resize_round_trip_keeps_shape_and_labels(shape: tuple[int, int, int]) -> None:
    label = _blob_label(shape, seed=2)
    image = label.astype(np.float32) * 100 + np.random.default_rng(0).normal(size=shape)
    cfg = PreprocessConfig(size=224, mode="resize", slice_axis=2)
    slices, label_slices, info = volume_to_slices(image, cfg, label)
    assert slices.shape == (shape[2], 1, 224, 224) and slices.dtype == np.float32
    assert label_slices is not None and label_slices.shape == (shape[2], 224, 224)
    assert set(np.unique(label_slices)) <= {0, 1, 2}
    assert info.resize_factors == (224 / shape[0], 224 / shape[1])
    back = slices_to_volume(_one_hot(label_slices, 3), info)
    assert back.shape == shape and back.dtype == np.int16
    for cls in (1, 2):
        assert _dice(back, label, cls) > 0.9
    assert np.array_equal(labels_to_volume(label_slices, info), back)


def test_resize_image_stays_in_input_range() -> None:
    image = np.zeros((100, 100, 2), dtype=np.float32)
    image[40:60, 40:60] = 1.0  # sharp edges make bicubic overshoot
    cfg = PreprocessConfig(size=224, mode="resize")
    slices, _, _ = volume_to_slices(image, cfg)
    norm = normalize_volume(image, cfg)
    assert slices.min() >= norm.min() - 1e-6 and slices.max() <= norm.max() + 1e-6


def test_resize_identity_when_already_at_size() -> None:
    label = _blob_label((64, 64, 3))
    _, label_slices, info = volume_to_slices(np.zeros((64, 64, 3)), PreprocessConfig(mode="resize"), label)
    assert np.array_equal(slices_to_volume(_one_hot(label_slices, 3), info), label)


# --- errors and serialisation -------------------------------------------------------------------


def test_bad_inputs_raise() -> None:
    cfg = PreprocessConfig()
    with pytest.raises(ValueError, match="3D"):
        volume_to_slices(np.zeros((4, 4)), cfg)
    with pytest.raises(ValueError, match="shape"):
        volume_to_slices(np.zeros((4, 4, 4)), cfg, np.zeros((4, 4, 5)))
    with pytest.raises(ValueError, match="non-negative"):
        volume_to_slices(np.zeros((4, 4, 4)), cfg, -np.ones((4, 4, 4)))
    _, _, info = volume_to_slices(np.zeros((4, 4, 4)), cfg)
    with pytest.raises(ValueError, match="shape"):
        slices_to_volume(torch.zeros(3, 2, 64, 64), info)  # 3 slices instead of 4
    with pytest.raises(ValueError, match="2 class"):
        slices_to_volume(torch.zeros(4, 1, 64, 64), info)


def test_slice_info_dict_round_trip() -> None:
    _, _, info = volume_to_slices(np.zeros((70, 20, 3)), PreprocessConfig(slice_axis=-1))
    assert info.slice_axis == 2
    assert SliceInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info


def test_context_slices_are_the_neighbours_with_edges_repeated() -> None:
    from emfformer.data.preprocess import add_context

    slices = np.arange(4, dtype=np.float32).reshape(4, 1, 1, 1) * np.ones((1, 1, 2, 2), np.float32)
    out = add_context(slices, 3)
    assert out.shape == (4, 3, 2, 2)
    assert out[:, :, 0, 0].tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 3]]
    assert add_context(slices, 1) is slices
    with pytest.raises(ValueError, match="context must be an odd"):
        PreprocessConfig(context=2)


def test_a_config_saved_before_the_border_crop_existed_keeps_none() -> None:
    old = PreprocessConfig().to_dict()
    del old["crop_border"]
    assert PreprocessConfig.from_dict(old).crop_border is False  # as it was trained
    assert PreprocessConfig.from_dict(PreprocessConfig().to_dict()).crop_border is True
