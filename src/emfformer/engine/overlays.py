"""Overlay figures of a segmentation on its scan, shared by ``emfformer report`` and ``predict --overlays``.

* Slices: `choose_slices` takes the axis whose slices show the most foreground voxels (counted in
  voxels, not mm: on an anisotropic scan that is the finely sampled acquisition plane) and 5 slices
  spread evenly over the structure's extent along it (the truth's foreground, or the prediction's
  where there is no truth or it is empty).
* Intensities: `display_window` is the plan's CT window (``normalization`` scheme ``ct``: the
  dataset's HU ``lower`` / ``upper``), else the image's robust 0.5-99.5 percentiles; callers may
  override it (``predict --window LO HI``).
* With a ground truth the figure is an error map: agreeing foreground filled in its class colour,
  the truth outlined in its class colour, false positives magenta, false negatives cyan. Without one
  (predict) the prediction is filled and outlined in its class colours.

Figures are matplotlib ``Figure`` objects on a dark neutral background (no pyplot state), which
reads on light and dark pages alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

__all__ = [
    "N_SLICES",
    "FALSE_POSITIVE",
    "FALSE_NEGATIVE",
    "class_colour",
    "legend_entries",
    "choose_slices",
    "display_window",
    "overlay_figure",
]

N_SLICES = 5
FALSE_POSITIVE = "#ff2bd6"  # magenta: far from every class colour below
FALSE_NEGATIVE = "#00e1ff"  # cyan
# class colours (class 1, 2, ...): saturated, distinct from each other and from the two error colours
_CLASS_COLOURS = ("#ff8c1a", "#3ddc4a", "#3d7dff", "#ffe23d", "#e8403a", "#a46cff", "#b5774a", "#c8c8c8")
BACKGROUND = "#1c1c1c"  # figure face: dark neutral, scans are dark too
TEXT = "#e6e6e6"


def class_colour(k: int) -> str:
    """Hex colour of foreground class ``k`` (1, 2, ...), cycling after 8 classes."""
    return _CLASS_COLOURS[(k - 1) % len(_CLASS_COLOURS)]


def legend_entries(class_names: Sequence[str], errors: bool) -> list[tuple[str, str]]:
    """(label, hex colour) of every foreground class and, with ``errors``, of the two error colours."""
    entries = [(name, class_colour(k)) for k, name in enumerate(class_names) if k > 0]
    if errors:
        entries += [("false positive", FALSE_POSITIVE), ("false negative", FALSE_NEGATIVE)]
    return entries


def choose_slices(mask: np.ndarray, n: int = N_SLICES) -> tuple[int, list[int]]:
    """(axis, sorted slice indices) to show a 3D boolean ``mask`` (X, Y, Z).

    The axis is the one whose largest slice holds the most foreground voxels (ties: the later axis);
    the ``n`` slices sit at the centres of ``n`` equal parts of the foreground's extent along it
    (fewer when the extent is thinner than ``n`` slices). An empty mask: the largest slice plane,
    spread over the whole volume.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3:
        raise ValueError(f"choose_slices takes a 3D mask, got shape {mask.shape}")
    if mask.any():
        per_axis = [mask.sum(axis=tuple(a for a in range(3) if a != ax)).max() for ax in range(3)]
    else:  # nothing segmented: the plane with the most voxels
        per_axis = [mask[(slice(None),) * ax + (0,)].size for ax in range(3)]
    axis = 2 - int(np.argmax(per_axis[::-1]))  # argmax takes the first: reversed so ties go to the later axis
    present = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
    lo, hi = (int(present[0]), int(present[-1])) if present.size else (0, mask.shape[axis] - 1)
    centres = lo + (hi - lo + 1) * (np.arange(n) + 0.5) / n - 0.5
    return axis, sorted({int(round(c)) for c in centres})


def display_window(
    image: np.ndarray,
    normalization: Sequence[dict[str, Any]] | None = None,
    window: Sequence[float] | None = None,
) -> tuple[float, float]:
    """(low, high) display intensities of ``image`` (its first channel, when it has several).

    ``window`` if given; else, when the first channel's scheme of ``normalization`` (a checkpoint's
    ``PreprocessConfig.normalization``, one dict per channel) is ``ct``, its HU ``lower`` / ``upper``;
    else the image's 0.5 and 99.5 percentiles (a constant image: its value to value + 1).

    Raises:
        ValueError: ``window`` is not two finite numbers with low < high.
    """
    if window is not None:
        values = [float(v) for v in window]
        if len(values) != 2 or not (np.isfinite(values).all() and values[0] < values[1]):
            raise ValueError(f"an intensity window needs two numbers LO < HI, got {list(window)}")
        return values[0], values[1]
    first = normalization[0] if normalization else None
    if first is not None and first.get("scheme") == "ct":
        return float(first["lower"]), float(first["upper"])
    lo, hi = (float(v) for v in np.percentile(np.asarray(image, dtype=np.float32), (0.5, 99.5)))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def _plane(a: np.ndarray, axis: int, k: int) -> np.ndarray:
    """Slice ``k`` along ``axis``, transposed for imshow: rows are the plane's second axis."""
    return np.take(a, k, axis=axis).T


def _fill(pred: np.ndarray, truth: np.ndarray | None, n_classes: int) -> np.ndarray:
    """RGBA (rows, cols, 4) layer: class colours where right (or predicted), error colours where wrong."""
    rgba = np.zeros((*pred.shape, 4), dtype=np.float32)
    for k in range(1, n_classes):
        where = pred == k if truth is None else (pred == k) & (truth == k)
        rgba[where] = to_rgba(class_colour(k), 0.45)
    if truth is not None:
        rgba[(pred > 0) & (pred != truth)] = to_rgba(FALSE_POSITIVE, 0.85)  # a wrong class counts here
        rgba[(truth > 0) & (pred == 0)] = to_rgba(FALSE_NEGATIVE, 0.85)
    return rgba


def _outline(ax: Any, labels: np.ndarray, n_classes: int) -> None:
    """One contour line per class present in the 2D ``labels``."""
    for k in range(1, n_classes):
        region = labels == k
        if region.any() and not region.all():
            ax.contour(region.astype(np.float32), levels=[0.5], colors=[class_colour(k)], linewidths=1.2)


def _figure_legend(fig: Figure, class_names: Sequence[str], errors: bool) -> None:
    handles: list[Any] = [Patch(color=c, label=name) for name, c in legend_entries(class_names, errors)]
    if errors:
        handles.append(Line2D([], [], color=TEXT, linewidth=1.2, label="outline: ground truth"))
    leg = fig.legend(
        handles=handles, loc="outside lower center", ncol=len(handles), frameon=False, fontsize=9
    )
    for text in leg.get_texts():
        text.set_color(TEXT)


def overlay_figure(
    image: np.ndarray,
    pred: np.ndarray,
    class_names: Sequence[str],
    truth: np.ndarray | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    window: tuple[float, float] | None = None,
    title: str | None = None,
    legend: bool = True,
) -> Figure:
    """A row of `N_SLICES` slices (fewer in a thinner volume) of ``image`` (X, Y, Z), ``pred`` (X, Y, Z) on it.

    ``truth`` (X, Y, Z): draw an error map against it. ``spacing`` (mm per voxel): each panel keeps the
    physical aspect ratio. ``window``: (low, high) display intensities (default: `display_window`).
    ``legend``: a legend under the slices (the HTML report draws its own).
    """
    image, pred = np.asarray(image), np.asarray(pred)
    if image.shape != pred.shape or (truth is not None and np.shape(truth) != pred.shape):
        raise ValueError(f"image {image.shape}, prediction {pred.shape} and truth must share one 3D shape")
    # the structure is the truth where there is one: stray false positives must not stretch the extent
    mask = np.asarray(truth) > 0 if truth is not None and np.any(truth) else pred > 0
    axis, picks = choose_slices(mask)
    lo, hi = window if window is not None else display_window(image)
    cols, rows = (a for a in range(3) if a != axis)  # the plane's axes: columns, then rows (after .T)
    aspect = float(spacing[rows]) / float(spacing[cols])  # height / width of one pixel
    panel_h = float(np.clip(2.3 * aspect * image.shape[rows] / image.shape[cols], 0.8, 3.6))
    n_cols = min(N_SLICES, image.shape[axis])  # a 2D image (one slice) gets one panel, not 4 empty ones
    fig = Figure(figsize=(2.5 * max(n_cols, 2), panel_h + 0.7 + 0.3 * legend),
                 facecolor=BACKGROUND, layout="constrained")  # fmt: skip
    axes = fig.subplots(1, n_cols, squeeze=False)[0]
    for ax, k in zip(axes, picks, strict=False):
        ax.imshow(_plane(image, axis, k), cmap="gray", vmin=lo, vmax=hi, origin="lower", aspect=aspect,
                  interpolation="nearest")  # fmt: skip
        p = _plane(pred, axis, k)
        t = None if truth is None else _plane(np.asarray(truth), axis, k)
        ax.imshow(_fill(p, t, len(class_names)), origin="lower", aspect=aspect, interpolation="nearest")
        _outline(ax, p if t is None else t, len(class_names))
        ax.set_title(f"slice {k}", fontsize=9, color=TEXT)
    for ax in axes:
        ax.axis("off")  # panels beyond a thin structure's slices stay empty
    where = f"slices along axis {axis} (0-{image.shape[axis] - 1}), intensity window {lo:.4g} to {hi:.4g}"
    fig.suptitle(f"{title}: {where}" if title else where, fontsize=10, color=TEXT)
    if legend:
        _figure_legend(fig, class_names, truth is not None)
    return fig
