"""Deterministic test part + k-fold splits, and their JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from emfformer.data.acdc import load_acdc_split
from emfformer.data.cases import DataError
from emfformer.data.locate import read_dataset
from emfformer.data.splits import SPLIT_PARTS, get_split, load_or_create_splits, make_splits, select_cases
from emfformer.data.synthetic import write_acdc_phantoms

IDS = [f"case_{i:03d}" for i in range(23)]


def test_deterministic_and_order_free() -> None:
    a = make_splits(IDS, n_folds=5, test_fraction=0.2, seed=7)
    assert a == make_splits(list(reversed(IDS)), n_folds=5, test_fraction=0.2, seed=7)
    assert a != make_splits(IDS, n_folds=5, test_fraction=0.2, seed=8)


@pytest.mark.parametrize("n_folds,test_fraction", [(5, 0.2), (3, 0.0), (2, 0.5), (1, 0.2)])
def test_disjoint_and_covering(n_folds: int, test_fraction: float) -> None:
    s = make_splits(IDS, n_folds=n_folds, test_fraction=test_fraction)
    test = set(s["test"])
    assert len(test) == round(test_fraction * len(IDS))
    assert len(s["folds"]) == n_folds
    vals = []
    for fold in range(n_folds):
        train, val = set(get_split(s, fold, "train")), set(get_split(s, fold, "val"))
        assert train and val and not (train & val) and not ((train | val) & test)
        assert train | val | test == set(IDS)
        assert get_split(s, fold, "test") == s["test"]
        vals.extend(val)
    if n_folds > 1:  # the val parts partition the non-test cases
        assert sorted(vals) == sorted(set(IDS) - test)
    else:
        assert len(vals) == round(0.2 * (len(IDS) - len(test)))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_folds"):
        make_splits(IDS, n_folds=0)
    with pytest.raises(ValueError, match="test_fraction"):
        make_splits(IDS, test_fraction=1.0)
    with pytest.raises(ValueError, match="duplicates"):
        make_splits(["a", "a", "b", "c"])
    with pytest.raises(ValueError, match="need at least 5"):
        make_splits(IDS[:4], n_folds=5)
    s = make_splits(IDS)
    with pytest.raises(ValueError, match="fold must be in 0..4"):
        get_split(s, 5, "train")
    with pytest.raises(ValueError, match="part"):
        get_split(s, 0, "validation")


def test_create_then_reuse(tmp_path: Path) -> None:
    path = tmp_path / "run" / "splits.json"
    created = load_or_create_splits(path, IDS, n_folds=5, seed=3)
    assert json.loads(path.read_text()) == created
    assert [p.name for p in path.parent.iterdir()] == ["splits.json"]  # no temp file left
    # the existing file wins over a new seed and over cases added later
    reused = load_or_create_splits(path, IDS + ["case_new"], n_folds=5, seed=99)
    assert reused == created
    # but not over another fold count: that run would not be the run it claims to be
    with pytest.raises(DataError, match="has 5 folds but this run asks for 3"):
        load_or_create_splits(path, IDS, n_folds=3)


def test_stale_file(tmp_path: Path) -> None:
    path = tmp_path / "splits.json"
    load_or_create_splits(path, IDS)
    with pytest.raises(DataError, match=r"names 1 case\(s\) that are not in the dataset .*case_000"):
        load_or_create_splits(path, IDS[1:])


def test_malformed_file(tmp_path: Path) -> None:
    path = tmp_path / "splits.json"
    path.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_or_create_splits(path, IDS)
    path.write_text(json.dumps({"test": ["a"], "folds": [{"train": ["a"], "val": ["b"]}]}))
    with pytest.raises(DataError, match="overlapping"):
        load_or_create_splits(path, ["a", "b"])


def _acdc_settings(fold: int) -> SimpleNamespace:
    return SimpleNamespace(
        dataset="acdc", fold=fold, n_folds=5, test_fraction=0.2, split_seed=0, max_cases=None
    )


def test_acdc_fold_minus_one_trains_on_train_and_val_and_other_folds_are_refused(tmp_path: Path) -> None:
    split = load_acdc_split()
    patients = {"training": [int(p[-3:]) for p in split["train"][:2] + split["val"][:1] + split["test"][:1]]}
    info = read_dataset(
        "acdc", write_acdc_phantoms(tmp_path / "ACDC", patients, size=(24, 24), n_slices=(2, 3))
    )
    ids = {
        part: [c.case_id for c in select_cases(info, _acdc_settings(0), part, tmp_path)]
        for part in SPLIT_PARTS
    }
    assert (len(ids["train"]), len(ids["val"]), len(ids["test"])) == (4, 2, 2)  # ED + ES of each patient
    everything = [c.case_id for c in select_cases(info, _acdc_settings(-1), "train", tmp_path)]
    assert everything == sorted(ids["train"] + ids["val"])
    with pytest.raises(ValueError, match="data.fold must be 0 .* or -1"):
        select_cases(info, _acdc_settings(2), "train", tmp_path)
    assert select_cases(info, _acdc_settings(2), "test", tmp_path) == select_cases(
        info, _acdc_settings(0), "test", tmp_path
    )
    with pytest.raises(DataError, match="has no val part"):
        select_cases(info, _acdc_settings(-1), "val", tmp_path)


def test_acdc_frames_without_ground_truth_are_left_out_of_their_part_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    split = load_acdc_split()
    patients = {"training": [int(p[-3:]) for p in split["train"][:2] + split["test"][:1]]}
    root = write_acdc_phantoms(tmp_path / "ACDC", patients, size=(24, 24), n_slices=(2, 3))
    gt = next((root / "training" / split["train"][0]).glob("*_gt.nii.gz"))
    gt.unlink()
    info = read_dataset("acdc", root)  # the integrity check passes: the frame is merely unlabelled
    test = select_cases(info, _acdc_settings(0), "test", tmp_path)
    assert len(test) == 2 and "no ground truth" not in caplog.text
    train = select_cases(info, _acdc_settings(0), "train", tmp_path)
    assert len(train) == 3 and gt.name.replace("_gt.nii.gz", "") not in [c.case_id for c in train]
    assert "have no ground truth and are left out" in caplog.text
