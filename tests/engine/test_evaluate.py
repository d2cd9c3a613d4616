"""run_evaluation on the tiny synthetic run: the report files, the split it uses, and its plumbing."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from emfformer.data import cases as cases_module
from emfformer.data.cases import DataError, Volume
from emfformer.engine import inference as inference_module
from emfformer.engine.checkpoint import load_checkpoint, save_checkpoint
from emfformer.engine.evaluate import run_evaluation

CLASSES = ["background", "Anterior", "Posterior"]


def _evaluate(run: Path, out: Path, **kwargs: Any) -> dict[str, Any]:
    return run_evaluation(run / "best.pt", out_dir=out, device="cpu", progress=False, **kwargs)


def _read_report(out: Path) -> tuple[dict[str, Any], list[dict[str, str]], str]:
    metrics = json.loads((out / "metrics.json").read_text())
    with (out / "per_case.csv").open() as f:
        rows = list(csv.DictReader(f))
    return metrics, rows, (out / "summary.md").read_text()


def _test_ids(run: Path) -> list[str]:
    return sorted(json.loads((run / "splits.json").read_text())["test"])


def test_evaluate_writes_the_report(trained_run: Path, tmp_path: Path) -> None:
    summary = _evaluate(trained_run, tmp_path / "eval")
    metrics, rows, md = _read_report(tmp_path / "eval")

    assert summary["out_dir"] == str(tmp_path / "eval")
    assert summary["num_cases"] == len(_test_ids(trained_run)) == 2
    for key in ("mean_dice_fg", "miou_fg", "mean_dice_all", "miou_all"):
        assert math.isfinite(summary[key]) and 0.0 <= summary[key] <= 1.0, key
    assert summary["miou_fg"] <= summary["mean_dice_fg"] + 1e-12  # IoU <= Dice for every case/class

    # the held-out test part of the training split, nothing else
    assert sorted(r["case_id"] for r in rows) == _test_ids(trained_run)
    assert metrics["class_names"] == CLASSES
    assert metrics["extra"]["part"] == "test" and metrics["extra"]["epoch"] == 1
    assert metrics["extra"]["model_name"] == "emf_former_t"
    assert metrics["extra"]["splits_file"] == "stored in the checkpoint"
    assert metrics["summary"]["mean_dice_fg"] == pytest.approx(summary["mean_dice_fg"])
    for row in rows:
        for name in CLASSES:
            dice, iou = float(row[f"dice_{name}"]), float(row[f"iou_{name}"])
            assert 0.0 <= dice <= 1.0 and 0.0 <= iou <= dice + 1e-12, (row["case_id"], name)
    assert "| Anterior |" in md and "| Posterior |" in md and "mIoU" in md


def test_evaluate_defaults_to_the_run_folder(trained_run: Path, tmp_path: Path) -> None:
    run = shutil.copytree(trained_run, tmp_path / "run")
    summary = run_evaluation(run / "best.pt", part="val", device="cpu", progress=False)
    out = run / "eval_val"
    assert summary["out_dir"] == str(out)
    _, rows, _ = _read_report(out)
    val = json.loads((run / "splits.json").read_text())["folds"][0]["val"]
    assert sorted(r["case_id"] for r in rows) == sorted(val)
    # another checkpoint of the run gets its own report folder instead of overwriting best.pt's
    other = run_evaluation(run / "last.pt", part="val", device="cpu", progress=False)
    assert other["out_dir"] == str(run / "eval_val_last")
    assert (out / "metrics.json").is_file()


def test_max_cases_limits_the_part(trained_run: Path, tmp_path: Path) -> None:
    summary = _evaluate(trained_run, tmp_path / "eval", max_cases=1)
    _, rows, _ = _read_report(tmp_path / "eval")
    assert summary["num_cases"] == 1 and len(rows) == 1


def test_missing_split_file_is_a_clear_value_error(trained_run: Path, tmp_path: Path) -> None:
    lone = tmp_path / "lone"
    lone.mkdir()
    state = load_checkpoint(trained_run / "best.pt")
    del state["splits"]  # a checkpoint of emfformer 0.1 carried no split
    save_checkpoint(lone / "best.pt", state)
    with pytest.raises(ValueError, match=r"No split .*splits\.json.*--splits"):
        _evaluate(lone, tmp_path / "eval")
    with pytest.raises(ValueError, match="No split file"):
        _evaluate(trained_run, tmp_path / "eval", splits_file=tmp_path / "nope.json")
    assert not (tmp_path / "eval").exists()
    assert not (lone / "splits.json").exists(), "evaluation must not invent a new split"


def test_split_file_of_another_dataset_is_a_data_error(trained_run: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.json"
    foreign.write_text(
        json.dumps({"seed": 0, "n_folds": 5, "test": ["x_1"], "folds": [{"train": ["x_2"], "val": ["x_3"]}]})
    )
    with pytest.raises(DataError, match="not in the dataset"):
        _evaluate(trained_run, tmp_path / "eval", splits_file=foreign)


@pytest.mark.parametrize(("part", "match"), [("external_test", "only for ACDC"), ("holdout", "part must be")])
def test_bad_part_raises_value_error(trained_run: Path, tmp_path: Path, part: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _evaluate(trained_run, tmp_path / "eval", part=part)


def test_missing_checkpoint_raises_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Checkpoint not found"):
        run_evaluation(tmp_path / "best.pt", progress=False)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="Cannot read checkpoint"):
        run_evaluation(tmp_path / "junk.pt", progress=False)


def _model_returning(monkeypatch: pytest.MonkeyPatch, make_labels: Any) -> list[Volume]:
    """Replace the network: predict_volume returns ``make_labels(volume)`` for each evaluated volume."""
    loaded: dict[int, Volume] = {}
    real_load_volume = cases_module.load_volume  # evaluation reads volumes lazily through LazyVolumes

    def load_volume(case: Any) -> Volume:
        vol = real_load_volume(case)
        loaded[id(vol.image)] = vol
        return vol

    def predict_volume(members: Any, image: np.ndarray, *args: Any, **kwargs: Any) -> np.ndarray:
        return make_labels(loaded[id(image)])

    monkeypatch.setattr(cases_module, "load_volume", load_volume)
    monkeypatch.setattr(inference_module, "predict_volume", predict_volume)
    return list(loaded.values())


def test_a_perfect_model_scores_exactly_one(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _model_returning(monkeypatch, lambda vol: vol.label.copy())
    summary = _evaluate(trained_run, tmp_path / "eval")
    metrics, rows, md = _read_report(tmp_path / "eval")

    assert summary["num_cases"] == 2
    assert summary["mean_dice_fg"] == 1.0 and summary["miou_fg"] == 1.0
    assert summary["mean_dice_all"] == 1.0 and summary["miou_all"] == 1.0
    assert summary["hd95_fg_mm"] == 0.0
    for name in CLASSES:
        assert summary["per_class"][name]["dice"] == 1.0 and summary["per_class"][name]["iou"] == 1.0
        assert summary["per_class"][name]["n_cases"] == 2
    assert all(float(r[f"dice_{n}"]) == 1.0 and float(r[f"iou_{n}"]) == 1.0 for r in rows for n in CLASSES)
    assert metrics["summary"]["miou_fg"] == 1.0
    assert "**100.00**" in md


def test_an_empty_prediction_scores_zero(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _model_returning(monkeypatch, lambda vol: np.zeros_like(vol.label))
    summary = _evaluate(trained_run, tmp_path / "eval")
    metrics, _, _ = _read_report(tmp_path / "eval")
    assert summary["mean_dice_fg"] == 0.0 and summary["miou_fg"] == 0.0
    assert math.isnan(summary["hd95_fg_mm"]) and metrics["summary"]["hd95_fg_mm"] is None
    for name in CLASSES[1:]:
        assert summary["per_class"][name]["hd95_undefined"] == 2  # in the ground truth only
    assert 0.0 < summary["per_class"]["background"]["dice"] < 1.0


@pytest.fixture
def anisotropic_copy(msd_phantom: Path, tmp_path: Path) -> Path:
    """The phantoms with 2 mm voxels along x (same case ids, so the run's split still applies)."""
    root = shutil.copytree(msd_phantom, tmp_path / "aniso")
    for path in sorted(root.glob("*Tr/*.nii.gz")):
        img = nib.load(path)
        affine = img.affine.copy()
        affine[0, 0] = 2.0
        out = nib.Nifti1Image(np.asarray(img.dataobj), affine)
        nib.save(out, path)
    return root


@pytest.mark.parametrize(("axis", "hd95_mm"), [(0, 4.0), (1, 2.0)])
def test_hd95_uses_the_voxel_spacing(
    trained_run: Path,
    anisotropic_copy: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    axis: int,
    hd95_mm: float,
) -> None:
    """A prediction shifted by 2 voxels; voxels are 2 x 1 x 1 mm, so HD95 is 4 mm along x, 2 mm along y."""
    _model_returning(monkeypatch, lambda vol: np.roll(vol.label, 2, axis=axis))
    summary = _evaluate(trained_run, tmp_path / "eval", data_dir=anisotropic_copy)
    metrics, _, _ = _read_report(tmp_path / "eval")
    assert metrics["extra"]["data_dir"] == str(anisotropic_copy)
    assert 0.0 < summary["mean_dice_fg"] < 1.0
    for name in CLASSES[1:]:
        assert summary["per_class"][name]["hd95_mm"] == pytest.approx(hd95_mm)
