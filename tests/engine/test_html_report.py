"""emfformer report: one self-contained page, rendered for real in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from emfformer.engine.evaluate import run_evaluation
from emfformer.engine.html_report import pick_cases, write_html_report


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "headless Chromium is needed (Debian: apt-get install -y chromium; .ci/run installs it)"
    return exe


@pytest.fixture
def evaluated_run(trained_run: Path, tmp_path: Path) -> Path:
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    run_evaluation(run / "best.pt", device="cpu", progress=False)
    return run


def test_picks_best_median_and_worst(tmp_path: Path) -> None:
    csv = tmp_path / "per_case.csv"
    csv.write_text("case_id,dice_bg,dice_A,dice_B\nc1,1,0.5,0.7\nc2,1,0.9,0.9\nc3,1,0.1,nan\nc4,1,0.6,0.6\n")
    picks = pick_cases(csv, ["bg", "A", "B"])
    assert [(name, case) for name, case, _ in picks] == [("worst", "c3"), ("median", "c4"), ("best", "c2")]
    assert picks[0][2] == pytest.approx(0.1)


def test_report_renders_in_headless_chromium_with_all_images(
    evaluated_run: Path, msd_phantom: Path, tmp_path: Path
) -> None:
    out = write_html_report([evaluated_run], tmp_path / "report.html", data_dir=str(msd_phantom))
    page = out.read_text()
    n_images = page.count("<img ")
    assert n_images >= 3  # curves + the overlays of the test cases
    assert "fg mIoU" in page and "eval_test" in page and "best:" in page and "worst:" in page
    assert 'src="http' not in page and "src='http" not in page  # self-contained

    png = tmp_path / "report.png"
    dom = subprocess.run(  # one launch: the DOM after the load handler ran, and a screenshot
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
         "--hide-scrollbars", "--window-size=1200,1600", f"--screenshot={png}", "--dump-dom", out.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    loaded = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    assert loaded, "the page's load handler did not run"
    assert loaded.group(1) == loaded.group(2) == str(n_images), "an image failed to decode"
    pixels = imread(png)
    assert pixels.shape[0] == 1600 and pixels.shape[1] == 1200
    assert np.std(pixels[..., :3]) > 0.05, "the screenshot is blank"


def test_report_without_data_still_writes_the_table(evaluated_run: Path, tmp_path: Path) -> None:
    out = write_html_report([evaluated_run], tmp_path / "r.html", overlays=False)
    assert "fg Dice" in out.read_text()
    with pytest.raises(ValueError, match="nothing to report"):
        write_html_report([tmp_path], tmp_path / "x.html")
    with pytest.raises(ValueError, match="not a folder"):
        write_html_report([tmp_path / "missing"], tmp_path / "x.html")
