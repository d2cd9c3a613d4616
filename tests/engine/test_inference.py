"""Whole-volume inference: mirror TTA, probability-level ensembles of models with other slice axes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from emfformer.data.preprocess import PreprocessConfig, slices_to_scores, slices_to_volume, volume_to_slices
from emfformer.engine.inference import predict_scores, predict_slices, predict_volume


class _Intensity(nn.Module):
    """A fixed 'model': class 1 where the first input channel is above 0, with a left-right bias."""

    def __init__(self, skew: float = 0.0) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.skew = skew

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(-1, 1, x.shape[-1]) * self.skew
        fg = x[:, :1] * 4 + ramp
        return torch.cat([-fg, fg], dim=1)


def test_tta_averages_the_four_mirrorings_flipped_back() -> None:
    model = _Intensity(skew=2.0)
    x = torch.randn(3, 1, 16, 16)
    expected = 0
    for dims in ((), (-1,), (-2,), (-2, -1)):
        xi = x.flip(dims) if dims else x
        p = model(xi).softmax(1)
        expected = expected + (p.flip(dims) if dims else p)
    got = predict_slices(model, x, tta=True)
    torch.testing.assert_close(got, expected / 4)
    # the skewed model is not mirror-invariant, so TTA changes its output
    assert not torch.allclose(got, predict_slices(model, x))
    # a mirror-invariant model is unchanged by TTA
    torch.testing.assert_close(predict_slices(_Intensity(), x, tta=True), predict_slices(_Intensity(), x))


@pytest.mark.parametrize("mode", ["pad", "resize"])
def test_scores_on_the_volume_grid_match_the_label_inverse(mode: str) -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(20, 40, 9)).astype(np.float32)  # 40 > 32: pad mode keeps it whole (tiled)
    pre = PreprocessConfig(size=32, mode=mode, slice_axis=2)
    slices, _, info = volume_to_slices(image, pre)
    probs = predict_slices(_Intensity(), slices)
    scores = slices_to_scores(probs, info)
    assert scores.shape == (2, 20, 40, 9) and scores.dtype == np.float32
    np.testing.assert_array_equal(scores.argmax(0), slices_to_volume(probs, info))
    np.testing.assert_allclose(scores.sum(0), 1.0, atol=1e-5)  # every voxel was seen, none set by default


def test_ensemble_of_slice_axes_averages_probabilities_on_the_volume_grid() -> None:
    rng = np.random.default_rng(1)
    image = rng.normal(size=(16, 20, 12)).astype(np.float32)
    members = [
        (_Intensity(skew=s), PreprocessConfig(size=32, slice_axis=a)) for s, a in ((1.0, 0), (-1.5, 2))
    ]
    fused = predict_scores(members, image)
    singles = [predict_scores([m], image) for m in members]
    np.testing.assert_allclose(fused, (singles[0] + singles[1]) / 2, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(predict_volume(members, image), fused.argmax(0))
    # context slices: a 2.5D member sees 3 channels, built from the same volume
    ctx = PreprocessConfig(size=32, slice_axis=1, context=3)
    assert volume_to_slices(image, ctx)[0].shape == (20, 3, 32, 32)
    assert predict_volume([(_Intensity(), ctx)], image).shape == image.shape


def test_single_model_needs_its_preprocessing() -> None:
    with pytest.raises(ValueError, match="PreprocessConfig"):
        predict_volume(_Intensity(), np.zeros((4, 4, 4), np.float32))
    with pytest.raises(ValueError, match="at least one"):
        predict_scores([], np.zeros((4, 4, 4), np.float32))


def test_cli_starts_without_torch_and_predict_and_evaluate_never_load_training_code() -> None:
    import subprocess
    import sys

    code = (
        "import sys, emfformer.cli; emfformer.cli.build_parser(); print('torch' in sys.modules);"
        "import emfformer.engine.predict; print('monai' in sys.modules, 'matplotlib' in sys.modules);"
        "import emfformer.engine.evaluate;"
        "print(sorted(m for m in sys.modules if m.startswith('emfformer.engine')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    cli, first, loaded = out.splitlines()
    assert cli == "False"  # `emfformer --help` / `--version` answer in 0.3 s, not after torch's 2 s import
    assert first == "False False"  # predict starts without MONAI (~2 s) and matplotlib (only --overlays)
    assert "emfformer.engine.train" not in loaded and "emfformer.engine.inference" in loaded


class _Recording(nn.Module):
    """Class 1 where the first channel is bright; records the input shapes it is called with."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.shapes: set[tuple[int, ...]] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.add(tuple(x.shape[-2:]))
        bright = (x[:, :1] > 0).float()
        return torch.cat([1 - bright, bright], dim=1) * 10


def test_slices_larger_than_the_patch_are_tiled_by_a_sliding_window() -> None:
    image = np.full((20, 80, 6), -1.0, np.float32)
    image[:, :10] = 1.0  # bright band at the far border, outside a 32-pixel centre crop
    model = _Recording()
    pred = predict_volume([(model, PreprocessConfig(size=32, slice_axis=2))], image)
    assert pred.shape == image.shape and (pred[:, :10] == 1).all() and (pred[:, 20:] == 0).all()
    assert model.shapes == {(32, 32)}  # the network only ever sees patches of its training size


class _Sided(nn.Module):
    """A fixed 'model' that knows orientation and scale: bright pixels in the first half of the rows
    and within 12 pixels of the centre column are class 1, other bright pixels class 2."""

    input_multiple = 16

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        side = ((rows < h / 2) & ((cols - w / 2).abs() < 12)).float()
        bright = (x[:, :1] > 0).float()
        return torch.cat([1 - bright, bright * side, bright * (1 - side)], dim=1) * 10


def test_lps_scan_at_0p7_mm_is_segmented_on_its_own_grid() -> None:
    """A 256 x 256 LPS scan at 0.7 mm, for a model trained on RAS slices at 1 mm: the labels land on
    the scan's grid, where the model's training-grid rules put them in world coordinates."""
    shape, zooms = (256, 256, 20), (0.7, 0.7, 2.0)
    affine = np.diag([-zooms[0], -zooms[1], zooms[2], 1.0])  # L, P, S
    ijk = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    world = [affine[a, a] * ijk[a] for a in range(3)]
    centre = [affine[a, a] * (shape[a] - 1) / 2 for a in range(3)]
    d = [w - c for w, c in zip(world, centre, strict=True)]
    ball = d[0] ** 2 + d[1] ** 2 + d[2] ** 2 < 30**2
    image = np.where(ball, 100.0, 0.0).astype(np.float32)
    # RAS rows run along +x: the first half of the rows is x < centre; columns along +y
    truth = np.where(ball, np.where((d[0] < 0) & (np.abs(d[1]) < 12), 1, 2), 0)
    pre = PreprocessConfig(size=64, slice_axis=2, orientation="RAS", spacing=(1.0, 1.0, 1.0))

    labels = predict_volume([(_Sided(), pre)], image, affine=affine)

    assert labels.shape == shape
    for k in (1, 2):
        dice = 2 * ((labels == k) & (truth == k)).sum() / ((labels == k).sum() + (truth == k).sum())
        assert dice > 0.9, (k, dice)
    # the same array taken as it is (no affine): flipped and at the wrong scale, so the test can fail
    naive = predict_volume([(_Sided(), pre)], image)
    assert ((naive == 1) & (truth == 1)).sum() < 0.5 * (truth == 1).sum()


class _BatchSizes(_Intensity):
    """_Intensity that records the batch size of every forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        return super().forward(x)


@pytest.mark.parametrize(
    "shape, expected",
    [
        ((64, 64), [64, 6]),
        ((32, 32), [64, 6]),
        ((256, 256), [4, 4, 1]),
        ((1024, 16), [16, 3]),
        ((800, 800), [1, 1]),
    ],
)
def test_large_slices_go_in_smaller_batches_of_the_same_pixel_count(
    shape: tuple[int, int], expected: list[int]
) -> None:
    model = _BatchSizes()
    probs = predict_slices(model, torch.randn(sum(expected), 1, *shape), batch_size=64)
    assert model.batches == expected
    assert probs.shape == (sum(expected), 2, *shape)


def test_thin_volumes_are_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    pre = PreprocessConfig(size=32, slice_axis=2)
    grow = _Intensity()
    grow.input_multiple = 16
    pair = [(grow, pre), (grow, PreprocessConfig(size=32, slice_axis=0))]
    predict_volume(pair, np.ones((20, 24, 1), np.float32))
    predict_volume([(grow, pre)], np.ones((100, 24, 8), np.float32))
    assert not caplog.records  # evaluation and validation ask for no warnings
    predict_volume(pair, np.ones((20, 24, 1), np.float32), warn=True)
    assert "only 1 voxel(s) along axis 2" in caplog.text
    caplog.clear()
    predict_volume([(grow, pre)], np.ones((20, 24, 1), np.float32), warn=True)  # one axis: no strips
    predict_volume([(grow, pre)], np.ones((100, 24, 8), np.float32), warn=True)  # large: tiled, no warning
    assert not caplog.records


@pytest.mark.parametrize(
    ("shape", "axes", "context", "expected"),
    [
        ((20, 24, 1), [2], 3, ["fewer than the 3 adjacent slices"]),  # one member, 1 slice, 2.5D: warned
        ((20, 24, 2), [2, 2], 5, ["only 2 slice(s) along axis 2, fewer than the 5"]),  # once, not twice
        ((20, 24, 1), [0], 3, ["only 1 voxel(s) along axis 2: a model that slices along another axis"]),
        ((20, 24, 3), [2], 3, []),  # as many slices as the context: fine
        ((20, 24, 1), [2], 1, []),  # a 2D model on one slice: fine
    ],
)
def test_a_volume_thinner_than_a_members_context_is_warned_about(
    shape: tuple[int, int, int],
    axes: list[int],
    context: int,
    expected: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    grow = _Intensity()
    grow.input_multiple = 16
    members = [(grow, PreprocessConfig(size=32, slice_axis=a, context=context)) for a in axes]
    with caplog.at_level("WARNING"):
        predict_volume(members, np.ones(shape, np.float32), warn=True)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == len(expected), messages
    assert all(e in m for e, m in zip(expected, messages, strict=True))
