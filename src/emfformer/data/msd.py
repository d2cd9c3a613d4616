"""Reader and integrity check for Medical Segmentation Decathlon (MSD) / nnU-Net style task folders.

Expected layout (MSD, e.g. ``Task04_Hippocampus``)::

    <root>/dataset.json          # "labels", "modality", "training": [{"image": ..., "label": ...}]
    <root>/imagesTr/<case>.nii.gz
    <root>/labelsTr/<case>.nii.gz

nnU-Net v2 folders (``channel_names``, ``labels`` as ``{"background": 0, ...}``, ``file_ending``, no
``training`` list, images named ``<case>_0000<ending>``, several channels, ``imagesTs``,
``splits_final.json``) are read through `emfformer.data.nnunet`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from emfformer.data import nnunet
from emfformer.data.cases import Case, DataError, DatasetInfo, nifti_stem, open_image
from emfformer.progress import tqdm

log = logging.getLogger(__name__)

__all__ = ["read_msd_dataset", "check_msd_dataset"]

_MAX_LISTED_PROBLEMS = 20


def parse_class_names(labels: Any, path: Path) -> tuple[str, ...]:
    """Turn ``dataset.json["labels"]`` (MSD ``{"0": "background"}`` or nnU-Net v2 ``{"background": 0}``)
    into names ordered by label value; values must be exactly 0..n-1."""
    if not isinstance(labels, dict) or not labels:
        raise DataError(
            f'{path}: "labels" must be a non-empty mapping, e.g. {{"0": "background", "1": "..."}}.'
        )
    by_value: dict[int, str] = {}
    for key, value in labels.items():
        if isinstance(value, (list, tuple)):
            raise DataError(
                f"{path}: label {key!r} is a region ({value}); region-based nnU-Net labels are not supported."
            )
        if str(key).strip().lstrip("-").isdigit():  # MSD style: "1": "Anterior"
            index, name = int(key), str(value)
        elif isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):  # nnU-Net v2
            index, name = int(value), str(key)
        else:
            raise DataError(f"{path}: cannot tell the label value of {key!r}: {value!r}.")
        if index in by_value:
            raise DataError(f"{path}: label value {index} is listed twice ({by_value[index]!r}, {name!r}).")
        by_value[index] = name
    if sorted(by_value) != list(range(len(by_value))):
        raise DataError(
            f"{path}: label values {sorted(by_value)} must be consecutive from 0 (0 = background); "
            "remap the label files and dataset.json."
        )
    return tuple(by_value[i] for i in range(len(by_value)))


def _resolve(root: Path, rel: str) -> Path:
    rel = rel[2:] if rel.startswith("./") else rel
    return root / rel


def _cases_from_training_list(root: Path, entries: Any, path: Path) -> list[Case]:
    if not isinstance(entries, list):
        raise DataError(f'{path}: "training" must be a list of {{"image": ..., "label": ...}} entries.')
    cases = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
            raise DataError(f'{path}: training entry {i} ({entry!r}) needs both "image" and "label".')
        image = _resolve(root, str(entry["image"]))
        cases.append(Case(nifti_stem(image.name), image, _resolve(root, str(entry["label"]))))
    return cases


def read_msd_dataset(root: Path, check: bool = True) -> DatasetInfo:
    """Read an MSD / nnU-Net task folder into a `DatasetInfo`.

    Args:
        root: the task folder, the one holding ``dataset.json``, ``imagesTr/`` and ``labelsTr/``.
        check: also run `check_msd_dataset` (files present, geometry, label values).

    Returns:
        The dataset; ``class_names`` ordered by label value, cases in ``dataset.json`` order, ``case_id``
        = file name without ``.nii.gz`` (e.g. ``hippocampus_004``).

    Raises:
        DataError: missing folder / ``dataset.json``, a multi-channel task, malformed labels, or (with
            ``check``) any integrity problem.

    Example:
        >>> info = read_msd_dataset(Path("Task04_Hippocampus"))  # doctest: +SKIP
        >>> info.class_names
        ('background', 'Anterior', 'Posterior')
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"MSD dataset folder not found: {root}. Expected a task folder such as Task04_Hippocampus "
            "with dataset.json, imagesTr/ and labelsTr/ (get it with `emfformer download hippocampus -o DIR`)."
        )
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        raise DataError(
            f"No dataset.json in {root}. An MSD task folder must contain dataset.json, imagesTr/ and "
            "labelsTr/; point to the task folder itself (e.g. .../Task04_Hippocampus), not its parent."
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{meta_path} is not valid JSON: {exc}. Restore it from the original archive."
        ) from exc
    if not isinstance(meta, dict):
        raise DataError(f"{meta_path} must hold a JSON object.")
    for folder in ("imagesTr", "labelsTr"):
        if not (root / folder).is_dir():
            raise DataError(
                f"Missing folder {root / folder}; an MSD task folder has imagesTr/ and labelsTr/."
            )
    channels = nnunet.channel_names(meta, meta_path)
    class_names = parse_class_names(meta.get("labels"), meta_path)
    test_cases: list[Case] = []
    if "training" in meta:  # MSD v1: one (possibly 4D, multi-channel) file per case
        cases = _cases_from_training_list(root, meta["training"], meta_path)
    else:
        ending = nnunet.check_file_ending(meta, root, meta_path)
        cases = nnunet.list_cases(root, ending, len(channels))
        test_cases = nnunet.list_cases(root, ending, len(channels), part="Ts")
        _check_labels_present(root, ending, cases, meta, meta_path)
    if not cases:
        raise DataError(f"{meta_path} lists no labelled training cases.")
    ids = [c.case_id for c in cases]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise DataError(f"{meta_path}: case ids appear more than once: {dup[:10]}.")
    splits_final = nnunet.read_splits_final(root, ids)
    name = str(meta.get("name", root.name))
    info = DatasetInfo(name, root, class_names, tuple(cases), channels, tuple(test_cases), splits_final)
    if check:
        check_msd_dataset(info)
    return info


def _check_labels_present(
    root: Path, ending: str, cases: list[Case], meta: dict[str, Any], meta_path: Path
) -> None:
    """Refuse images without a label (as nnU-Net does: a lost label must not shrink the dataset
    silently); warn when numTraining disagrees with the cases found.

    Raises:
        DataError: naming the image files without a label.
    """
    orphans = nnunet.unlabelled_images(root, ending, cases)
    if orphans:
        names = ", ".join(p.name for p in orphans[:5]) + (" ..." if len(orphans) > 5 else "")
        msg = (
            f"{len(orphans)} image file(s) of {root / 'imagesTr'} have no label in {root / 'labelsTr'}: {names}. "
            "Add the missing label files, or move those images to imagesTs/ (unlabelled cases)"
        )
        raise DataError(msg)
    problem = nnunet.numtraining_problem(meta, len(cases), meta_path)
    if problem:
        log.warning(problem)


def _channel_count(case: Case) -> tuple[int, list[str], tuple[int, ...] | None]:
    """(channels found, problems, spatial shape) of a case's image files."""
    count, problems, shape = 0, [], None
    for path in case.images:
        if not path.is_file():
            problems.append(f"{case.case_id}: image file missing: {path}")
            continue
        try:
            img = open_image(path, channels=True)
        except DataError as exc:
            problems.append(f"{case.case_id}: {exc}")
            continue
        count += img.shape[3] if len(img.shape) == 4 else 1
        if shape is None:
            shape = tuple(img.shape[:3])
        elif tuple(img.shape[:3]) != shape:
            problems.append(
                f"{case.case_id}: channel file {path} has shape {img.shape[:3]}, channel 0 has {shape}"
            )
    return count, problems, shape


def _case_problems(case: Case, num_classes: int, num_channels: int | None = None) -> list[str]:
    count, problems, shape = _channel_count(case)
    if problems:
        return problems
    if num_channels is not None and count != num_channels:
        return [
            f"{case.case_id}: {count} input channel(s) in {', '.join(str(p) for p in case.images)}, but "
            f"dataset.json lists {num_channels}; every case needs the same channels (_0000, _0001, ...)"
        ]
    if case.label is None:
        return [f"{case.case_id}: no label file listed for {case.image}"]
    if not Path(case.label).is_file():
        return [f"{case.case_id}: label file missing: {case.label} (image {case.image})"]
    try:  # the loader of training and prediction: the same files pass (any-case names, (X, Y, Z, 1))
        img = open_image(Path(case.image), channels=True)
        lab = open_image(Path(case.label))
    except DataError as exc:
        return [f"{case.case_id}: {exc}"]
    if lab.shape != shape:
        problems.append(
            f"{case.case_id}: label {case.label} has shape {lab.shape} but image {case.image} has {shape}"
        )
    elif not np.allclose(lab.affine, img.affine, atol=1e-3):
        problems.append(f"{case.case_id}: label {case.label} and image {case.image} have different affines")
    if not problems:
        try:
            values = np.unique(np.asarray(lab.dataobj))
        except Exception as exc:  # EOFError, zlib.error... for truncated or corrupt files
            return [f"{case.case_id}: cannot read the voxels of {case.label}: {exc} (is the file complete?)"]
        bad = [v for v in values.tolist() if not (np.isfinite(v) and v == int(v) and 0 <= v < num_classes)]
        if bad:
            problems.append(
                f"{case.case_id}: label {case.label} has values {bad[:10]} outside 0..{num_classes - 1} "
                "(the labels of dataset.json); fix the label file or add the class to dataset.json"
            )
    return problems


def _mixed_dimensions(info: DatasetInfo) -> list[str]:
    """2D cases (one slice) and 3D cases may not share a dataset."""
    flat = []
    for case in info.cases:
        try:
            flat.append(min(open_image(Path(case.image), channels=True).shape[:3]) == 1)
        except DataError:
            flat.append(False)  # reported by _case_problems
    if any(flat) and not all(flat):
        two_d = [c.case_id for c, f in zip(info.cases, flat, strict=True) if f]
        return [
            f"{len(two_d)} case(s) are 2D (one slice, e.g. {two_d[0]}) and {len(flat) - len(two_d)} are 3D; "
            "a dataset holds either 2D or 3D cases: split it into two datasets"
        ]
    return []


def check_msd_dataset(info: DatasetInfo, progress: bool = True) -> None:
    """Check every case: image and label files exist and are readable, both are 3D with the same
    shape and affine (read from the headers), and label values lie in ``range(info.num_classes)``.

    Works for any `DatasetInfo` whose cases are labelled (MSD or ACDC). All problems are collected and
    reported together.

    Args:
        info: the dataset, e.g. from `read_msd_dataset(root, check=False)`.
        progress: show a tqdm progress bar.

    Raises:
        DataError: listing each faulty case with the file concerned.
    """
    problems: list[str] = []
    for case in tqdm(  # unlabelled (ACDC) frames are not checked: select_cases leaves them out
        [c for c in info.cases if c.label is not None],
        desc=f"checking {info.name}",
        unit="case",
        disable=not progress,
        leave=False,
    ):
        problems.extend(_case_problems(case, info.num_classes, len(info.channel_names)))
    if not problems:
        problems = _mixed_dimensions(info)
    if problems:
        listed = "\n  - ".join(problems[:_MAX_LISTED_PROBLEMS])
        more = len(problems) - _MAX_LISTED_PROBLEMS
        tail = f"\n  ... and {more} more" if more > 0 else ""
        raise DataError(
            f"Dataset {info.name} at {info.root} failed the integrity check ({len(problems)} problem(s)):"
            f"\n  - {listed}{tail}\nRe-download or repair these files (or remove the cases from dataset.json)."
        )
