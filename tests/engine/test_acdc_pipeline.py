"""The whole pipeline on ACDC phantoms in the official layout with the published split (resize mode)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from emfformer.data.acdc import ACDC_CLASS_NAMES, load_acdc_split
from emfformer.data.synthetic import write_acdc_phantoms
from emfformer.engine.checkpoint import load_checkpoint
from emfformer.engine.config import load_config
from emfformer.engine.evaluate import run_evaluation
from emfformer.engine.predict import run_prediction
from emfformer.engine.train import run_training


def _number(patient: str) -> int:
    return int(patient.removeprefix("patient"))


def _pick() -> dict[str, list[str]]:
    """A few patients of every part of the published split (2 train, 1 val, 1 test, 2 external)."""
    split = load_acdc_split()
    sizes = {"train": 2, "val": 1, "test": 1, "external_test": 2}
    return {part: split[part][:n] for part, n in sizes.items()}


def _ed_es(root: Path, patient: str) -> list[int]:
    subset = "testing" if _number(patient) > 100 else "training"
    cfg = dict(
        line.split(": ", 1) for line in (root / subset / patient / "Info.cfg").read_text().splitlines()
    )
    return sorted({int(cfg["ED"]), int(cfg["ES"])})


@pytest.fixture(scope="module")
def acdc_run(
    session_env: Path, make_overrides: Callable[..., dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("acdc")
    picked = _pick()
    training = [_number(p) for part in ("train", "val", "test") for p in picked[part]]
    testing = [_number(p) for p in picked["external_test"]]
    root = write_acdc_phantoms(
        tmp / "ACDC", {"training": training, "testing": testing}, seed=0, size=(28, 40), n_slices=(4, 6)
    )
    extra = {"data.dataset": "acdc", "data.mode": "resize", "optim.batch_size": 4}
    overrides = make_overrides(root, tmp / "run", tmp / "slices", **extra)
    return root, run_training(load_config(None, overrides))


def test_training_uses_the_published_split(acdc_run: tuple[Path, Path]) -> None:
    _, run = acdc_run
    state = load_checkpoint(run / "best.pt")
    assert state["class_names"] == list(ACDC_CLASS_NAMES)
    assert state["model_kwargs"]["num_classes"] == 4
    assert state["preprocess"]["mode"] == "resize" and state["preprocess"]["size"] == 32
    history = json.loads((run / "log.json").read_text())
    assert [r["epoch"] for r in history] == [1]
    assert math.isfinite(history[0]["train_loss"])
    assert {"val_dice_RV", "val_dice_MYO", "val_dice_LV"} <= set(history[0])


@pytest.mark.parametrize("part", ["test", "external_test"])
def test_evaluate_part(acdc_run: tuple[Path, Path], tmp_path: Path, part: str) -> None:
    root, run = acdc_run
    summary = run_evaluation(run / "best.pt", part, out_dir=tmp_path / part, device="cpu", progress=False)
    metrics = json.loads((tmp_path / part / "metrics.json").read_text())

    patients = _pick()[part]
    expected = sorted(f"{p}_frame{f:02d}" for p in patients for f in _ed_es(root, p))
    assert sorted(r["case_id"] for r in metrics["rows"]) == expected  # both frames of each patient
    assert summary["num_cases"] == len(expected) == 2 * len(patients)
    assert metrics["class_names"] == list(ACDC_CLASS_NAMES)
    assert metrics["extra"]["part"] == part
    assert "acdc_split.json" in metrics["extra"]["splits_file"]
    for key in ("mean_dice_fg", "miou_fg"):
        assert math.isfinite(summary[key]) and 0.0 <= summary[key] <= 1.0
    assert (tmp_path / part / "summary.md").read_text().startswith("# Evaluation: ACDC")


def test_predict_an_external_frame(acdc_run: tuple[Path, Path], tmp_path: Path) -> None:
    root, run = acdc_run
    patient = _pick()["external_test"][0]
    frame = root / "testing" / patient / f"{patient}_frame01.nii.gz"
    written = run_prediction(frame, tmp_path / "pred", run / "best.pt", device="cpu", progress=False)
    src, dst = nib.load(frame), nib.load(written[0])
    assert dst.shape == src.shape and np.allclose(dst.affine, src.affine)
    assert np.allclose(dst.header.get_zooms(), src.header.get_zooms())
    assert set(np.unique(np.asarray(dst.dataobj)).tolist()) <= {0, 1, 2, 3}
