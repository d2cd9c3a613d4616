"""Find a dataset folder on disk and read it with the right reader.

Lookup order for `resolve_data_dir`: the explicit ``data`` argument (CLI ``--data DIR``), then the
environment variable ``EMFFORMER_DATA``, then the cache folder ``default_cache_dir() / <folder>``
(``$EMFFORMER_CACHE`` or ``~/.cache/emfformer``), where ``emfformer download`` puts datasets.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from emfformer.data.acdc import read_acdc
from emfformer.data.cases import DataError, DatasetInfo
from emfformer.data.msd import check_msd_dataset, read_msd_dataset

__all__ = [
    "DATASETS",
    "DATASET_FOLDERS",
    "default_cache_dir",
    "resolve_data_dir",
    "read_dataset",
    "load_dataset",
]

DATASETS: tuple[str, ...] = ("hippocampus", "acdc", "msd")
# Folder name of each downloadable dataset inside the cache folder (and under `download -o DIR`).
DATASET_FOLDERS: dict[str, str] = {"hippocampus": "Task04_Hippocampus", "acdc": "ACDC"}
DATA_ENV = "EMFFORMER_DATA"
CACHE_ENV = "EMFFORMER_CACHE"


def default_cache_dir() -> Path:
    """``$EMFFORMER_CACHE`` if set, else ``~/.cache/emfformer``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "emfformer"


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}.")


def resolve_data_dir(dataset: str, data: str | Path | None = None) -> Path:
    """The folder of ``dataset``: ``data`` if given, else ``$EMFFORMER_DATA``, else the cache folder.

    Args:
        dataset: ``"hippocampus"``, ``"acdc"`` or ``"msd"`` (any MSD task folder; needs ``data`` or
            ``EMFFORMER_DATA``, there is no cache entry for it).
        data: explicit folder (e.g. from ``--data``); wins over everything else.

    Returns:
        An existing folder (its layout is checked by the readers, see `read_dataset`).

    Raises:
        ValueError: unknown dataset.
        DataError: the chosen folder does not exist, or none of the three options gives a folder; the
            message lists the options.
    """
    _check_dataset(dataset)
    if data is not None:
        path, origin = Path(data).expanduser(), "the --data argument"
    elif os.environ.get(DATA_ENV):
        path, origin = Path(os.environ[DATA_ENV]).expanduser(), f"${DATA_ENV}"
    else:
        path, origin = None, ""
    if path is not None:
        if not path.is_dir():
            raise DataError(f"Data folder {path} (from {origin}) does not exist or is not a folder.")
        return path
    folder = DATASET_FOLDERS.get(dataset)
    if folder is not None and (default_cache_dir() / folder).is_dir():
        return default_cache_dir() / folder
    options = [
        "pass the folder explicitly: --data DIR",
        f"set the environment variable {DATA_ENV}=DIR",
    ]
    if folder is not None:
        options.append(
            f"download it into the cache: `emfformer download {dataset} -o {default_cache_dir()}` "
            f"(creates {default_cache_dir() / folder}; set {CACHE_ENV} to use another cache folder)"
        )
    else:
        options.append("('msd' means any MSD task folder, so there is no download for it)")
    listed = "\n  - ".join(options)
    where = f" and not in the cache ({default_cache_dir() / folder})" if folder else ""
    raise DataError(f"No data folder given for dataset {dataset!r}{where}. Either:\n  - {listed}")


def read_dataset(dataset: str, root: Path, check: bool = True) -> DatasetInfo:
    """Read ``root`` with the reader of ``dataset``.

    Args:
        dataset: ``"hippocampus"``/``"msd"`` -> `read_msd_dataset`; ``"acdc"`` -> `read_acdc`
            (the 100 labelled training patients).
        root: the dataset folder, e.g. from `resolve_data_dir`.
        check: run the integrity check `check_msd_dataset` (files, shapes, affines, label values).

    Raises:
        ValueError: unknown dataset.
        DataError: the folder does not have the expected layout.
    """
    _check_dataset(dataset)
    if dataset != "acdc":
        return read_msd_dataset(Path(root), check=check)
    info = read_acdc(Path(root), "training", require_labels=False)  # frames without _gt: left out per part
    if check:
        check_msd_dataset(info)
    return info


class _Located(Protocol):
    dataset: str
    data_dir: str | None


def load_dataset(data: _Located, check: bool = True, progress: bool = True) -> DatasetInfo:
    """Find the dataset folder (``data.data_dir`` > $EMFFORMER_DATA > cache), read and check it."""
    info = read_dataset(data.dataset, resolve_data_dir(data.dataset, data.data_dir), check=False)
    if check:
        check_msd_dataset(info, progress=progress)
    return info
