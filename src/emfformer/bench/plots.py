"""Benchmark plots (matplotlib, Agg canvas, no pyplot state): memory and latency against pixel count,
and a params / FLOPs / Dice bubble chart when Dice results are given. Files are written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

from ..io import atomic_write

__all__ = ["plot_scaling", "scaling_figure", "plot_bubble", "write_plots"]


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120), suffix=".png")


def plot_scaling(
    report: dict[str, Any], key: str, ylabel: str, path: Path, budget_mib: float | None = None
) -> Path:
    """Plot ``key`` of every scaling point against the pixel count (log-log), one line per model.

    Points that did not fit (measured or predicted) are marked with an x at the budget line.
    """
    return _save(scaling_figure(report, key, ylabel, budget_mib), path)


def _readable_log_y(ax: Any) -> None:
    """Label a log y axis at every scale: 1..9 within a decade, 1-2-5 within three, decades beyond.

    Matplotlib labels only decades on a log axis; --quick latencies (2 to 6 ms) hold none, so the
    axis came out without a single number.
    """
    lo, hi = ax.get_ylim()
    span = hi / max(lo, 1e-300)
    subs = (
        (1.0,) if span >= 1000 else (1.0, 2.0, 5.0) if span >= 10 else tuple(float(s) for s in range(1, 10))
    )
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(NullLocator())


def scaling_figure(report: dict[str, Any], key: str, ylabel: str, budget_mib: float | None = None) -> Figure:
    """The figure of `plot_scaling`, not yet saved (tests read its tick labels)."""
    fig = Figure(figsize=(8.8, 4.4))  # wide: the legend sits right of the axes, off the lines
    ax = fig.add_subplot()
    for label, points in report.get("scaling", {}).items():
        ok = [(p["size"] ** 2, p[key]) for p in points if p.get("status") == "ok" and p.get(key)]
        if ok:
            line = ax.plot(*zip(*ok, strict=True), marker="o", label=label)[0]
            if budget_mib is not None:
                over = [
                    p["size"] ** 2 for p in points if p.get("status") in ("did_not_fit", "skipped_predicted")
                ]
                if over:
                    ax.plot(over, [budget_mib] * len(over), "x", color=line.get_color(), markersize=9)
    ref = _linear_guide(report, key)
    if ref is not None:
        px = [s * s for s in sorted({p["size"] for pts in report["scaling"].values() for p in pts})]
        ax.plot(px, [ref[1] * q / ref[0] for q in px], ":", color="black", linewidth=1, label=ref[2])
    if budget_mib is not None:
        ax.axhline(
            budget_mib, color="gray", linestyle="--", linewidth=1, label="memory budget (x: did not fit)"
        )
    sides = sorted({p["size"] for pts in report.get("scaling", {}).values() for p in pts})
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks([s * s for s in sides], [f"{s}²" for s in sides], rotation=45)
    ax.xaxis.set_minor_locator(NullLocator())  # only the measured sides are labelled on x
    _readable_log_y(ax)
    ax.set_xlabel("input pixels (side²)")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    return fig


def _linear_guide(report: dict[str, Any], key: str) -> tuple[float, float, str] | None:
    """(pixels, value, label) of the first model's reference-side point: growth proportional to pixels."""
    side = report["meta"].get("scaling_reference")
    for label, points in report.get("scaling", {}).items():
        for p in points:
            if p["size"] == side and p.get("status") == "ok" and p.get(key):
                return (
                    float(side * side),
                    float(p[key]),
                    f"proportional to pixels (through {label} @ {side}²)",
                )
    return None


def plot_bubble(report: dict[str, Any], dice: dict[str, float], path: Path) -> Path | None:
    """Dice against parameters, bubble area proportional to GFLOPs; None when no model has both."""
    rows = [
        (e["label"], e["params"] / 1e6, e["flops"] / 1e9, float(dice[e["label"]]))
        for e in report.get("models", [])
        if e.get("label") in dice and e.get("params") and e.get("flops")
    ]
    if not rows:
        return None
    fig = Figure(figsize=(6.4, 4.8))
    ax = fig.add_subplot()
    biggest = max(r[2] for r in rows)
    for label, params, gflops, d in rows:
        ax.scatter(params, d, s=40 + 1500 * gflops / biggest, alpha=0.5)
        ax.annotate(f"{label}\n{gflops:.2f} GFLOPs", (params, d), fontsize=7, ha="center", va="center")
    ax.set_xscale("log")
    ax.margins(0.2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("parameters (M)")
    ax.set_ylabel("Dice")
    side = report["meta"]["size"]
    ax.set_title(f"Dice vs parameters (bubble area ~ GFLOPs of one {side}x{side} image)")
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def write_plots(report: dict[str, Any], out_dir: Path, dice: dict[str, float] | None = None) -> list[Path]:
    """Write ``memory_vs_pixels.png``, ``latency_vs_pixels.png`` and, with Dice, ``params_flops_dice.png``."""
    budget = report["meta"]["max_memory_gb"] * 1024
    paths = []
    if report.get("scaling"):
        paths.append(
            plot_scaling(
                report,
                "mem_train_mib",
                "peak training memory (MiB)",
                out_dir / "memory_vs_pixels.png",
                budget,
            )
        )
        paths.append(
            plot_scaling(report, "latency_ms", "latency, batch 1 (ms)", out_dir / "latency_vs_pixels.png")
        )
    if dice:
        bubble = plot_bubble(report, dice, out_dir / "params_flops_dice.png")
        if bubble is not None:
            paths.append(bubble)
    return paths
