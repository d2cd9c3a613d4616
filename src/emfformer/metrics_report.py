"""The evaluation report: ``metrics.json``, ``per_case.csv`` and ``summary.md`` with the paper's numbers.

Rows come from :func:`emfformer.metrics.case_metrics`, the summary from :func:`emfformer.metrics.summarize`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .io import atomic_write_text

__all__ = ["PAPER_MIOU_FG", "REFERENCE_DICE", "ReferenceDice", "write_report"]

# Foreground mIoU (%) claimed in the EMF-former abstract; the only numbers of the paper we have.
PAPER_MIOU_FG: dict[str, float] = {"acdc": 80.5, "hippocampus": 78.8}


@dataclass(frozen=True)
class ReferenceDice:
    """A published Dice (%) from *another* paper/protocol, shown for context in ``summary.md``."""

    method: str  # model name as published
    protocol: str  # where the number comes from and how it was obtained
    dice_avg: float | None  # mean foreground Dice %, None if the source gives none
    dice_per_class: tuple[float, ...] | None  # foreground classes in label order (1, 2, ...)


# docs/references.md. Per-class values are in label order: ACDC RV, MYO, LV;
# Hippocampus anterior, posterior.
REFERENCE_DICE: dict[str, tuple[ReferenceDice, ...]] = {
    "acdc": (
        ReferenceDice("TransUNet", "TransUNet 2D protocol", 89.71, (88.86, 84.53, 95.73)),
        ReferenceDice("Swin-Unet", "TransUNet 2D protocol", 90.00, (88.55, 85.62, 95.83)),
        ReferenceDice("MISSFormer", "TransUNet 2D protocol", 90.86, None),
        ReferenceDice("LeViT-UNet-384", "TransUNet 2D protocol", 90.32, None),
        ReferenceDice("R50 U-Net", "TransUNet 2D protocol", 87.55, None),
        ReferenceDice("nnU-Net", "3D, nnFormer split", 91.61, None),
    ),
    "hippocampus": (
        ReferenceDice("nnU-Net", "3D, approximate (≈)", None, (90.0, 89.0)),
        ReferenceDice("SegResNet (MONAI Auto3DSeg)", "3D", 89.1, None),
    ),
}


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def _json_safe(obj: Any) -> Any:
    """NaN/inf -> None (JSON has no NaN), numpy scalars -> Python, Paths -> str, recursively."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _pct(x: float | None) -> str:
    return "–" if x is None or math.isnan(x) else f"{100 * x:.2f}"


def _mm(x: float | None) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.2f}"


def _pm(mean: float, std: float, fmt: Any) -> str:
    """``mean ± std`` or ``–`` when the mean is undefined."""
    return "–" if math.isnan(mean) else f"{fmt(mean)} ± {fmt(std)}"


def _ref(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def _csv_text(rows: list[dict[str, Any]], class_names: list[str]) -> str:
    fg = class_names[1:]
    header = (
        ["case_id"]
        + [f"dice_{n}" for n in class_names]
        + [f"iou_{n}" for n in class_names]
        + [f"hd95_{n}" for n in fg]
    )
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for i, row in enumerate(rows):
        values = list(row["dice"]) + list(row["iou"]) + list(row["hd95"][1:])
        writer.writerow([row.get("case_id", str(i))] + [repr(float(v)) for v in values])
    return buf.getvalue()


def _summary_md(summary: dict[str, Any], class_names: list[str], dataset: str, extra: dict) -> str:
    pc = summary["per_class"]
    fg = class_names[1:]
    lines = [
        f"# Evaluation: {dataset}",
        "",
        f"{summary['num_cases']} cases, metrics on 3D volumes. Dice and IoU in %, HD95 in mm. "
        "Mean over cases per class, then over classes; ± is the std over cases. "
        "NaN cases are excluded (see docs/metrics.md).",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in extra.items()]
    lines += [
        "",
        "| Class | Dice % | IoU % | HD95 mm | cases | HD95 cases | HD95 undefined |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in class_names:
        p = pc[name]
        lines.append(
            f"| {name} | {_pm(p['dice'], p['dice_std'], _pct)} | {_pm(p['iou'], p['iou_std'], _pct)} "
            f"| {_pm(p['hd95_mm'], p['hd95_std'], _mm)} | {p['n_cases']} | {p['n_hd95']} "
            f"| {p['hd95_undefined']} |"
        )
    lines += [
        f"| **mean foreground** | {_pct(summary['mean_dice_fg'])} | **{_pct(summary['miou_fg'])}** "
        f"| {_mm(summary['hd95_fg_mm'])} | | | |",
        f"| mean incl. background | {_pct(summary['mean_dice_all'])} | {_pct(summary['miou_all'])} | | | | |",
        "",
        "**mIoU (foreground)** is the primary number, comparable in definition to the paper's mIoU.",
        "",
    ]

    return "\n".join(lines + _paper_vs_ours(summary, fg, dataset))


def _paper_vs_ours(summary: dict[str, Any], fg: list[str], dataset: str) -> list[str]:
    """The "Paper vs ours" section: our numbers beside the paper's and other published ones."""
    pc = summary["per_class"]
    key = dataset.lower()
    refs = REFERENCE_DICE.get(key, ())
    lines = ["## Paper vs ours", ""]
    if key not in PAPER_MIOU_FG and not refs:
        return [*lines, f"No published numbers recorded for dataset '{dataset}'.", ""]
    lines += [
        "| Source | Protocol | mIoU fg % | Dice fg % | " + " | ".join(f"Dice {n} %" for n in fg) + " |",
        "|---|---|---|---|" + "---|" * len(fg),
        f"| **ours** | this run | **{_pct(summary['miou_fg'])}** | {_pct(summary['mean_dice_fg'])} | "
        + " | ".join(_pct(pc[n]["dice"]) for n in fg)
        + " |",
    ]
    if key in PAPER_MIOU_FG:
        lines.append(
            f"| EMF-former (paper) | abstract, split unknown | {PAPER_MIOU_FG[key]:.1f} | – | "
            + " | ".join("–" for _ in fg)
            + " |"
        )
    for r in refs:
        per_class = r.dice_per_class if r.dice_per_class and len(r.dice_per_class) == len(fg) else None
        cells = [_ref(v) for v in per_class] if per_class else ["–"] * len(fg)
        lines.append(f"| {r.method}† | {r.protocol} | – | {_ref(r.dice_avg)} | " + " | ".join(cells) + " |")
    if refs:
        lines += [
            "",
            "† Reference Dice from other papers and protocols (docs/references.md): different "
            "splits, preprocessing and often 3D models. Context only, not a like-for-like comparison.",
        ]
    if key in PAPER_MIOU_FG:
        j = PAPER_MIOU_FG[key] / 100
        lines += [
            "",
            f"The EMF-former paper reports only mIoU: {PAPER_MIOU_FG[key]:.1f} % ≈ Dice {200 * j / (1 + j):.1f} % "
            "if IoU were the same for every class and case (Dice = 2J / (1 + J)).",
        ]
    lines.append("")
    return lines


def write_report(
    out_dir: Path,
    rows: list[dict[str, Any]],
    summary: dict[str, Any],
    class_names: list[str],
    dataset: str,
    extra: dict[str, Any],
) -> None:
    """Write ``metrics.json``, ``per_case.csv`` and ``summary.md`` into ``out_dir`` (created if needed).

    Each file is written atomically (temp file + ``os.replace``). NaN is ``null`` in the JSON and
    ``nan`` in the CSV. Dice/IoU are fractions in the JSON/CSV and percentages in the markdown.

    Args:
        out_dir: run/evaluation folder.
        rows: ``case_metrics`` rows, each with a ``"case_id"`` (the row index is used if missing).
        summary: ``summarize(rows, class_names)``.
        class_names: all class names, index 0 = background.
        dataset: dataset key; ``"acdc"`` and ``"hippocampus"`` (case-insensitive) get the paper's
            mIoU and reference Dice rows in ``summary.md``, other names get none.
        extra: run context stored in the JSON and listed in the markdown (checkpoint path, split...).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "emfformer_kind": "evaluation",  # the never-destroy marker (guard.py)
        "dataset": dataset,
        "class_names": list(class_names),
        "extra": extra,
        "summary": summary,
        "rows": [dict(r, case_id=r.get("case_id", str(i))) for i, r in enumerate(rows)],
    }
    atomic_write_text(
        out_dir / "metrics.json", json.dumps(_json_safe(payload), indent=2, allow_nan=False) + "\n"
    )
    atomic_write_text(out_dir / "per_case.csv", _csv_text(rows, class_names))
    atomic_write_text(out_dir / "summary.md", _summary_md(summary, class_names, dataset, extra))
