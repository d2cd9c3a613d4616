"""emfformer report: one self-contained page, rendered for real in headless Chromium at 1400 px."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from emfformer.bench.plots import write_plots
from emfformer.engine.evaluate import run_evaluation
from emfformer.engine.html_report import pick_cases, write_html_report
from emfformer.engine.md_tables import markdown_to_html, parse_pipe_table
from emfformer.engine.score import score_folders

BENCH_MD = """# EMF-former benchmark

- Device: cpu (test); **FLOPs = 2 x MACs**, `torch.utils.flop_counter`

## Models at 64x64

| Model | Params (M) | Latency b1 (ms) | Status |
|---|---:|---:|---|
| emf_former_t_with_a_long_label | 0.10 | 2.0 | ok |
| unet | 6.50 | 9.1 | did_not_fit: over <budget> |
"""


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "headless Chromium is needed (Debian: apt-get install -y chromium; .ci/run installs it)"
    return exe


@pytest.fixture
def evaluated_run(trained_run: Path, tmp_path: Path) -> Path:
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    run_evaluation(run / "best.pt", device="cpu", progress=False)
    return run


@pytest.fixture
def bench_dir(tmp_path: Path) -> Path:
    """A bench folder as `emfformer bench --quick` leaves it: bench.json, bench.md, the two plots."""
    out = tmp_path / "bench"
    out.mkdir()
    points = [
        {"size": s, "status": "ok", "latency_ms": ms, "mem_train_mib": mib}
        for s, ms, mib in ((64, 2.0, 30), (128, 2.6, 95))
    ]
    report = {
        "meta": {"max_memory_gb": 1.0, "scaling_reference": 64, "device": "cpu", "torch": "x"},
        "scaling": {"emf_former_t": points},
    }
    (out / "bench.json").write_text(json.dumps({**report, "models": []}))
    (out / "bench.md").write_text(BENCH_MD)
    write_plots(report, out)
    return out


def test_picks_best_median_and_worst(tmp_path: Path) -> None:
    csv = tmp_path / "per_case.csv"
    csv.write_text("case_id,dice_bg,dice_A,dice_B\nc1,1,0.5,0.7\nc2,1,0.9,0.9\nc3,1,0.1,nan\nc4,1,0.6,0.6\n")
    picks = pick_cases(csv, ["bg", "A", "B"])
    assert [(name, case) for name, case, _ in picks] == [("worst", "c3"), ("median", "c4"), ("best", "c2")]
    assert picks[0][2] == pytest.approx(0.1)
    csv.write_text("case_id,dice_bg,dice_A\nc1,1,0.5\nc2,1,0.9\n")  # 2 cases: the best is the median too
    assert [(n, c) for n, c, _ in pick_cases(csv, ["bg", "A"])] == [
        ("worst", "c1"),
        ("median and best", "c2"),
    ]


def test_report_renders_at_1400_px_without_overflow(
    evaluated_run: Path, bench_dir: Path, msd_phantom: Path, tmp_path: Path
) -> None:
    own_eval = tmp_path / "my_eval"  # what `evaluate --out` writes, given as a folder of its own
    run_evaluation(evaluated_run / "best.pt", out_dir=own_eval, device="cpu", progress=False)
    out = write_html_report(
        [evaluated_run, own_eval, bench_dir], tmp_path / "report.html", data_dir=str(msd_phantom)
    )
    page = out.read_text()
    n_images = page.count("<img ")
    # curves; per evaluation a per-case plot and 2 overlays (2 test cases: worst, median and best); 2 bench plots
    assert n_images == 1 + 2 * (1 + 2) + 2
    assert 'src="http' not in page and "src='http" not in page  # self-contained
    assert "<pre>" not in page and '<td style="text-align:right">6.50</td>' in page  # bench.md as a table
    assert "over &lt;budget&gt;" in page  # escaped
    for text in (
        "fg mIoU",
        "run / eval_test",
        "my_eval",
        "worst",
        "recipe",
        "trained with",
        "trained on",  # the training machine and versions, recorded in the checkpoint
        "emfformer",
        "torch",
    ):
        assert text in page, text
    assert page.count('class="legend"') == 2  # one per evaluation with overlays

    png = tmp_path / "report.png"
    dom = subprocess.run(  # one launch: the DOM after the load handler ran, and a screenshot
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
         "--hide-scrollbars", "--window-size=1400,1600", f"--screenshot={png}", "--dump-dom", out.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    loaded = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    assert loaded, "the page's load handler did not run"
    assert loaded.group(1) == loaded.group(2) == str(n_images), "an image failed to decode"
    widths = {k: int(re.search(rf'data-{k}="(\d+)"', dom).group(1)) for k in ("scroll-width", "inner-width")}
    assert widths["inner-width"] == 1400
    assert widths["scroll-width"] <= widths["inner-width"], f"the page scrolls sideways: {widths}"
    assert int(re.search(r'data-legends="(\d+)"', dom).group(1)) == 2
    pixels = imread(png)
    assert pixels.shape[0] == 1600 and pixels.shape[1] == 1400
    assert np.std(pixels[..., :3]) > 0.05, "the screenshot is blank"


def test_report_of_scored_predictions_draws_them_on_the_scans(msd_phantom: Path, tmp_path: Path) -> None:
    preds = tmp_path / "preds"
    preds.mkdir()
    for name in ("hippocampus_001.nii.gz", "hippocampus_002.nii.gz"):
        shutil.copy(msd_phantom / "labelsTr" / name, preds / name)  # perfect predictions
    score_folders(preds, msd_phantom / "labelsTr", tmp_path / "scored", progress=False)
    page = write_html_report([tmp_path / "scored"], tmp_path / "r.html").read_text()
    assert "No overlays" not in page and "median and best: hippocampus_002" in page
    assert page.count("<img ") == 3  # per-case plot and two cases
    assert "scored" in page and "labelsTr" in page  # what was scored against what


def test_report_without_data_still_writes_the_table(evaluated_run: Path, tmp_path: Path) -> None:
    out = write_html_report([evaluated_run], tmp_path / "r.html", overlays=False)
    assert "fg Dice" in out.read_text() and 'class="legend"' not in out.read_text()
    both = write_html_report(
        [evaluated_run, evaluated_run / "eval_test"], tmp_path / "r2.html", overlays=False
    )
    assert both.read_text().count("eval_test</h3>") == 1  # a run and its evaluation folder: reported once
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="nothing to report"):
        write_html_report([tmp_path / "empty"], tmp_path / "x.html")
    with pytest.raises(ValueError, match="not a folder"):
        write_html_report([tmp_path / "missing"], tmp_path / "x.html")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="no evaluation report"):
        write_html_report([tmp_path / "bad"], tmp_path / "x.html")


def test_markdown_pipe_tables_become_html_tables() -> None:
    head, align, rows = parse_pipe_table(["| a | b \\| c | d |", "|:--|---:|:-:|", "| 1 | 2 | 3 |"])
    assert head == ["a", "b | c", "d"] and align == ["left", "right", "center"] and rows == [["1", "2", "3"]]
    out = markdown_to_html(BENCH_MD)
    assert out.startswith("<h3>EMF-former benchmark</h3>") and "<h4>Models at 64x64</h4>" in out
    assert "<strong>FLOPs = 2 x MACs</strong>" in out and "<code>torch.utils.flop_counter</code>" in out
    assert out.count("<tr>") == 3 and '<div class="table-wrap"><table>' in out and "|" not in out
    assert markdown_to_html("| not | a table |\ntext") == "<p>| not | a table |</p>\n<p>text</p>"
    with pytest.raises(ValueError, match="rule"):
        parse_pipe_table(["| a |", "| b |"])


def test_report_draws_a_peer_comparison(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    folder = tmp_path / "peers"
    folder.mkdir()
    (folder / "peers.md").write_text(
        "### hippocampus\n\n| model | seeds | test fg mIoU % |\n|---|---:|---:|\n| unext | 3 | **72.85 ± 0.26** |\n"
        "| ege_unet | 3 | **58.19 ± 0.33** |\n\n![hippocampus Pareto](pareto_hippocampus.png)\n"
    )
    fig = plt.figure(figsize=(2, 2))
    fig.savefig(folder / "pareto_hippocampus.png")
    fig.savefig(folder / "pareto_old_run.png")  # left by an earlier table: not linked, not drawn
    plt.close(fig)
    page = write_html_report([folder], tmp_path / "r.html").read_text()
    assert "<h3>Peer comparison</h3>" in page and "<h4>hippocampus</h4>" in page
    assert page.count("<tr>") >= 3 and "72.85 ± 0.26" in page
    assert "![" not in page and page.count('src="data:image/png;base64,') == 1  # the linked plot, embedded
