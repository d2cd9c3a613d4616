"""Tests for emfformer.metrics: hand-computed values on tiny volumes, edge cases, summary, report."""

from __future__ import annotations

import csv
import json
import math
import warnings

import numpy as np
import pytest

from emfformer.metrics import case_metrics, summarize
from emfformer.metrics_report import write_report

NAN = float("nan")
ACDC_NAMES = ["background", "RV", "MYO", "LV"]


def _cube(shape: tuple[int, int, int], lo: tuple[int, int, int], size: int, label: int = 1) -> np.ndarray:
    vol = np.zeros(shape, dtype=np.int16)
    vol[lo[0] : lo[0] + size, lo[1] : lo[1] + size, lo[2] : lo[2] + size] = label
    return vol


def _strict_case_metrics(*args, **kwargs) -> dict:
    """case_metrics with every warning turned into an error (MONAI must never warn)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return case_metrics(*args, **kwargs)


def _row(dice, iou, hd95, gt_present=None, pred_present=None, case_id=None) -> dict:
    n = len(dice)
    row = {
        "dice": dice,
        "iou": iou,
        "hd95": hd95,
        "gt_present": gt_present or [True] * n,
        "pred_present": pred_present or [True] * n,
    }
    if case_id is not None:
        row["case_id"] = case_id
    return row


# ---------------------------------------------------------------------------------------------
# case_metrics: hand-computed values
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (1.0, 1.0, 2.0), (1.0, 1.0, 0.5), (2.0, 1.5, 3.0)])
def test_shifted_cube(axis: int, spacing: tuple[float, float, float]) -> None:
    # A = 4x4x4 cube, B = A shifted by one voxel along `axis`.
    gt = _cube((10, 10, 10), (2, 2, 2), 4)
    pred = np.roll(gt, 1, axis=axis)
    inter, size = 4 * 4 * 3, 4**3
    # HD95 by hand: each cube has 56 surface voxels (64 minus the 2x2x2 core). Of A's 56, the 16 on
    # the face left behind by the shift are one step (spacing[axis] mm) from B's surface; the 4 inner
    # voxels of the leading face are min(spacing[axis], in-plane step) away; the other 36 lie on B's
    # surface (0). Sorted: 36 zeros, then 20 values <= spacing[axis] of which the last 16 equal it.
    # The 95th percentile sits at index 0.95 * 55 = 52.25, inside the last 16 -> spacing[axis].
    # B -> A is the mirror image, so the symmetric HD95 is spacing[axis] mm.
    m = _strict_case_metrics(pred, gt, num_classes=2, spacing=spacing)
    assert m["dice"][1] == pytest.approx(2 * inter / (2 * size))  # 0.75
    assert m["iou"][1] == pytest.approx(inter / (2 * size - inter))  # 0.6
    assert m["hd95"][1] == pytest.approx(spacing[axis], rel=1e-6)
    bg_inter, bg_size = 1000 - (2 * size - inter), 1000 - size
    assert m["dice"][0] == pytest.approx(2 * bg_inter / (2 * bg_size))
    assert m["iou"][0] == pytest.approx(bg_inter / (1000 - inter))
    assert math.isnan(m["hd95"][0])  # not computed for the background


def test_hd95_ignores_a_far_outlier_voxel() -> None:
    # Prediction = ground-truth cube + one stray voxel at (15, 15, 15). The max Hausdorff distance
    # would be |(15,15,15) - (5,5,5)| = 10*sqrt(3) ~ 17.3, but the stray voxel is 1 of 57 surface
    # voxels: the 95th percentile index 0.95 * 56 = 53.2 falls among the zeros -> HD95 = 0.
    gt = _cube((20, 20, 20), (2, 2, 2), 4)
    pred = gt.copy()
    pred[15, 15, 15] = 1
    m = _strict_case_metrics(pred, gt, num_classes=2, spacing=(1.0, 1.0, 1.0))
    assert m["dice"][1] == pytest.approx(2 * 64 / (65 + 64))
    assert m["iou"][1] == pytest.approx(64 / 65)
    assert m["hd95"][1] == pytest.approx(0.0)


def test_multiclass_identical_volumes() -> None:
    gt = _cube((12, 12, 6), (1, 1, 1), 4, label=1) + _cube((12, 12, 6), (6, 6, 1), 4, label=3)
    m = _strict_case_metrics(gt, gt, num_classes=4, spacing=(1.5, 1.5, 10.0))
    assert m["dice"] == pytest.approx([1.0, 1.0, NAN, 1.0], nan_ok=True)
    assert m["iou"] == pytest.approx([1.0, 1.0, NAN, 1.0], nan_ok=True)
    assert m["hd95"] == pytest.approx([NAN, 0.0, NAN, 0.0], nan_ok=True)
    assert m["gt_present"] == [True, True, False, True]
    assert m["pred_present"] == [True, True, False, True]


# ---------------------------------------------------------------------------------------------
# case_metrics: edge cases (class 2 is the one under test; class 1 is a normal, perfect class)
# ---------------------------------------------------------------------------------------------

_BASE = _cube((10, 10, 10), (1, 1, 1), 3, label=1)
_WITH_2 = _BASE + _cube((10, 10, 10), (6, 6, 6), 3, label=2)


@pytest.mark.parametrize(
    ("pred", "gt", "dice2", "iou2", "gt_present2", "pred_present2"),
    [
        pytest.param(_BASE, _BASE, NAN, NAN, False, False, id="absent-in-both"),
        pytest.param(_BASE, _WITH_2, 0.0, 0.0, True, False, id="missed (gt only)"),
        pytest.param(_WITH_2, _BASE, 0.0, 0.0, False, True, id="false-positive (pred only)"),
    ],
)
def test_edge_cases(pred, gt, dice2, iou2, gt_present2, pred_present2) -> None:
    m = _strict_case_metrics(pred, gt, num_classes=3, spacing=(1.0, 1.0, 2.0))
    assert m["dice"][2] == pytest.approx(dice2, nan_ok=True)
    assert m["iou"][2] == pytest.approx(iou2, nan_ok=True)
    assert math.isnan(m["hd95"][2])  # never defined unless present in both
    assert (m["gt_present"][2], m["pred_present"][2]) == (gt_present2, pred_present2)
    # The other class is untouched by class 2's edge case.
    assert (m["dice"][1], m["iou"][1], m["hd95"][1]) == pytest.approx((1.0, 1.0, 0.0))


def test_all_background_volumes() -> None:
    zeros = np.zeros((5, 6, 7), dtype=np.uint8)
    m = _strict_case_metrics(zeros, zeros, num_classes=2, spacing=(1.0, 1.0, 1.0))
    assert m["dice"] == pytest.approx([1.0, NAN], nan_ok=True)
    assert m["iou"] == pytest.approx([1.0, NAN], nan_ok=True)
    assert all(math.isnan(v) for v in m["hd95"])


@pytest.mark.parametrize(
    ("pred", "gt", "num_classes", "spacing", "match"),
    [
        (np.zeros((4, 4, 4), np.int16), np.zeros((4, 4, 5), np.int16), 2, (1, 1, 1), "same shape"),
        (np.zeros((4, 4), np.int16), np.zeros((4, 4), np.int16), 2, (1, 1, 1), "3D"),
        (np.zeros((4, 4, 4), np.float32), np.zeros((4, 4, 4), np.int16), 2, (1, 1, 1), "integer"),
        (np.full((4, 4, 4), 3, np.int16), np.zeros((4, 4, 4), np.int16), 3, (1, 1, 1), "outside"),
        (np.zeros((4, 4, 4), np.int16), np.zeros((4, 4, 4), np.int16), 1, (1, 1, 1), "num_classes"),
        (np.zeros((4, 4, 4), np.int16), np.zeros((4, 4, 4), np.int16), 2, (1, 1), "spacing"),
        (np.zeros((4, 4, 4), np.int16), np.zeros((4, 4, 4), np.int16), 2, (1, 0, 1), "spacing"),
    ],
)
def test_case_metrics_rejects_bad_input(pred, gt, num_classes, spacing, match) -> None:
    with pytest.raises(ValueError, match=match):
        case_metrics(pred, gt, num_classes=num_classes, spacing=spacing)


# ---------------------------------------------------------------------------------------------
# summarize
# ---------------------------------------------------------------------------------------------


def _two_rows() -> list[dict]:
    return [
        _row([1.0, 0.8, 0.6, 0.9], [1.0, 0.6, 0.4, 0.8], [NAN, 2.0, 4.0, 1.0], case_id="p1"),
        _row([0.9, 0.6, 0.8, 0.7], [0.8, 0.4, 0.6, 0.6], [NAN, 4.0, 6.0, 3.0], case_id="p2"),
    ]


def test_summarize_means_over_cases_then_classes() -> None:
    s = summarize(_two_rows(), ACDC_NAMES)
    assert s["num_cases"] == 2
    # per class (over cases): dice bg 0.95, RV 0.7, MYO 0.7, LV 0.8
    assert s["per_class"]["RV"]["dice"] == pytest.approx(0.7)
    assert s["per_class"]["RV"]["dice_std"] == pytest.approx(0.1)  # population std of (0.8, 0.6)
    assert s["per_class"]["LV"]["hd95_mm"] == pytest.approx(2.0)
    assert s["mean_dice_fg"] == pytest.approx((0.7 + 0.7 + 0.8) / 3)  # background excluded
    assert s["mean_dice_all"] == pytest.approx((0.95 + 0.7 + 0.7 + 0.8) / 4)
    assert s["miou_fg"] == pytest.approx((0.5 + 0.5 + 0.7) / 3)
    assert s["miou_all"] == pytest.approx((0.9 + 0.5 + 0.5 + 0.7) / 4)
    assert s["hd95_fg_mm"] == pytest.approx((3.0 + 5.0 + 2.0) / 3)
    # std over cases of the per-case foreground mean: case means 0.7667 and 0.7 -> std 0.0333
    assert s["mean_dice_fg_std"] == pytest.approx(abs(2.3 / 3 - 2.1 / 3) / 2)
    assert math.isnan(s["per_class"]["background"]["hd95_mm"])
    assert s["per_class"]["background"]["n_hd95"] == 0


def test_summarize_excludes_nan_and_counts_undefined_hd95() -> None:
    names = ["background", "anterior", "posterior"]
    rows = [
        _row([0.99, 0.8, 0.9], [0.98, 0.6, 0.8], [NAN, 2.0, 1.0]),
        # posterior absent from both -> NaN everywhere, excluded from all means
        _row([0.99, 0.6, NAN], [0.98, 0.4, NAN], [NAN, 4.0, NAN], [True, True, False], [True, True, False]),
        # anterior missed -> Dice/IoU 0 (counted), HD95 NaN (excluded, counted as undefined)
        _row([0.99, 0.0, 0.7], [0.98, 0.0, 0.6], [NAN, NAN, 3.0], [True, True, True], [True, False, True]),
    ]
    s = summarize(rows, names)
    ant, post = s["per_class"]["anterior"], s["per_class"]["posterior"]
    assert ant["dice"] == pytest.approx((0.8 + 0.6 + 0.0) / 3)
    assert (ant["n_cases"], ant["n_hd95"], ant["hd95_undefined"]) == (3, 2, 1)
    assert ant["hd95_mm"] == pytest.approx(3.0)
    assert post["dice"] == pytest.approx(0.8)
    assert (post["n_cases"], post["n_hd95"], post["hd95_undefined"]) == (2, 2, 0)
    assert s["mean_dice_fg"] == pytest.approx((ant["dice"] + 0.8) / 2)
    assert s["hd95_fg_mm"] == pytest.approx((3.0 + 2.0) / 2)


@pytest.mark.parametrize(
    ("rows", "match"),
    [([], "at least one"), ([_row([1.0, 1.0], [1.0, 1.0], [NAN, 0.0])], "classes")],
)
def test_summarize_rejects_bad_rows(rows, match) -> None:
    with pytest.raises(ValueError, match=match):
        summarize(rows, ACDC_NAMES)


def test_summarize_on_case_metrics_output() -> None:
    gt = _cube((10, 10, 10), (2, 2, 2), 4)
    rows = [case_metrics(np.roll(gt, 1, axis=2), gt, 2, (1.0, 1.0, 2.0)), case_metrics(gt, gt, 2, (1, 1, 2))]
    s = summarize(rows, ["background", "fg"])
    assert s["miou_fg"] == pytest.approx((0.6 + 1.0) / 2)
    assert s["hd95_fg_mm"] == pytest.approx((2.0 + 0.0) / 2)


# ---------------------------------------------------------------------------------------------
# write_report
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "paper_miou", "reference"),
    [
        ("acdc", "80.5", "| TransUNet† | TransUNet 2D protocol | – | 89.71 | 88.86 | 84.53 | 95.73 |"),
        ("ACDC", "80.5", "nnU-Net† | 3D, nnFormer split | – | 91.61"),
        ("hippocampus", "78.8", "SegResNet (MONAI Auto3DSeg)† | 3D | – | 89.10"),
    ],
)
def test_write_report_files(tmp_path, dataset, paper_miou, reference) -> None:
    rows = _two_rows()
    s = summarize(rows, ACDC_NAMES)
    out = tmp_path / "eval"
    write_report(out, rows, s, ACDC_NAMES, dataset, {"checkpoint": "runs/x/best.pt", "split": "test"})

    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "per_case.csv", "summary.md"]

    data = json.loads((out / "metrics.json").read_text())  # strict JSON: NaN became null
    assert data["extra"] == {"checkpoint": "runs/x/best.pt", "split": "test"}
    assert data["summary"]["miou_fg"] == pytest.approx(s["miou_fg"])
    assert data["rows"][0]["hd95"][0] is None
    assert [r["case_id"] for r in data["rows"]] == ["p1", "p2"]

    with (out / "per_case.csv").open(newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == (
        ["case_id"] + [f"dice_{n}" for n in ACDC_NAMES] + [f"iou_{n}" for n in ACDC_NAMES]
        + ["hd95_RV", "hd95_MYO", "hd95_LV"]
    )  # fmt: skip
    assert [r["case_id"] for r in table] == ["p1", "p2"]
    assert float(table[1]["dice_MYO"]) == pytest.approx(0.8)
    assert float(table[0]["hd95_LV"]) == pytest.approx(1.0)

    md = (out / "summary.md").read_text()
    assert "| RV | 70.00 ± 10.00 | 50.00 ± 10.00 | 3.00 ± 1.00 | 2 | 2 | 0 |" in md
    assert "| background | 95.00 ± 5.00 | 90.00 ± 10.00 | – |" in md
    assert "| **mean foreground** | 73.33 | **56.67** | 3.33 |" in md  # Dice, mIoU fg, HD95 fg
    assert "| mean incl. background | 78.75 | 65.00 |" in md
    assert "| **ours** | this run | **56.67** | 73.33 | 70.00 | 70.00 | 80.00 |" in md
    assert "Paper vs ours" in md and paper_miou in md and reference in md
    assert "other papers" in md
    assert "runs/x/best.pt" in md
    assert not list(out.glob(".*.tmp"))  # no temp files left behind


def test_write_report_other_dataset_has_no_paper_row(tmp_path) -> None:
    names = ["background", "tumour"]
    rows = [_row([1.0, 0.5], [1.0, 1 / 3], [NAN, 7.0]), _row([1.0, NAN], [1.0, NAN], [NAN, NAN])]
    write_report(tmp_path, rows, summarize(rows, names), names, "synthetic", {})
    md = (tmp_path / "summary.md").read_text()
    assert "80.5" not in md and "78.8" not in md
    assert "| tumour | 50.00 ± 0.00 | 33.33 ± 0.00 | 7.00 ± 0.00 | 1 | 1 | 0 |" in md
    assert "No published numbers" in md
    with (tmp_path / "per_case.csv").open(newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["case_id"] for r in table] == ["0", "1"]  # row index when no case_id
    assert math.isnan(float(table[1]["dice_tumour"]))


def test_write_report_hippocampus_reference_per_class(tmp_path) -> None:
    names = ["background", "anterior", "posterior"]
    rows = [_row([0.99, 0.9, 0.8], [0.98, 0.8, 0.7], [NAN, 1.0, 2.0], case_id="hippocampus_001")]
    write_report(tmp_path, rows, summarize(rows, names), names, "Hippocampus", {"split": "test"})
    md = (tmp_path / "summary.md").read_text()
    assert "| Source | Protocol | mIoU fg % | Dice fg % | Dice anterior % | Dice posterior % |" in md
    assert "| **ours** | this run | **75.00** | 85.00 | 90.00 | 80.00 |" in md
    assert "| EMF-former (paper) | abstract, split unknown | 78.8 | – | – | – |" in md
    assert "| nnU-Net† | 3D, approximate (≈) | – | – | 90.00 | 89.00 |" in md
    assert "78.8 % ≈ Dice 88.1 %" in md
