"""Deterministic case splits for folder datasets (e.g. Task04_Hippocampus): a fixed held-out test part
plus k train/val folds of the rest, stored as JSON next to the experiment so every run reuses it.

JSON format::

    {"seed": 0, "n_folds": 5, "test_fraction": 0.2,
     "test": [...],
     "folds": [{"train": [...], "val": [...]}, ...]}

``n_folds=1`` means a single train/val split whose validation part holds 20 % of the non-test cases
(the size of one fold of a 5-fold split). ACDC uses the public SSL4MIS patient split instead
(`emfformer.data.acdc.acdc_split`).
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any, Protocol

from emfformer.data.acdc import acdc_split, load_acdc_split, read_acdc
from emfformer.data.cases import Case, DataError, DatasetInfo
from emfformer.io import atomic_write_text

__all__ = [
    "make_splits",
    "load_or_create_splits",
    "get_split",
    "select_cases",
    "uses_shipped_split",
    "describe_split",
    "SPLIT_PARTS",
    "PARTS",
]

log = logging.getLogger(__name__)

PARTS: tuple[str, ...] = ("train", "val", "test", "external_test")
ACDC_FOLD_RULE = (
    "ACDC has one public split (train / val / test), not folds: data.fold must be 0 (train on train, validate "
    "on val) or -1 (train on train + val, no validation)"
)


def uses_shipped_split(dataset: str) -> bool:
    """True for datasets whose split ships with the package (ACDC); folder datasets keep theirs per run."""
    return dataset == "acdc"


def describe_split(dataset: str, splits: Path | dict[str, Any]) -> str:
    """Where a run's split comes from, for reports."""
    if uses_shipped_split(dataset):
        return "public SSL4MIS ACDC split shipped with emfformer (splits/acdc_split.json)"
    return str(splits) if isinstance(splits, Path) else "stored in the checkpoint"


class SplitSettings(Protocol):
    """The split settings of a run (``emfformer.engine.config.DataConfig`` has them)."""

    dataset: str
    fold: int
    n_folds: int
    test_fraction: float
    split_seed: int
    max_cases: int | None


SPLIT_PARTS: tuple[str, ...] = ("train", "val", "test")
_SINGLE_SPLIT_VAL_FRACTION = 0.2


def make_splits(
    case_ids: list[str], n_folds: int = 5, test_fraction: float = 0.2, seed: int = 0
) -> dict[str, Any]:
    """Split case ids into a held-out test part and ``n_folds`` train/val folds of the rest.

    The ids are sorted before a seeded shuffle (Python's ``random.Random``), so the result depends only
    on the set of ids, ``n_folds``, ``test_fraction`` and ``seed``. Fold ``i`` validates on every
    ``n_folds``-th remaining case starting at ``i``; the val parts are disjoint and cover the non-test
    cases. All lists are sorted.

    Args:
        case_ids: unique case ids.
        n_folds: number of folds, >= 1 (1 = a single train/val split with 20 % validation).
        test_fraction: share of cases held out for testing, in [0, 1); 0 gives an empty test part,
            otherwise at least one case.
        seed: shuffle seed.

    Returns:
        ``{"seed", "n_folds", "test_fraction", "test": [...], "folds": [{"train": [...], "val": [...]}]}``.

    Raises:
        ValueError: bad arguments, duplicate ids, or too few cases for the folds.

    Example:
        >>> s = make_splits([f"c{i}" for i in range(10)], n_folds=2, test_fraction=0.2)
        >>> len(s["test"]), len(s["folds"][0]["train"]), len(s["folds"][0]["val"])
        (2, 4, 4)
    """
    if n_folds < 1:
        raise ValueError(f"n_folds must be >= 1, got {n_folds}.")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}.")
    ids = sorted(case_ids)
    if len(set(ids)) != len(ids):
        raise ValueError(f"case_ids contain duplicates: {sorted({i for i in ids if ids.count(i) > 1})[:10]}.")
    rng = random.Random(seed)
    rng.shuffle(ids)
    n_test = max(1, round(test_fraction * len(ids))) if test_fraction > 0 else 0
    test, rest = ids[:n_test], ids[n_test:]
    if len(rest) < max(n_folds, 2):
        raise ValueError(
            f"{len(ids)} cases leave {len(rest)} for training after the test part; "
            f"need at least {max(n_folds, 2)} for n_folds={n_folds}. Lower the folds (--set "
            f"data.n_folds={max(1, min(len(rest), n_folds - 1))}) or data.test_fraction, or add cases."
        )
    if n_folds == 1:
        n_val = max(1, round(_SINGLE_SPLIT_VAL_FRACTION * len(rest)))
        val_parts = [rest[:n_val]]
    else:
        val_parts = [rest[i::n_folds] for i in range(n_folds)]
    folds = [{"train": sorted(set(rest) - set(val)), "val": sorted(val)} for val in val_parts]
    return {
        "seed": seed,
        "n_folds": n_folds,
        "test_fraction": test_fraction,
        "test": sorted(test),
        "folds": folds,
    }


def _validate(splits: Any, path: Path) -> dict[str, Any]:
    """Check the structure of a loaded split file; raise DataError naming ``path`` otherwise."""
    hint = "Delete it to create a new split, or restore the original file."
    if not isinstance(splits, dict) or not isinstance(splits.get("folds"), list) or "test" not in splits:
        raise DataError(f"{path} is not a split file (needs 'test' and 'folds'). {hint}")
    test = set(splits["test"])
    for i, fold in enumerate(splits["folds"]):
        if not isinstance(fold, dict) or "train" not in fold or "val" not in fold:
            raise DataError(f"{path}: fold {i} needs 'train' and 'val' lists. {hint}")
        train, val = set(fold["train"]), set(fold["val"])
        if train & val or (train | val) & test:
            raise DataError(f"{path}: fold {i} has overlapping train/val/test cases. {hint}")
    if not splits["folds"]:
        raise DataError(f"{path} holds no folds. {hint}")
    splits.setdefault("n_folds", len(splits["folds"]))
    return splits


def _all_ids(splits: dict[str, Any]) -> set[str]:
    ids = set(splits["test"])
    for fold in splits["folds"]:
        ids |= set(fold["train"]) | set(fold["val"])
    return ids


def load_or_create_splits(
    path: Path, case_ids: list[str], n_folds: int = 5, test_fraction: float = 0.2, seed: int = 0
) -> dict[str, Any]:
    """Reuse the split file at ``path`` if it exists, else create it with `make_splits` and write it
    atomically.

    An existing file wins over the arguments (like nnU-Net's ``splits_final.json``): its recorded
    ``seed`` is kept, and cases absent from it (added later) are in no part. A different ``n_folds``
    is an error (the run would silently use other folds than it asks for).

    Args:
        path: JSON file, e.g. ``<run_dir>/splits.json``.
        case_ids: the ids present in the dataset now.
        n_folds, test_fraction, seed: passed to `make_splits` when the file is created.

    Raises:
        DataError: the file is malformed, or names cases that are not in ``case_ids`` (stale file).
    """
    path = Path(path)
    if path.exists():
        try:
            splits = _validate(json.loads(path.read_text(encoding="utf-8")), path)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{path} is not valid JSON: {exc}. Delete it to create a new split.") from exc
        if int(splits.get("n_folds", n_folds)) != n_folds:
            raise DataError(
                f"Split file {path} has {splits['n_folds']} folds but this run asks for {n_folds}. Use "
                "another run folder, or delete the split file to create a new split."
            )
        stale = sorted(_all_ids(splits) - set(case_ids))
        if stale:
            raise DataError(
                f"Split file {path} names {len(stale)} case(s) that are not in the dataset "
                f"(e.g. {stale[:5]}). Is --data pointing to the right folder? If the dataset changed on "
                "purpose, delete the split file to create a new one."
            )
        return splits
    splits = make_splits(case_ids, n_folds=n_folds, test_fraction=test_fraction, seed=seed)
    atomic_write_text(path, json.dumps(splits, indent=2) + "\n")
    return splits


def get_split(splits: dict[str, Any], fold: int, part: str) -> list[str]:
    """The case ids of one part of one fold (``test`` is the same for every fold).

    Args:
        splits: from `make_splits` / `load_or_create_splits`.
        fold: 0 <= fold < number of folds.
        part: ``"train"``, ``"val"`` or ``"test"``.

    Raises:
        ValueError: unknown part or fold out of range.
    """
    if part not in SPLIT_PARTS:
        raise ValueError(f"part must be one of {SPLIT_PARTS}, got {part!r}.")
    n = len(splits["folds"])
    if not 0 <= fold < n:
        raise ValueError(f"fold must be in 0..{n - 1} for this split file, got {fold}.")
    return list(splits["test"]) if part == "test" else list(splits["folds"][fold][part])


def select_cases(
    info: DatasetInfo, data: SplitSettings, part: str, splits: Path | dict[str, Any]
) -> list[Case]:
    """The cases of ``part`` (train | val | test | external_test), at most ``data.max_cases`` of them.

    Folder datasets: ``splits`` (a split dict, or a split file created from ``data.split_seed`` when
    missing) decides;
    ``data.fold == -1`` trains on all non-test cases.

    Raises:
        ValueError: unknown part, or external_test for a dataset that has none.
        DataError: the part is empty (e.g. a split file from another dataset).
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    if uses_shipped_split(data.dataset):
        cases = _acdc_part(info, data.fold, part)
    else:
        if part == "external_test":
            raise ValueError("external_test exists only for ACDC; folder datasets have train | val | test")
        if not isinstance(splits, dict):  # a file: reuse it, or create it from data.split_seed
            splits = _run_splits(Path(splits), info, data)
        if data.fold == -1 and part in ("train", "val"):  # train on every non-test case, validate on none
            wanted = set() if part == "val" else {i for f in splits["folds"] for i in f["train"] + f["val"]}
        else:
            wanted = set(
                get_split(splits, max(data.fold, 0), part)
            )  # the test part is the same in every fold
        cases = [c for c in info.cases if c.case_id in wanted]
    unlabelled = [c.case_id for c in cases if c.label is None]
    if unlabelled:  # only ACDC readers leave a frame without its _gt file
        log.warning(
            "%d case(s) of part %s have no ground truth and are left out: %s", len(unlabelled), part,
            ", ".join(unlabelled[:10]) + (" ..." if len(unlabelled) > 10 else ""),
        )  # fmt: skip
        cases = [c for c in cases if c.label is not None]
    if data.max_cases is not None:
        cases = cases[: data.max_cases]
    if not cases:
        raise DataError(
            f"Part {part!r} of dataset {info.name} ({info.root}) holds no cases; check the split."
        )
    return cases


def _run_splits(path: Path, info: DatasetInfo, data: SplitSettings) -> dict[str, Any]:
    """The run's split file: reused, else the dataset's ``splits_final.json`` (nnU-Net folds, no test
    part), else drawn from ``data.split_seed``; written beside it in nnU-Net's format as well."""
    ids = [c.case_id for c in info.cases]
    if not path.exists() and info.splits_final is not None:
        log.info("using the folds of %s (no held-out test part)", info.splits_final["source"])
        atomic_write_text(path, json.dumps(info.splits_final, indent=2) + "\n")
    n_folds = info.splits_final["n_folds"] if info.splits_final is not None else data.n_folds
    splits = load_or_create_splits(path, ids, n_folds, data.test_fraction, data.split_seed)
    final = path.with_name("splits_final.json")
    if path.name == "splits.json" and not final.exists():  # what nnU-Net reads: the same folds
        atomic_write_text(final, json.dumps(splits["folds"], indent=2) + "\n")
    return splits


def _acdc_part(info: DatasetInfo, fold: int, part: str) -> list[Case]:
    """ACDC's cases of ``part`` under the public split; ``fold`` -1 trains on train + val."""
    if part in ("train", "val") and fold not in (0, -1):  # the test parts do not depend on the fold
        raise ValueError(ACDC_FOLD_RULE + f", got {fold}.")
    if part == "val" and fold == -1:
        raise DataError(
            "An ACDC run with data.fold -1 trains on the train and val patients: it has no val part. "
            "Evaluate --part test or external_test."
        )
    source = read_acdc(info.root, "testing", require_labels=False) if part == "external_test" else info
    names = ("train", "val") if part == "train" and fold == -1 else (part,)
    cases = sorted(
        (c for name in names for c in acdc_split(source, name, strict=False)), key=lambda c: c.case_id
    )
    expected = sum(2 * len(load_acdc_split()[name]) for name in names)  # ED + ES frame of every patient
    if 0 < len(cases) < expected:
        log.warning("ACDC part %s has %d of its %d frames (incomplete dataset?)", part, len(cases), expected)
    return cases
