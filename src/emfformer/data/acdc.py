"""Reader for the ACDC dataset (Automated Cardiac Diagnosis Challenge, Bernard et al., IEEE TMI 2018)
in its official layout, and the public SSL4MIS 70/10/20 patient split.

Layout (as unpacked from the official Creatis "humanheart-project" archive, whose top folder is
``database/``; both ``<root>`` and ``<root>/database`` are accepted)::

    <root>/training/patient001/Info.cfg                 # ED: 1, ES: 12, Group: DCM, NbFrame: 30, ...
    <root>/training/patient001/patient001_4d.nii.gz
    <root>/training/patient001/patient001_frame01.nii.gz    + patient001_frame01_gt.nii.gz  (ED)
    <root>/training/patient001/patient001_frame12.nii.gz    + patient001_frame12_gt.nii.gz  (ES)
    <root>/testing/patient101/...                         # same, patients 101-150

Labels: 0 background, 1 RV cavity, 2 myocardium, 3 LV cavity. One `Case` per ED/ES frame.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from emfformer.data.cases import Case, DataError, DatasetInfo

__all__ = [
    "ACDC_CLASS_NAMES",
    "ACDC_GROUPS",
    "ACDC_SPLIT_PARTS",
    "acdc_base",
    "read_info_cfg",
    "read_acdc",
    "acdc_patient_id",
    "load_acdc_split",
    "acdc_split",
]

ACDC_CLASS_NAMES: tuple[str, ...] = ("background", "RV", "MYO", "LV")
ACDC_GROUPS: tuple[str, ...] = ("DCM", "HCM", "MINF", "NOR", "RV")
ACDC_SPLIT_PARTS: tuple[str, ...] = ("train", "val", "test", "external_test")
_SUBSETS = ("training", "testing")
_PATIENT_DIR = re.compile(r"^patient\d{3}$")
_REQUIRED_KEYS = ("ED", "ES", "Group", "NbFrame")


def acdc_base(root: Path) -> Path:
    """The folder holding ``training/`` and ``testing/``: ``root`` itself or ``root/database``."""
    root = Path(root)
    for base in (root, root / "database"):
        if any((base / subset).is_dir() for subset in _SUBSETS):
            return base
    raise DataError(
        f"No ACDC dataset at {root}: expected {root}/training/patientXXX/ and/or {root}/testing/patientXXX/ "
        "(the official archive unpacks to database/training and database/testing). Get ACDC with "
        "`emfformer download acdc -o DIR` or from https://www.creatis.insa-lyon.fr/Challenge/acdc/."
    )


def read_info_cfg(path: Path) -> dict[str, str]:
    """Parse an ACDC ``Info.cfg`` (``Key: value`` lines) into a dict of strings.

    Raises:
        DataError: the file is missing, a line is malformed, or ED/ES/Group/NbFrame is absent.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Missing {path}; every ACDC patient folder has an Info.cfg (ED, ES, Group, ...).")
    values: dict[str, str] = {}
    text = path.read_text(encoding="utf-8-sig")  # a BOM from Windows editors is not part of "ED"
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise DataError(f"{path}, line {n}: expected 'Key: value', got {line!r}.")
        values[key.strip()] = value.strip()
    missing = [k for k in _REQUIRED_KEYS if k not in values]
    if missing:
        raise DataError(
            f"{path} lacks {missing}; an ACDC Info.cfg lists ED, ES, Group, NbFrame, Height, Weight."
        )
    return values


def _frame_number(info: dict[str, str], key: str, path: Path) -> int:
    try:
        frame, nb = int(float(info[key])), int(float(info["NbFrame"]))
    except ValueError as exc:
        raise DataError(
            f"{path}: {key} = {info[key]!r} / NbFrame = {info['NbFrame']!r} are not numbers."
        ) from exc
    if not 1 <= frame <= nb:
        raise DataError(f"{path}: {key} = {frame} is outside the frames 1..NbFrame = {nb}.")
    return frame


def _nifti_file(folder: Path, stem: str) -> Path:
    """``folder/stem.nii.gz``, or ``folder/stem.nii`` when only the uncompressed file is there."""
    gz = folder / f"{stem}.nii.gz"
    return folder / f"{stem}.nii" if not gz.is_file() and (folder / f"{stem}.nii").is_file() else gz


def _patient_cases(folder: Path, require_labels: bool) -> list[Case]:
    cfg = folder / "Info.cfg"
    info = read_info_cfg(cfg)
    patient = folder.name
    frames = sorted({_frame_number(info, "ED", cfg), _frame_number(info, "ES", cfg)})
    cases = []
    for frame in frames:
        case_id = f"{patient}_frame{frame:02d}"
        image = _nifti_file(folder, case_id)
        label: Path | None = _nifti_file(folder, f"{case_id}_gt")
        if not image.is_file():
            raise DataError(
                f"Missing {image}: {cfg} names frame {frame} as ED/ES but its image is not there. "
                "Re-extract the patient folder from the official archive."
            )
        if not label.is_file():
            if require_labels:
                raise DataError(f"Missing ground truth {label} for {image}. Re-extract the patient folder.")
            label = None
        cases.append(Case(case_id, image, label, info["Group"]))
    return cases


def read_acdc(root: Path, subset: str = "training", require_labels: bool = True) -> DatasetInfo:
    """Read one subset of ACDC into a `DatasetInfo` with one case per ED/ES frame.

    Args:
        root: the folder holding ``training/`` and ``testing/``, or the one holding ``database/``.
        subset: ``"training"`` (patients 001-100) or ``"testing"`` (101-150).
        require_labels: raise when a ``_gt`` file is missing; with ``False`` such cases get ``label=None``.

    Returns:
        ``DatasetInfo(name="ACDC", root=<folder holding training/testing>,
        class_names=("background", "RV", "MYO", "LV"))``; cases sorted by id, e.g. ``patient001_frame01``,
        ``group`` = the Info.cfg ``Group``.

    Raises:
        DataError: no ACDC layout at ``root``, no patient folders, missing Info.cfg / frame files.
    """
    if subset not in _SUBSETS:
        raise ValueError(f"subset must be one of {_SUBSETS}, got {subset!r}.")
    base = acdc_base(root)
    folder = base / subset
    if not folder.is_dir():
        raise DataError(f"Missing {folder}; the ACDC {subset} set is expected there as {subset}/patientXXX/.")
    patients = sorted(p for p in folder.iterdir() if p.is_dir() and _PATIENT_DIR.match(p.name))
    if not patients:
        raise DataError(f"No patientXXX folders in {folder}; is this an ACDC {subset} folder?")
    cases = [case for patient in patients for case in _patient_cases(patient, require_labels)]
    return DatasetInfo("ACDC", base, ACDC_CLASS_NAMES, tuple(cases))


def acdc_patient_id(case_id: str) -> str:
    """``"patient001_frame01"`` -> ``"patient001"``."""
    return case_id.split("_", 1)[0]


@lru_cache(maxsize=1)
def _split_text() -> str:
    return resources.files("emfformer").joinpath("splits/acdc_split.json").read_text(encoding="utf-8")


def load_acdc_split() -> dict[str, Any]:
    """The public ACDC patient split (package data ``emfformer/splits/acdc_split.json``).

    Patient ids of the 100 official training patients: 70 ``train`` / 10 ``val`` / 20 ``test``, the lists
    shared by the SSL4MIS repository (HiLab-git/SSL4MIS ``data/ACDC/*.list``) and the ACDC papers built on
    it (not stratified by pathology group); plus ``external_test`` = the 50 official testing patients.
    """
    return json.loads(_split_text())


def acdc_split(root_or_info: Path | str | DatasetInfo, part: str, strict: bool = True) -> list[Case]:
    """The cases (both ED and ES frames) of the patients in one part of the public split.

    Args:
        root_or_info: the ACDC folder (``training/`` is read for train/val/test, ``testing/`` for
            external_test) or an already read `DatasetInfo`.
        part: ``"train"``, ``"val"``, ``"test"`` or ``"external_test"``.
        strict: raise when patients of that part are absent. ``False`` returns the cases that are
            present (possibly none), e.g. for synthetic phantoms holding only a few patients.

    Returns:
        Cases sorted by id.

    Raises:
        ValueError: unknown ``part``.
        DataError: with ``strict``, patients of the part are missing from the data.
    """
    if part not in ACDC_SPLIT_PARTS:
        raise ValueError(f"part must be one of {ACDC_SPLIT_PARTS}, got {part!r}.")
    wanted = set(load_acdc_split()[part])
    if isinstance(root_or_info, DatasetInfo):
        info = root_or_info
    else:
        info = read_acdc(Path(root_or_info), "testing" if part == "external_test" else "training")
    cases = sorted((c for c in info.cases if acdc_patient_id(c.case_id) in wanted), key=lambda c: c.case_id)
    missing = sorted(wanted - {acdc_patient_id(c.case_id) for c in cases})
    if strict and missing:
        raise DataError(
            f"ACDC split part {part!r} needs {len(wanted)} patients but {len(missing)} are missing from "
            f"{info.root} (e.g. {missing[:5]}). Use the complete official dataset, or pass strict=False "
            "to use only the patients present (synthetic phantoms, partial copies)."
        )
    return cases
