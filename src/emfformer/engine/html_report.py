"""One self-contained HTML page for run folders: results table, curves, bench plots and overlays.

``emfformer report RUN_DIR... -o report.html`` reads what train / evaluate / bench wrote (``log.csv``,
``curves.png``, ``eval_*/metrics.json`` + ``per_case.csv``, ``bench.json`` + PNGs) and, for each
evaluation, segments its best, median and worst case again to draw prediction-vs-ground-truth overlays
of several slices. Every image is embedded (base64), so the page is one file that opens anywhere.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure

from ..data.acdc import read_acdc
from ..data.cases import DataError, load_volume
from ..data.locate import read_dataset
from ..guard import HTML_MARKER, check_output
from ..io import atomic_write_text
from .checkpoint import load_members
from .inference import predict_volume, resolve_device

__all__ = ["write_html_report", "pick_cases"]

log = logging.getLogger(__name__)

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}
th{background:#eee}td:first-child{text-align:left}img{max-width:100%;border:1px solid #ddd;margin:4px 0}
.note{color:#555}"""
# sets data-images-loaded on <body> once every image decoded: lets a headless browser check the page
_LOADED_JS = """window.addEventListener('load',()=>{const i=[...document.images];
document.body.dataset.imagesLoaded=i.filter(x=>x.complete&&x.naturalWidth>0).length+'/'+i.length;});"""


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _file_img(path: Path, alt: str) -> str:
    return _img(base64.b64encode(path.read_bytes()).decode("ascii"), alt) if path.is_file() else ""


def pick_cases(per_case_csv: Path, class_names: Sequence[str]) -> list[tuple[str, str, float]]:
    """(label, case id, mean foreground Dice) of the best, median and worst case of an evaluation."""
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
    picks = {"worst": scored[0], "median": scored[len(scored) // 2], "best": scored[-1]}
    return [(name, case, score) for name, (score, case) in picks.items()]


def _overlay_figure(
    image: np.ndarray, label: np.ndarray, pred: np.ndarray, axis: int, n_classes: int
) -> Figure:
    """Rows: ground truth, prediction; columns: the slices with the most ground-truth foreground."""
    img, lab, prd = (np.moveaxis(a, axis, 0) for a in (image, label, pred))
    fg = lab.reshape(len(lab), -1).astype(bool).sum(1)
    order = np.argsort(fg)[::-1]
    picks = sorted(order[: min(3, len(order))].tolist())
    fig = Figure(figsize=(2.6 * len(picks), 5.4))
    axes = fig.subplots(2, len(picks), squeeze=False)
    cmap = colormaps["tab10"].resampled(max(n_classes, 2))
    for col, k in enumerate(picks):
        for row, (name, lbl) in enumerate((("ground truth", lab), ("prediction", prd))):
            ax = axes[row][col]
            ax.imshow(img[k].T, cmap="gray", origin="lower")
            ax.imshow(np.ma.masked_equal(lbl[k].T, 0), cmap=cmap, vmin=0, vmax=max(n_classes - 1, 1),
                      alpha=0.45, origin="lower")  # fmt: skip
            ax.set_title(f"{name}, slice {k}", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    return fig


def _overlays(eval_dir: Path, metrics: dict[str, Any], data_dir: str | None, device: str = "cpu") -> str:
    """HTML with overlays of the best/median/worst case of one evaluation ('' when data is missing)."""
    extra, class_names = metrics["extra"], metrics["class_names"]
    picks = pick_cases(eval_dir / "per_case.csv", class_names)
    root = data_dir or extra.get("data_dir")
    checkpoints = extra["checkpoint"] if isinstance(extra["checkpoint"], list) else [extra["checkpoint"]]
    try:
        if root is None:
            raise DataError("no data folder recorded")
        kind = extra.get("dataset_kind", "msd")  # how the evaluation read its data (hippocampus | acdc | msd)
        if extra.get("part") == "external_test":
            info = read_acdc(Path(root), "testing", require_labels=False)  # scored frames are labelled
        else:
            info = read_dataset(kind, Path(root), check=False)
        cases = {c.case_id: c for c in info.cases}
        members = load_members(checkpoints, resolve_device(device))[0]
    except (DataError, ValueError, OSError) as exc:
        log.warning("no overlays for %s: %s", eval_dir, exc)
        return f'<p class="note">No overlays: {html.escape(str(exc))} (pass --data).</p>'
    parts = []
    for name, case_id, score in picks:
        vol = load_volume(cases[case_id])
        with torch.inference_mode():
            pred = predict_volume(members, vol.image, tta=bool(extra.get("tta", False)), affine=vol.affine)
        first = vol.image if vol.image.ndim == 3 else vol.image[..., 0]  # the first channel is shown
        fig = _overlay_figure(first, vol.label, pred, members[0][1].slice_axis % 3, len(class_names))
        parts.append(f"<h4>{name}: {html.escape(case_id)} (fg Dice {100 * score:.2f} %)</h4>")
        parts.append(_img(_png(fig), f"{name} case {case_id}"))
    return "\n".join(parts)


def _results_rows(evals: list[tuple[str, Path, dict[str, Any]]]) -> str:
    head = "<tr><th>run / evaluation</th><th>cases</th><th>fg Dice %</th><th>fg mIoU %</th><th>HD95 mm</th>"
    head += "<th>per-class Dice %</th></tr>"
    rows = [head]
    for name, _, m in evals:
        s = m["summary"]
        per_class = ", ".join(
            f"{c} {100 * v['dice']:.2f}" for c, v in s["per_class"].items() if c != m["class_names"][0]
        )
        hd = s.get("hd95_fg_mm")
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{s['num_cases']}</td><td>{100 * s['mean_dice_fg']:.2f}</td>"
            f"<td>{100 * s['miou_fg']:.2f}</td><td>{'–' if hd is None else f'{hd:.2f}'}</td>"
            f"<td>{html.escape(per_class)}</td></tr>"
        )
    return "<table>" + "".join(rows) + "</table>"


def write_html_report(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    data_dir: str | None = None,
    overlays: bool = True,
    overwrite: bool = False,
    device: str = "cpu",
) -> Path:
    """Write one self-contained HTML page about ``run_dirs`` (run folders and/or bench folders).

    ``overwrite``: replace an existing ``out`` that is not an emfformer report (never a run's own file).

    Raises:
        ValueError: a folder does not exist or holds nothing to report, or ``out`` is a file of a run
            folder or an existing file that no report wrote (without ``overwrite``).
    """
    out = Path(out)
    inputs = [p for run in map(Path, run_dirs) if run.is_dir() for p in run.rglob("*") if p.is_file()]
    check_output(out, "html", inputs, overwrite)  # never destroy (guard.py): before any work
    sections, evals = [], []
    for run in map(Path, run_dirs):
        if not run.is_dir():
            raise ValueError(f"{run} is not a folder; give run folders (from train) or bench folders")
        found = sorted(run.glob("eval_*/metrics.json"))
        has_bench = (run / "bench.json").is_file()
        if not found and not has_bench and not (run / "curves.png").is_file():
            raise ValueError(
                f"{run} holds no curves.png, eval_*/metrics.json or bench.json: nothing to report"
            )
        body = [f"<h2>{html.escape(str(run))}</h2>", _file_img(run / "curves.png", f"{run} training curves")]
        for metrics_file in found:
            metrics = json.loads(metrics_file.read_text())
            evals.append((f"{run.name} / {metrics_file.parent.name}", metrics_file.parent, metrics))
            body.append(f"<h3>{html.escape(metrics_file.parent.name)}: best, median and worst case</h3>")
            if overlays and (metrics_file.parent / "per_case.csv").is_file():
                body.append(_overlays(metrics_file.parent, metrics, data_dir, device))
        if has_bench:
            body += [_file_img(p, p.stem) for p in sorted(run.glob("*.png"))]
            if (run / "bench.md").is_file():
                body.append(f"<pre>{html.escape((run / 'bench.md').read_text())}</pre>")
        sections.append("\n".join(body))
    table = _results_rows(evals) if evals else '<p class="note">No evaluations found.</p>'
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'>{HTML_MARKER}<title>emfformer report</title>"
        f"<style>{_STYLE}</style><script>{_LOADED_JS}</script></head><body>"
        f"<h1>emfformer report</h1><h2>Results (3D volumes)</h2>{table}{''.join(sections)}</body></html>"
    )
    atomic_write_text(out, page)
    return out
