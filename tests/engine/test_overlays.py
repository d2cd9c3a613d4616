"""Overlay figures (engine/overlays.py): slice choice, intensity window, error map, legend; on synthetic arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from emfformer.cli import build_parser
from emfformer.data.preprocess import PreprocessConfig
from emfformer.engine.overlays import (
    FALSE_NEGATIVE,
    FALSE_POSITIVE,
    N_SLICES,
    choose_slices,
    class_colour,
    display_window,
    legend_entries,
    overlay_figure,
)
from emfformer.engine.predict import run_prediction

CT = {"scheme": "ct", "lower": -100.0, "upper": 240.0, "mean": 60.0, "std": 70.0}


def _box(shape: tuple[int, int, int], lo: tuple[int, int, int], hi: tuple[int, int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1] = True
    return mask


def test_five_slices_spread_over_the_extent_in_the_axis_with_the_largest_slices() -> None:
    # 20 x 40 voxels per axis-2 slice beat 40 x 20 (axis 0) and 20 x 20 (axis 1)
    mask = _box((40, 60, 30), (10, 5, 6), (29, 44, 25))
    axis, picks = choose_slices(mask)
    assert axis == 2
    assert len(picks) == N_SLICES == 5 and picks == sorted(set(picks))
    assert 6 <= picks[0] and picks[-1] <= 25  # inside the extent
    assert abs((picks[0] - 6) - (25 - picks[-1])) <= 1  # centred: the same margin at both ends
    steps = np.diff(picks)
    assert steps.max() - steps.min() <= 1 and steps.min() >= 3  # evenly spread, not adjacent slices


def test_slice_axis_follows_the_structure_not_the_last_axis() -> None:
    mask = _box((30, 24, 40), (2, 10, 4), (27, 13, 35))  # 26 x 32 voxels per axis-1 slice
    axis, picks = choose_slices(mask)
    assert axis == 1 and picks == [10, 11, 12, 13]  # a 4-slice-thin plate: each of its slices once


def test_slice_choice_of_a_cube_an_empty_mask_and_a_bad_shape() -> None:
    assert choose_slices(_box((20, 20, 20), (5, 5, 5), (14, 14, 14)))[0] == 2  # ties: the later axis
    axis, picks = choose_slices(np.zeros((8, 30, 20), dtype=bool))  # nothing: the largest plane
    assert axis == 0 and len(picks) == 5 and picks[0] >= 0 and picks[-1] <= 7
    with pytest.raises(ValueError, match="3D mask"):
        choose_slices(np.zeros((4, 4), dtype=bool))


def test_ct_window_from_the_checkpoints_plan_else_percentiles_else_the_override() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(0, 300, (20, 20, 10)).astype(np.float32)
    pre = PreprocessConfig(normalization=(CT,))  # as a checkpoint of a CT plan stores it
    assert display_window(image, pre.normalization) == (-100.0, 240.0)
    assert display_window(image, pre.normalization, window=(-1000, 1000)) == (-1000.0, 1000.0)
    lo, hi = display_window(image, ({"scheme": "zscore", "clip": [0.5, 99.5]},))
    assert (lo, hi) == pytest.approx(tuple(np.percentile(image, (0.5, 99.5))))
    assert display_window(image, None) == (lo, hi)
    assert display_window(np.full((4, 4, 4), 7.0)) == (7.0, 8.0)  # constant: still a window
    for bad in ((5, 5), (3, float("nan")), (1, 2, 3)):
        with pytest.raises(ValueError, match="LO < HI"):
            display_window(image, None, window=bad)


def _case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    truth = _box((32, 36, 16), (8, 8, 4), (23, 27, 11)).astype(np.int16)
    truth[16:24] *= 2  # a second class
    pred = truth.copy()
    pred[8:11] = 0  # false negatives
    pred[2:5, 2:5, 4:12] = 1  # false positives
    image = np.random.default_rng(1).normal(100, 20, truth.shape) + 100 * (truth > 0)
    return image, truth, pred


def test_error_map_figure_uses_the_window_and_the_class_and_error_colours() -> None:
    image, truth, pred = _case()
    names = ["background", "Anterior", "Posterior"]
    fig = overlay_figure(
        image, pred, names, truth=truth, spacing=(1.0, 1.0, 3.0), window=(-100, 240), legend=True
    )
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 5
    assert panels[0].images[0].get_clim() == (-100, 240)
    layers = np.concatenate([ax.images[1].get_array().reshape(-1, 4) for ax in panels])
    for colour in (FALSE_POSITIVE, FALSE_NEGATIVE, class_colour(1), class_colour(2)):
        assert np.isclose(layers[:, :3], to_rgba(colour)[:3], atol=1e-3).all(1).any(), colour
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:4] == ["Anterior", "Posterior", "false positive", "false negative"]
    assert fig.texts[0].get_text().startswith("slices along axis 2")  # the caption says what is shown
    assert legend_entries(names, errors=False) == [
        ("Anterior", class_colour(1)),
        ("Posterior", class_colour(2)),
    ]


def test_prediction_only_figure_and_bad_shapes() -> None:
    image, _, pred = _case()
    fig = overlay_figure(image, pred, ["bg", "A", "B"], title="x.nii.gz")
    assert len(fig.legends) == 1 and [t.get_text() for t in fig.legends[0].get_texts()] == ["A", "B"]
    assert fig.texts[0].get_text().startswith("x.nii.gz: slices along")
    flat = overlay_figure(image[..., :1], pred[..., :1], ["bg", "A", "B"])  # a 2D image: one panel
    assert len([ax for ax in flat.axes if ax.images]) == 1 == len(flat.axes)
    with pytest.raises(ValueError, match="share one 3D shape"):
        overlay_figure(image, pred[:-1], ["bg", "A", "B"])


def test_predict_window_flag(msd_phantom: Path, tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["predict", "-i", "x", "-o", "y", "--overlays", "--window", "-100", "240"]
    )
    assert args.window == [-100.0, 240.0]
    scan = msd_phantom / "imagesTr" / "hippocampus_001.nii.gz"
    with pytest.raises(ValueError, match="add --overlays"):
        run_prediction(scan, tmp_path / "a", window=(0, 1), progress=False)
    with pytest.raises(ValueError, match="LO < HI"):
        run_prediction(scan, tmp_path / "b", overlays=True, window=(1, 0), progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
