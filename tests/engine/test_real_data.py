"""The pipeline on 3 real MSD Task04 Hippocampus cases: train -> evaluate -> predict.

Needs ``EMFFORMER_TEST_DATA`` = a real Task04_Hippocampus folder (set in CI); skipped without it.
Nothing is written into the data folder: runs, caches, reports and predictions go to tmp folders.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from scan_copies import fg_dice, flipped_xy, off_centre, resampled

from emfformer.engine.checkpoint import load_checkpoint
from emfformer.engine.config import load_config
from emfformer.engine.evaluate import run_evaluation
from emfformer.engine.predict import run_prediction
from emfformer.engine.train import run_training

DATA_ENV = "EMFFORMER_TEST_DATA"


@pytest.fixture(scope="module")
def real_root() -> Path:
    value = os.environ.get(DATA_ENV)
    if not value:
        pytest.skip(f"{DATA_ENV} is not set; point it to a real MSD Task04_Hippocampus folder to run these")
    root = Path(value)
    if not (root / "dataset.json").is_file():
        pytest.fail(f"{DATA_ENV}={value} is not an MSD task folder (no dataset.json)")
    return root


@pytest.fixture(scope="module")
def real_run(
    real_root: Path,
    session_env: Path,
    make_overrides: Callable[..., dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    tmp = tmp_path_factory.mktemp("real")
    extra = {"data.size": 64, "data.max_cases": 3, "optim.batch_size": 16}
    return run_training(load_config(None, make_overrides(real_root, tmp / "run", tmp / "slices", **extra)))


def _dataset_ids(root: Path) -> list[str]:
    meta = json.loads((root / "dataset.json").read_text())
    return [Path(e["image"]).name.removesuffix(".nii.gz") for e in meta["training"]]


def test_training_on_real_cases(real_root: Path, real_run: Path) -> None:
    for name in ("best.pt", "last.pt", "log.csv", "log.json", "curves.png", "config.yaml", "splits.json"):
        assert (real_run / name).is_file(), name
    state = load_checkpoint(real_run / "last.pt")
    assert state["class_names"] == ["background", "Anterior", "Posterior"]
    assert state["epoch"] == 1 and state["config"]["data"]["max_cases"] == 3
    assert state["preprocess"]["size"] == 64
    history = json.loads((real_run / "log.json").read_text())
    assert [r["epoch"] for r in history] == [1]
    assert math.isfinite(history[0]["train_loss"]) and 0.0 <= history[0]["val_dice_fg"] <= 1.0
    # the split covers the whole dataset, although only 3 cases per part were used
    splits = json.loads((real_run / "splits.json").read_text())
    fold = splits["folds"][0]
    assert sorted(splits["test"] + fold["train"] + fold["val"]) == sorted(_dataset_ids(real_root))


def test_evaluate_real_test_cases(real_root: Path, real_run: Path, tmp_path: Path) -> None:
    summary = run_evaluation(
        real_run / "best.pt", "test", out_dir=tmp_path / "eval", max_cases=3, device="cpu", progress=False
    )
    assert summary["num_cases"] == 3
    for key in ("mean_dice_fg", "miou_fg"):
        assert math.isfinite(summary[key]) and 0.0 <= summary[key] <= 1.0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    evaluated = [row["case_id"] for row in metrics["rows"]]
    splits = json.loads((real_run / "splits.json").read_text())
    test = set(splits["test"])
    expected = [i for i in _dataset_ids(real_root) if i in test][:3]  # dataset order, first 3
    assert evaluated == expected
    assert not test & set(splits["folds"][0]["train"])
    for row in metrics["rows"]:
        assert all(d is None or 0.0 <= d <= 1.0 for d in row["dice"])
        assert all(h is None or h >= 0.0 for h in row["hd95"])
    assert (tmp_path / "eval" / "summary.md").is_file() and (tmp_path / "eval" / "per_case.csv").is_file()


def test_predict_a_real_case_keeps_its_geometry(real_root: Path, real_run: Path, tmp_path: Path) -> None:
    case = sorted(json.loads((real_run / "splits.json").read_text())["test"])[0]
    image = real_root / "imagesTr" / f"{case}.nii.gz"
    before = sorted(p.name for p in real_root.rglob("*"))
    written = run_prediction(image, tmp_path / "pred", real_run / "best.pt", device="cpu", progress=False)

    assert written == [tmp_path / "pred" / image.name]
    src, dst = nib.load(image), nib.load(written[0])
    assert dst.shape == src.shape
    assert np.allclose(dst.affine, src.affine)
    assert np.allclose(dst.header.get_zooms(), src.header.get_zooms())
    assert int(dst.header["qform_code"]) == int(src.header["qform_code"])
    assert int(dst.header["sform_code"]) == int(src.header["sform_code"])
    labels = np.asarray(dst.dataobj)
    assert np.issubdtype(labels.dtype, np.integer)
    assert labels.min() >= 0 and labels.max() <= 2
    assert sorted(p.name for p in real_root.rglob("*")) == before, "the data folder was modified"


def test_shipped_model_on_a_real_case_stored_lps_and_at_0p7_mm(real_root: Path, tmp_path: Path) -> None:
    """The same real test case, stored LPS and resampled to 0.7 mm: the shipped model (trained RAS,
    1 mm) segments each copy on its own grid as well as the original. Its first network without mirror
    TTA (``fast=True``, 12x less work; the geometry under test is the same)."""
    from emfformer.api import load_pretrained, segment

    model = load_pretrained("hippocampus")
    img = nib.load(real_root / "imagesTr" / "hippocampus_017.nii.gz")
    truth = np.asarray(nib.load(real_root / "labelsTr" / "hippocampus_017.nii.gz").dataobj).astype(np.int16)
    image = np.asarray(img.dataobj, dtype=np.float32)
    reference = segment(image, model, fast=True, affine=img.affine)
    base = fg_dice(reference, truth)
    assert base > 0.8

    lps = tmp_path / "lps.nii.gz"
    nib.save(nib.Nifti1Image(*flipped_xy(image, img.affine)), lps)
    np.testing.assert_array_equal(
        segment(lps, model, fast=True), reference[::-1, ::-1]
    )  # reorientation is exact

    fine, fine_truth, affine = resampled(image, truth, img.affine, 0.7)  # the same field of view
    labels = segment(fine, model, fast=True, affine=affine)
    assert labels.shape == fine.shape
    assert fg_dice(labels, fine_truth) > base - 0.05
    naive = segment(
        fine, model, fast=True
    )  # the same array taken as if it were 1 mm: the model sees a bigger brain
    assert fg_dice(naive, fine_truth) < fg_dice(labels, fine_truth)


@pytest.mark.parametrize("background", ["zero", "constant"])
def test_shipped_model_finds_a_case_off_centre_in_a_3x_wider_field(real_root: Path, background: str) -> None:
    """A real test-part case at 0.7 mm, flipped, off-centre in a field 3x wider, on a zero or a constant
    (the case's mean) background: the shipped model's Dice is within 0.03 of the original case's."""
    from emfformer.api import load_pretrained, segment

    model = load_pretrained("hippocampus")
    img = nib.load(real_root / "imagesTr" / "hippocampus_017.nii.gz")
    truth = np.asarray(nib.load(real_root / "labelsTr" / "hippocampus_017.nii.gz").dataobj).astype(np.int16)
    image = np.asarray(img.dataobj, dtype=np.float32)
    base = fg_dice(segment(image, model, tta=False, affine=img.affine), truth)
    fill = 0.0 if background == "zero" else float(image.mean())
    field, field_truth, affine = off_centre(image, truth, img.affine, fill)
    labels = segment(field, model, tta=False, affine=affine)
    assert labels.shape == field.shape
    assert fg_dice(labels, field_truth) > base - 0.03, (base, fg_dice(labels, field_truth))


def test_shipped_left_atrium_model_segments_a_case_it_never_saw() -> None:
    """The shipped left-atrium model on one case of its held-out test part (split stored in the file)."""
    value = os.environ.get("EMFFORMER_TEST_LA")
    if not value:
        pytest.skip("EMFFORMER_TEST_LA is not set; point it to Dataset101_LeftAtrium to run this")
    from emfformer.api import load_pretrained, segment
    from emfformer.engine.checkpoint import resolve_checkpoint

    model = load_pretrained("left-atrium")
    assert model.class_names == ["background", "left_atrium"] and model.members[0][1].channels == 1
    test_ids = sorted(load_checkpoint(resolve_checkpoint("left-atrium"))["splits"]["test"])
    case = test_ids[0]
    image = Path(value) / "imagesTr" / f"{case}_0000.nii.gz"
    truth = np.asarray(nib.load(Path(value) / "labelsTr" / f"{case}.nii.gz").dataobj) > 0
    labels = segment(image, model) > 0
    dice = 2 * (labels & truth).sum() / (labels.sum() + truth.sum())
    assert labels.shape == truth.shape and dice > 0.8, dice
