"""One self-contained HTML page about run, evaluation, bench and peer-comparison folders, to send to a
colleague.

``emfformer report FOLDER... -o report.html`` takes run folders (``train``: ``config.yaml``,
``log.csv``, ``curves.png``, ``eval_*/``), evaluation folders (``evaluate --out``: ``metrics.json``,
``per_case.csv``, ``summary.md``), bench folders (``bench.json``, ``bench.md``, PNGs) and peer
comparisons (``peers.md`` and its Pareto PNGs, scripts/compare_table.py), several of each. The page:
where and with what it was written, one results table over every evaluation, then per folder its metadata (report_meta.py), training curves, per-case plots (report_plots.py),
overlays of the best, median and worst case (report_cases.py, overlays.py) and the bench tables
rendered from ``bench.md`` (md_tables.py). Images are embedded, so the page is one file
(report_page.py: the style sheet and element builders).
"""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..data.cases import DataError
from ..guard import check_output
from ..io import atomic_write_text
from .md_tables import markdown_to_html
from .overlays import legend_entries, overlay_figure
from .report_cases import drawn_cases, pick_cases
from .report_meta import folder_metadata, report_environment
from .report_page import figure_png, file_img, img, key_values, legend, page
from .report_plots import per_case_figure, read_per_case

__all__ = ["write_html_report", "pick_cases"]

log = logging.getLogger(__name__)

Evaluation = tuple[str, Path, dict[str, Any]]  # (name in the table, folder, metrics.json)
_ERROR_NOTE = (
    "Each case shows 5 slices spread over the structure, along the axis whose slices hold the most "
    "foreground voxels. Fill: prediction that agrees with the ground truth, in its class colour; "
    "outline: the ground truth, in its class colour; magenta: false positive (predicted foreground the "
    "truth does not have, a wrong class included); cyan: false negative (truth foreground predicted as "
    "background)."
)


def _evaluations(folder: Path) -> list[Evaluation]:
    """The evaluations of ``folder``: itself (``evaluate --out``) or its ``eval_*/`` subfolders."""
    files = (
        [folder / "metrics.json"]
        if (folder / "metrics.json").is_file()
        else sorted(folder.glob("eval_*/metrics.json"))
    )
    out = []
    for f in files:
        try:
            metrics = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"{f} is not readable JSON ({exc}); was it written by emfformer evaluate?"
            ) from exc
        if not isinstance(metrics, dict) or not {"summary", "class_names"} <= set(metrics):
            raise ValueError(
                f"{f} is no evaluation report (no summary / class_names): not from emfformer evaluate"
            )
        name = folder.name if f.parent == folder else f"{folder.name} / {f.parent.name}"
        out.append((name, f.parent, metrics))
    return out


def _curves(folder: Path) -> list[Path]:
    """Training curves of the folder, or of its member runs (an ensemble folder's ``axis*/``)."""
    own = folder / "curves.png"
    return [own] if own.is_file() else sorted(folder.glob("*/curves.png"))


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def _results_table(evals: list[Evaluation]) -> str:
    """One table over every evaluation; a column per class when all share their classes."""
    shared = all(m["class_names"] == evals[0][2]["class_names"] for _, _, m in evals)
    fg = evals[0][2]["class_names"][1:] if shared else []
    head = ["run / evaluation", "data", "cases", "fg Dice %", "fg mIoU %", "HD95 mm"]
    head += [f"Dice {c} %" for c in fg] if shared else ["per-class Dice %"]
    rows = []
    for name, _, m in evals:
        s, extra = m["summary"], m.get("extra", {})
        hd = s.get("hd95_fg_mm")
        data = " ".join(
            str(v) for v in (m.get("dataset"), extra.get("part"), "TTA" if extra.get("tta") else None) if v
        )
        cells = [name, data, str(s["num_cases"]), _pct(s["mean_dice_fg"]), _pct(s["miou_fg"]),
                 "–" if hd is None else f"{hd:.2f}"]  # fmt: skip
        per_class = s["per_class"]
        if shared:
            cells += [f"{_pct(per_class[c]['dice'])} ± {_pct(per_class[c].get('dice_std'))}" for c in fg]
        else:
            cells.append(
                ", ".join(f"{c} {_pct(v['dice'])}" for c, v in per_class.items() if c != m["class_names"][0])
            )
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    note = '<p class="note">3D volumes; Dice and mIoU over foreground classes; ± is the std over cases.</p>'
    return f'<div class="table-wrap"><table><thead><tr>{th}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>{note}'


def _overlays(eval_dir: Path, metrics: dict[str, Any], data_dir: str | None, device: str) -> str:
    """Legend and the best/median/worst overlays of one evaluation (a note when data is missing)."""
    class_names = metrics["class_names"]
    parts = [legend(legend_entries(class_names, errors=True), outline="outline: ground truth"),
             f'<p class="note">{_ERROR_NOTE}</p>']  # fmt: skip
    try:
        for case in drawn_cases(eval_dir, metrics, data_dir, device):
            fig = overlay_figure(case.image, case.pred, class_names, truth=case.truth, spacing=case.spacing,
                                 window=case.window, legend=False)  # fmt: skip
            parts.append(
                f"<h4>{case.pick}: {html.escape(case.case_id)} (fg Dice {100 * case.dice_fg:.2f} %)</h4>"
            )
            parts.append(img(figure_png(fig), f"{case.pick} case {case.case_id}"))
    except (DataError, ValueError, OSError, KeyError) as exc:
        log.warning("no overlays for %s: %s", eval_dir, exc)
        parts.append(f'<p class="note">No overlays: {html.escape(str(exc))} (pass --data).</p>')
    return "\n".join(parts)


def _evaluation_section(
    name: str, eval_dir: Path, metrics: dict[str, Any], data_dir: str | None, overlays: bool, device: str
) -> str:
    s = metrics["summary"]
    body = [f"<h3>{html.escape(name)}</h3>",
            f'<p>{s["num_cases"]} cases: fg Dice {_pct(s["mean_dice_fg"])} %, fg mIoU {_pct(s["miou_fg"])} %.</p>']  # fmt: skip
    per_case = eval_dir / "per_case.csv"
    if per_case.is_file():
        values = read_per_case(per_case, metrics["class_names"])
        body.append(
            img(figure_png(per_case_figure(values, s["num_cases"])), f"{name} per-case Dice and HD95")
        )
        if overlays:
            body.append("<h4>Best, median and worst case</h4>")
            body.append(_overlays(eval_dir, metrics, data_dir, device))
    return "\n".join(body)


def _bench_section(folder: Path) -> str:
    body = ["<h3>Benchmark</h3>"]
    plots = "".join(file_img(p, p.stem.replace("_", " ")) for p in sorted(folder.glob("*.png")))
    body.append(f'<div class="grid">{plots}</div>')
    if (folder / "bench.md").is_file():
        body.append(markdown_to_html((folder / "bench.md").read_text(encoding="utf-8"), heading_shift=3))
    return "\n".join(body)


def _comparison_section(folder: Path) -> str:
    """The peer comparison of scripts/compare_table.py: its tables and the Pareto plots it links."""
    lines = (folder / "peers.md").read_text(encoding="utf-8").splitlines()
    tables = "\n".join(line for line in lines if not line.startswith("!["))  # images: embedded below
    linked = [m.group(1) for line in lines if (m := re.match(r"!\[[^\]]*\]\(([^)]+)\)", line))]
    # only the plots peers.md links: an older PNG left in the folder is not this table's
    plots = "".join(
        file_img(folder / n, Path(n).stem.replace("_", " ")) for n in linked if (folder / n).is_file()
    )
    return "\n".join(
        [
            "<h3>Peer comparison</h3>",
            markdown_to_html(tables, heading_shift=1),
            f'<div class="grid">{plots}</div>',
        ]
    )


def _folder_section(
    folder: Path, evals: list[Evaluation], data_dir: str | None, overlays: bool, device: str
) -> str:
    body = [
        f"<h2>{html.escape(folder.name or str(folder))}</h2>",
        f'<p class="muted">{html.escape(str(folder))}</p>',
    ]
    body.append(key_values(folder_metadata(folder, [(e, m) for _, e, m in evals])))
    curves = _curves(folder)
    if curves:  # an ensemble's member runs side by side
        cells = [
            (f"<div><h4>{html.escape(p.parent.name)}</h4>" if p.parent != folder else "<div>")
            + file_img(p, f"{p.parent.name} training curves")
            + "</div>"
            for p in curves
        ]
        body.append(f'<h3>Training curves</h3><div class="grid">{"".join(cells)}</div>')
    body += [_evaluation_section(name, e, m, data_dir, overlays, device) for name, e, m in evals]
    if (folder / "bench.json").is_file():
        body.append(_bench_section(folder))
    if (folder / "peers.md").is_file():
        body.append(_comparison_section(folder))
    return "\n".join(body)


def write_html_report(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    data_dir: str | None = None,
    overlays: bool = True,
    overwrite: bool = False,
    device: str = "cpu",
) -> Path:
    """Write one self-contained HTML page about ``run_dirs`` (run, evaluation, bench and/or peer-comparison
    folders).

    ``data_dir``: the dataset of the overlays (default: the one each evaluation recorded); ``device``:
    where the overlays' cases are segmented again.
    ``overwrite``: replace an existing ``out`` that is not an emfformer report (never a run's own file).

    Raises:
        ValueError: a folder does not exist or holds nothing to report, or ``out`` is a file of a run
            folder or an existing file that no report wrote (without ``overwrite``).
    """
    out, folders = Path(out), [Path(p) for p in run_dirs]
    inputs = [p for run in folders if run.is_dir() for p in run.rglob("*") if p.is_file()]
    check_output(out, "html", inputs, overwrite)  # never destroy (guard.py): before any work
    found, seen = [], set()
    for folder in folders:
        if not folder.is_dir():
            raise ValueError(
                f"{folder} is not a folder; give run, evaluation (evaluate --out), bench or peer-comparison folders"
            )
        evals = _evaluations(folder)
        if (
            not evals
            and not _curves(folder)
            and not any((folder / f).is_file() for f in ("bench.json", "peers.md"))
        ):
            raise ValueError(
                f"{folder} holds no metrics.json, eval_*/metrics.json, curves.png, bench.json or peers.md "
                "(scripts/compare_table.py): nothing to report"
            )
        fresh = [e for e in evals if e[1].resolve() not in seen]  # RUN and RUN/eval_test: reported once
        seen.update(e[1].resolve() for e in fresh)
        if fresh or not evals:
            found.append((folder, fresh))
    every = [e for _, evals in found for e in evals]
    table = _results_table(every) if every else '<p class="note">No evaluations found.</p>'
    sections = [_folder_section(folder, evals, data_dir, overlays, device) for folder, evals in found]
    body = (
        "<h1>emfformer report</h1>" + key_values(report_environment())
        + f"<h2>Results</h2>{table}" + "".join(sections)
    )  # fmt: skip
    atomic_write_text(out, page("emfformer report", body))
    return out
