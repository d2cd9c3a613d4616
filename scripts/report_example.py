"""Build docs/report_example.png: an `emfformer report` of a tiny synthetic run, shot in headless Chromium.

    PYTHONPATH=src OMP_NUM_THREADS=1 python scripts/report_example.py [--out docs/report_example.png]

Everything else goes to a temporary folder: synthetic phantoms (data/synthetic.py), a 10-epoch
EMF-former-T run on them, its test evaluation, and a bench folder whose plots are redrawn from
docs/bench_twins/bench.json (the real numbers of a CPU bench). The report is written, opened at
1400 px wide, and the whole page saved as a PNG (256 colours, to keep the repository small); an
existing PNG is replaced only with --overwrite.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from PIL import Image

from emfformer.bench.plots import write_plots
from emfformer.data.synthetic import write_msd_phantoms
from emfformer.engine.config import load_config
from emfformer.engine.evaluate import run_evaluation
from emfformer.engine.html_report import write_html_report
from emfformer.engine.train import run_training

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp: Path) -> Path:
    data = write_msd_phantoms(tmp / "Task99_Phantom", n_cases=10, seed=0, shape=(40, 48, 24))
    overrides = {
        "data.dataset": "hippocampus", "data.data_dir": str(data), "data.size": 64,
        "data.cache_dir": str(tmp / "cache"), "model.name": "emf_former_t", "optim.epochs": 10,
        "optim.batch_size": 8, "device": "cpu", "threads": 1, "progress": False,
        "out_dir": str(tmp / "phantom_run"),
    }  # fmt: skip
    run = run_training(load_config(None, overrides))
    run_evaluation(Path(run) / "best.pt", device="cpu", progress=False)
    return Path(run)


def _bench(tmp: Path) -> Path:
    src, out = ROOT / "docs" / "bench_twins", tmp / "bench_twins"
    out.mkdir()
    for name in ("bench.json", "bench.md"):
        shutil.copy(src / name, out / name)
    write_plots(json.loads((src / "bench.json").read_text()), out)  # redrawn with today's axes
    return out


def _chromium(*args: str) -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise SystemExit("headless Chromium is needed (Debian: apt-get install -y chromium)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=5000"]
    return subprocess.run(
        [exe, *flags, *args], check=True, capture_output=True, text=True, timeout=120
    ).stdout


def screenshot(html: Path, png: Path, width: int = 1400) -> None:
    """The whole page of ``html``, ``width`` px wide, as a headless-Chromium screenshot (palette PNG)."""
    dom = _chromium(f"--window-size={width},1000", "--dump-dom", html.as_uri())
    height = int(re.search(r'data-scroll-height="(\d+)"', dom).group(1))  # the page's own script wrote it
    _chromium(f"--window-size={width},{height}", f"--screenshot={png}", html.as_uri())
    Image.open(png).convert("RGB").quantize(
        256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
    ).save(png, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "report_example.png"))
    parser.add_argument("--keep", help="also copy the HTML report here (a new file)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out PNG")
    args = parser.parse_args()
    if Path(args.out).exists() and not args.overwrite:
        raise SystemExit(f"{args.out} exists; pass --overwrite to replace it")
    if args.keep and Path(args.keep).exists():
        raise SystemExit(f"{args.keep} exists; give a new file to --keep")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        report = write_html_report([_run(tmp), _bench(tmp)], tmp / "report.html")
        shot = tmp / "report.png"
        screenshot(report, shot)
        shutil.copy(shot, args.out)
        if args.keep:
            shutil.copy(report, args.keep)
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
