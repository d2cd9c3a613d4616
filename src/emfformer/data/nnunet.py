"""The nnU-Net v2 raw layout: channels, file endings, ``imagesTs`` and ``splits_final.json``.

A dataset folder holds ``dataset.json`` (``channel_names``, ``labels``, ``file_ending``), ``imagesTr/``
with ``<case>_<channel:04d><ending>`` files, ``labelsTr/<case><ending>`` and optionally ``imagesTs/``
(unlabelled cases) and ``splits_final.json`` (nnU-Net's cross-validation folds). A 2D dataset of
natural images stores one RGB PNG per case (``<case>_0000.png``, ``channel_names`` R / G / B), so one
file may hold several channels. See nnU-Net's ``documentation/dataset_format.md``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .cases import IMAGE_SUFFIXES, Case, DataError, case_stem

__all__ = ["FILE_ENDINGS", "channel_names", "check_file_ending", "list_cases", "read_splits_final"]

FILE_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha", ".png")


def channel_names(meta: dict[str, Any], path: Path) -> tuple[str, ...]:
    """Input channel names from ``channel_names`` (v2) or ``modality`` (MSD), ordered by index."""
    raw = meta.get("channel_names", meta.get("modality", {"0": "image"}))
    if not isinstance(raw, dict) or not raw:
        raise DataError(f'{path}: "channel_names" must be a mapping such as {{"0": "CT"}}, got {raw!r}.')
    try:
        by_index = {int(k): str(v) for k, v in raw.items()}
    except (TypeError, ValueError):
        raise DataError(
            f'{path}: "channel_names" keys must be channel indices "0", "1", ...: {raw!r}.'
        ) from None
    if sorted(by_index) != list(range(len(by_index))):
        raise DataError(f'{path}: "channel_names" indices {sorted(by_index)} must be 0..{len(by_index) - 1}.')
    return tuple(by_index[i] for i in range(len(by_index)))


def check_file_ending(meta: dict[str, Any], root: Path, path: Path) -> str:
    """The dataset's ``file_ending``; refuses unknown endings and folders that mix endings."""
    ending = str(meta.get("file_ending", ".nii.gz")).lower()
    if ending not in FILE_ENDINGS:
        raise DataError(f"{path}: file_ending {ending!r} is not one of {', '.join(FILE_ENDINGS)}.")
    for folder in ("imagesTr", "labelsTr", "imagesTs"):
        if not (root / folder).is_dir():
            continue
        names = [p.name for p in (root / folder).iterdir() if p.is_file() and not p.name.startswith(".")]
        other = sorted(
            n for n in names if n.lower().endswith(IMAGE_SUFFIXES) and not n.lower().endswith(ending)
        )
        if other:
            raise DataError(
                f"{root / folder} mixes file endings: dataset.json says {ending!r} but it holds {other[:3]}"
                f"{' ...' if len(other) > 3 else ''}. Convert every image to one format."
            )
    return ending


def _channel_files(folder: Path, case_id: str, ending: str, n_channels: int) -> tuple[Path, ...]:
    """``<case>_0000`` .. ``_000{n-1}``; one ``_0000`` PNG holds all RGB channels; ``<case><ending>`` for
    single-channel folders without the suffix. Missing files are listed as expected (the check names them)."""
    files = tuple(folder / f"{case_id}_{k:04d}{ending}" for k in range(n_channels))
    if n_channels == 1 and not files[0].exists() and (folder / f"{case_id}{ending}").exists():
        return (folder / f"{case_id}{ending}",)
    if ending == ".png" and not files[-1].exists():
        return files[:1]  # natural images: one RGB file, channels R / G / B
    return files


def list_cases(root: Path, ending: str, n_channels: int, part: str = "Tr") -> list[Case]:
    """Cases of ``imagesTr`` (by their labels in ``labelsTr``) or of ``imagesTs`` (unlabelled)."""
    if part == "Tr":
        labels = sorted(p for p in (root / "labelsTr").iterdir() if p.name.lower().endswith(ending))
        ids = [p.name[: -len(ending)] for p in labels if not p.name.startswith(".")]
        label_of = {p.name[: -len(ending)]: p for p in labels}
        folder = root / "imagesTr"
    else:
        folder = root / "imagesTs"
        if not folder.is_dir():
            return []
        names = [
            p.name for p in folder.iterdir() if p.name.lower().endswith(ending) and not p.name.startswith(".")
        ]
        ids = sorted({case_stem(n) for n in names})
        label_of = {}
    cases = []
    for case_id in ids:
        files = _channel_files(folder, case_id, ending, n_channels)
        cases.append(Case(case_id, files[0], label_of.get(case_id), channels=files[1:]))
    return cases


def unlabelled_images(root: Path, ending: str, cases: list[Case]) -> list[Path]:
    """Image files of ``imagesTr`` that no labelled case reads (nnU-Net refuses them): compared by the
    files the cases use, not by a stem (a one-channel ``case_0001.nii.gz`` without ``_0000`` is a case)."""
    used = {p.name for c in cases for p in c.images}
    images = (root / "imagesTr").iterdir()
    return sorted(
        p for p in images if p.name.lower().endswith(ending) and not p.name.startswith(".") and p.name not in used
    )  # fmt: skip


def numtraining_problem(meta: dict[str, Any], n_cases: int, meta_path: Path) -> str | None:
    """Why dataset.json's ``numTraining`` disagrees with the labelled cases found (None: it agrees)."""
    stated = meta.get("numTraining")
    if isinstance(stated, int) and not isinstance(stated, bool) and stated != n_cases:
        return (
            f"{meta_path} says numTraining {stated}, but labelsTr holds {n_cases} labelled case(s) with "
            "images: a copy may be incomplete; training uses the cases found"
        )
    return None


def read_splits_final(root: Path, case_ids: list[str]) -> dict[str, Any] | None:
    """``root/splits_final.json`` (nnU-Net: ``[{"train": [...], "val": [...]}, ...]``) as a split dict
    with an empty test part, or ``None`` when the file is absent.

    Raises:
        DataError: malformed, or naming cases that the dataset does not have.
    """
    path = root / "splits_final.json"
    if not path.is_file():
        return None
    try:
        folds = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON: {exc}.") from exc
    if (
        not isinstance(folds, list)
        or not folds
        or not all(
            isinstance(f, dict) and isinstance(f.get("train"), list) and isinstance(f.get("val"), list)
            for f in folds
        )
    ):
        raise DataError(
            f'{path} must be a list of {{"train": [...], "val": [...]}} folds, as nnU-Net writes it.'
        )
    known = set(case_ids)
    unknown = sorted({i for f in folds for i in f["train"] + f["val"]} - known)
    if unknown:
        raise DataError(
            f"{path} names cases that are not in labelsTr: {unknown[:5]}. Is it from another dataset?"
        )
    return {
        "source": str(path), "seed": None, "n_folds": len(folds), "test_fraction": 0.0, "test": [],
        "folds": [{"train": list(f["train"]), "val": list(f["val"])} for f in folds],
    }  # fmt: skip
