"""Per-epoch training history: CSV + JSON log and PNG curves in the run folder, written atomically."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from ..io import atomic_write, atomic_write_json, atomic_write_text

__all__ = ["write_history"]


def _csv(rows: list[dict[str, Any]]) -> str:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    epochs = [r["epoch"] for r in rows]
    fig = Figure(figsize=(10, 3.8))  # no pyplot: no global backend switch, no figure registry
    ax_loss, ax_val = fig.subplots(1, 2)
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], marker="o", label="train loss (0.5 CE + 0.5 Dice)")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    val = [r for r in rows if r.get("val_dice_fg") is not None]
    for key, label in (("val_dice_fg", "val Dice (fg mean)"), ("val_miou_fg", "val mIoU (fg mean)")):
        ax_val.plot([r["epoch"] for r in val], [r[key] for r in val], marker="o", label=label)
    ax_val.set_xlabel("epoch")
    ax_val.set_ylim(0, 1)
    ax_val.legend()
    # fixed margins: tight_layout measured every text box on each epoch's redraw (a third of the plot time)
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.13, top=0.93, wspace=0.14)  # room for "1e-3"
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def write_history(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``log.csv``, ``log.json`` and ``curves.png`` for the epochs so far."""
    atomic_write_text(run_dir / "log.csv", _csv(rows))
    atomic_write_json(run_dir / "log.json", rows)
    _plot(rows, run_dir / "curves.png")
