"""Which cases make up the train / val / test parts of a run, for every dataset kind.

Folder datasets (Hippocampus, any MSD task): a fixed test part + k folds, stored as ``splits.json`` in
the run folder and reused. ACDC: the published patient split shipped with the package.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..data.acdc import acdc_split, read_acdc
from ..data.cases import Case, DataError, DatasetInfo
from ..data.locate import read_dataset, resolve_data_dir
from ..data.msd import check_msd_dataset
from ..data.splits import get_split, load_or_create_splits
from .config import DataConfig

__all__ = ["PARTS", "load_dataset", "select_cases"]

log = logging.getLogger(__name__)

PARTS = ("train", "val", "test", "external_test")


def load_dataset(data: DataConfig, check: bool = True, progress: bool = True) -> DatasetInfo:
    """Find the dataset folder (``data.data_dir`` > $EMFFORMER_DATA > cache), read and check it."""
    info = read_dataset(data.dataset, resolve_data_dir(data.dataset, data.data_dir), check=False)
    if check:
        check_msd_dataset(info, progress=progress)
    return info


def select_cases(info: DatasetInfo, data: DataConfig, part: str, splits_file: Path, seed: int) -> list[Case]:
    """The cases of ``part`` (train | val | test | external_test), at most ``data.max_cases`` of them.

    Raises:
        ValueError: unknown part, or external_test for a dataset that has none.
        DataError: the part is empty (e.g. a split file from another dataset).
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    if data.dataset == "acdc":
        source = read_acdc(info.root, "testing") if part == "external_test" else info
        cases = acdc_split(source, part, strict=False)
        expected = {"train": 140, "val": 20, "test": 40, "external_test": 100}[part]
        if 0 < len(cases) < expected:
            log.warning(
                "ACDC part %s has %d of its %d frames (incomplete dataset?)", part, len(cases), expected
            )
    else:
        if part == "external_test":
            raise ValueError("external_test exists only for ACDC; folder datasets have train | val | test")
        ids = [c.case_id for c in info.cases]
        splits = load_or_create_splits(splits_file, ids, data.n_folds, data.test_fraction, seed)
        wanted = set(get_split(splits, data.fold, part))
        cases = [c for c in info.cases if c.case_id in wanted]
    if data.max_cases is not None:
        cases = cases[: data.max_cases]
    if not cases:
        raise DataError(
            f"Part {part!r} of dataset {info.name} ({info.root}) holds no cases; check the split."
        )
    return cases
