"""Score a folder of predictions against a folder of reference labels (``evaluate --pred --labels``).

Predictions and references are paired by case id: the file name without its ending and without
nnU-Net's ``_0000`` channel suffix, so ``predict``'s outputs pair with ``labelsTr/`` directly. Each pair
must cover the same voxels (shape and affine); the metrics are those of `emfformer.evaluate`: per case
and per class 3D Dice, IoU and HD95 in mm (from the reference's voxel spacing).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from emfformer.progress import tqdm

from ..data.cases import IMAGE_SUFFIXES, Case, DataError, load_volume, nifti_stem, open_image
from ..data.msd import parse_class_names

__all__ = ["score_folders"]

log = logging.getLogger(__name__)


def _by_case(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(f"{what} folder {folder} does not exist.")
    files = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES) and not p.name.startswith("."):
            files[nifti_stem(p.name).removesuffix("_0000")] = p
    if not files:
        raise DataError(f"No label files ({', '.join(IMAGE_SUFFIXES)}) in {what} folder {folder}.")
    return files


def _largest_value(files: list[Path]) -> int:
    """The largest label value over ``files`` (one file in memory at a time)."""
    return max(int(np.asarray(open_image(p).dataobj).max()) for p in files)


def _class_names_for(
    labels: Path, dataset_json: Path | None, preds: dict[str, Path], refs: dict[str, Path]
) -> list[str]:
    path = dataset_json or labels.parent / "dataset.json"
    if path.is_file():
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{path} is not valid JSON: {exc}.") from exc
        return list(parse_class_names(meta.get("labels"), path))
    if dataset_json is not None:
        raise DataError(f"--dataset-json {dataset_json} does not exist.")
    largest = _largest_value([refs[c] for c in preds] + list(preds.values()))
    log.warning("no dataset.json beside %s: classes are numbered 0..%d", labels, largest)
    return ["background"] + [f"class_{i}" for i in range(1, largest + 1)]


def score_folders(
    pred: str | Path,
    labels: str | Path,
    out_dir: str | Path,
    dataset_json: str | Path | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Score every prediction in ``pred`` against its reference in ``labels``; writes the report.

    Args:
        pred: folder of predicted label files (any format emfformer reads).
        labels: folder of reference label files, e.g. a dataset's ``labelsTr``.
        out_dir: where ``metrics.json``, ``per_case.csv`` and ``summary.md`` go.
        dataset_json: class names; default ``labels/../dataset.json``, else numbered classes.

    Raises:
        DataError: a folder is missing or empty, a prediction has no reference, shapes/affines differ,
            or a value lies outside the classes.
    """
    from ..guard import check_report_dir
    from ..metrics import case_metrics, summarize  # MONAI: imported on use
    from ..metrics_report import write_report

    check_report_dir(out_dir, overwrite)  # never destroy (guard.py): before any work
    preds, refs = _by_case(Path(pred), "prediction"), _by_case(Path(labels), "reference")
    missing = sorted(set(preds) - set(refs))
    if missing:
        raise DataError(f"{len(missing)} prediction(s) have no reference in {labels}: {missing[:5]}.")
    if len(preds) < len(refs):
        log.info("%d reference case(s) have no prediction and are not scored", len(refs) - len(preds))
    class_names = _class_names_for(
        Path(labels), None if dataset_json is None else Path(dataset_json), preds, refs
    )
    rows = []  # one pair in memory at a time
    for cid in tqdm(sorted(preds), desc="score", disable=not progress, leave=False):
        vol = load_volume(Case(cid, refs[cid], preds[cid]))  # the reference as the image: same grid checked
        ref = np.rint(vol.image).astype(np.int16)
        largest = int(max(ref.max(), vol.label.max()))
        if largest >= len(class_names) or min(ref.min(), vol.label.min()) < 0:
            raise DataError(
                f"{cid}: label value {largest} of {preds[cid]} / {refs[cid]} is outside the {len(class_names)} "
                f"classes {class_names}."
            )
        rows.append(
            {"case_id": cid, **case_metrics(vol.label, ref, len(class_names), vol.spacing, hd95=True)}
        )
    summary = summarize(rows, class_names)
    extra = {"predictions": str(pred), "labels": str(labels), "num_cases": len(rows)}
    write_report(Path(out_dir), rows, summary, class_names, Path(labels).parent.name, extra)
    return {**summary, "out_dir": str(out_dir)}
