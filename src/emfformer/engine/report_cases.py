"""The cases the report draws: the best, median and worst of an evaluation, with scan, truth and prediction.

A checkpoint evaluation (``evaluate``) segments the picked cases again with its checkpoint(s); a
scored folder (``evaluate --pred --labels``) reads the prediction files and the scans of the dataset
the labels belong to (``LABELS/../imagesTr``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.acdc import read_acdc
from ..data.cases import Case, DataError, load_volume
from ..data.locate import read_dataset
from .checkpoint import members_from_checkpoint
from .inference import predict_volume, resolve_device
from .overlays import display_window
from .report_meta import checkpoint_paths, checkpoint_states
from .score import _by_case

__all__ = ["DrawnCase", "pick_cases", "drawn_cases"]


@dataclass
class DrawnCase:
    """One picked case: scan (X, Y, Z; first channel), truth and prediction (X, Y, Z), how to show it."""

    pick: str  # worst | median | best, or several ("median and best")
    case_id: str
    dice_fg: float
    image: np.ndarray
    truth: np.ndarray
    pred: np.ndarray
    spacing: tuple[float, float, float]
    window: tuple[float, float]


def pick_cases(per_case_csv: Path, class_names: Sequence[str]) -> list[tuple[str, str, float]]:
    """(label, case id, mean foreground Dice) of the worst, median and best case of an evaluation; a
    case that is several of them comes once, labelled e.g. ``median and best``."""
    with open(per_case_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    fg = [f"dice_{c}" for c in class_names[1:]]
    scored = []
    for r in rows:
        values = [float(r[k]) for k in fg if r.get(k) not in (None, "", "nan")]
        if values:
            scored.append((float(np.mean(values)), r["case_id"]))
    if not scored:
        return []
    scored.sort()
    picks: dict[str, list[str]] = {}  # case -> its labels: with 1 or 2 cases, one case is several picks
    chosen = {"worst": scored[0], "median": scored[len(scored) // 2], "best": scored[-1]}
    for name, (_, case) in chosen.items():
        picks.setdefault(case, []).append(name)
    score = {case: s for s, case in scored}
    return [(" and ".join(names), case, score[case]) for case, names in picks.items()]


def _first(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 3 else image[..., 0]  # several channels: the first is shown


def _dataset_cases(extra: dict[str, Any], data_dir: str | None) -> dict[str, Case]:
    root = data_dir or extra.get("data_dir")
    if root is None:
        raise DataError("no data folder recorded")
    kind = extra.get("dataset_kind", "msd")  # how the evaluation read its data (hippocampus | acdc | msd)
    if extra.get("part") == "external_test":
        info = read_acdc(Path(root), "testing", require_labels=False)  # scored frames are labelled
    else:
        info = read_dataset(kind, Path(root), check=False)
    return {c.case_id: c for c in info.cases}


def _from_checkpoint(
    eval_dir: Path,
    extra: dict[str, Any],
    picks: list[tuple[str, str, float]],
    data_dir: str | None,
    device: str,
) -> Iterator[DrawnCase]:
    states = checkpoint_states(checkpoint_paths(eval_dir, extra))
    members = [m for s in states for m in members_from_checkpoint(s, resolve_device(device))]
    cases = _dataset_cases(extra, data_dir)
    for pick, case_id, score in picks:
        if case_id not in cases:
            raise DataError(f"case {case_id} is not in the data folder")
        vol = load_volume(cases[case_id])
        with torch.inference_mode():
            pred = predict_volume(members, vol.image, tta=bool(extra.get("tta", False)), affine=vol.affine)
        image = _first(vol.image)
        window = display_window(image, members[0][1].normalization)  # a CT plan: its HU window
        yield DrawnCase(pick, case_id, score, image, vol.label, pred, vol.spacing, window)


def _from_files(extra: dict[str, Any], picks: list[tuple[str, str, float]]) -> Iterator[DrawnCase]:
    labels = Path(extra["labels"])
    preds = _by_case(Path(extra["predictions"]), "prediction")
    scans = {c.case_id: c for c in read_dataset("msd", labels.parent, check=False).cases}
    for pick, case_id, score in picks:
        if case_id not in scans:
            raise DataError(f"no scan of case {case_id} in {labels.parent}")
        vol = load_volume(scans[case_id])
        pred = np.rint(load_volume(Case(case_id, preds[case_id])).image).astype(np.int16)
        image = _first(vol.image)
        yield DrawnCase(pick, case_id, score, image, vol.label, pred, vol.spacing, display_window(image))


def drawn_cases(
    eval_dir: Path, metrics: dict[str, Any], data_dir: str | None, device: str = "cpu"
) -> Iterator[DrawnCase]:
    """The best, median and worst case of the evaluation in ``eval_dir``, one volume at a time
    (segmented again on ``device`` when the evaluation ran a checkpoint).

    Raises:
        DataError, ValueError, OSError: the data, the checkpoint or a prediction file is not there.
    """
    picks = pick_cases(eval_dir / "per_case.csv", metrics["class_names"])
    extra = metrics.get("extra", {})
    if extra.get("predictions") and extra.get("labels"):
        yield from _from_files(extra, picks)
    else:
        yield from _from_checkpoint(eval_dir, extra, picks, data_dir, device)
