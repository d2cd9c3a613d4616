"""Deterministic test part + k-fold splits, and their JSON file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emfformer.data.cases import DataError
from emfformer.data.splits import get_split, load_or_create_splits, make_splits

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
