"""Per-case plots of an evaluation for the report: Dice and HD95 of every case, per class.

Read from ``per_case.csv`` (evaluate / score). Box plots with every case as a dot, on a transparent
background with mid-grey text and axes, which read on the light and the dark page alike.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .overlays import class_colour

__all__ = ["read_per_case", "per_case_figure"]

_GREY = "#808080"  # 4:1 contrast on white and on black


def read_per_case(path: Path, class_names: Sequence[str]) -> dict[str, dict[str, list[float]]]:
    """{"dice" | "hd95": {foreground class: finite values over cases}} of a ``per_case.csv``."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out: dict[str, dict[str, list[float]]] = {"dice": {}, "hd95": {}}
    for metric in out:
        for name in class_names[1:]:
            values = [float(r.get(f"{metric}_{name}") or "nan") for r in rows]
            out[metric][name] = [v for v in values if math.isfinite(v)]
    return out


def _style(ax: object) -> None:
    ax.set_facecolor("none")  # type: ignore[attr-defined]
    ax.tick_params(colors=_GREY, labelcolor=_GREY)  # type: ignore[attr-defined]
    for spine in ax.spines.values():  # type: ignore[attr-defined]
        spine.set_color(_GREY)
    ax.grid(True, axis="y", color=_GREY, alpha=0.3)  # type: ignore[attr-defined]


def per_case_figure(values: dict[str, dict[str, list[float]]], n_cases: int) -> Figure:
    """Two panels, Dice % and HD95 mm: a box per foreground class, every case a dot."""
    fig = Figure(figsize=(12.5, 3.6), layout="constrained")
    fig.patch.set_alpha(0.0)
    rng = np.random.default_rng(0)  # fixed jitter: the same page for the same numbers
    for ax, (metric, label, scale) in zip(
        fig.subplots(1, 2),
        (("dice", "Dice %", 100.0), ("hd95", "HD95 mm (lower is better)", 1.0)),
        strict=True,
    ):
        names = list(values[metric])
        data = [np.asarray(values[metric][n]) * scale for n in names]
        shown = [(i, d) for i, d in enumerate(data) if d.size]
        if shown:
            ax.boxplot([d for _, d in shown], positions=[i for i, _ in shown], widths=0.5, showfliers=False,
                       medianprops={"color": _GREY}, boxprops={"color": _GREY}, whiskerprops={"color": _GREY},
                       capprops={"color": _GREY})  # fmt: skip
        for i, d in shown:
            ax.scatter(
                i + rng.uniform(-0.15, 0.15, d.size), d, s=14, color=class_colour(i + 1), alpha=0.8, zorder=3
            )
        ax.set_xticks(range(len(names)), names)
        ax.set_xlim(-0.6, len(names) - 0.4)
        if metric == "dice":
            ax.set_ylim(max(0.0, min((float(d.min()) for _, d in shown), default=0.0) - 5), 100.5)
        ax.set_ylabel(label, color=_GREY)
        _style(ax)
    fig.suptitle(
        f"per case ({n_cases} cases; HD95 only where both masks are non-empty)", color=_GREY, fontsize=10
    )
    return fig
