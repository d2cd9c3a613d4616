"""scripts/compare_table.py: the peer table from fabricated run folders and a bench report."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("compare_table", ROOT / "scripts" / "compare_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(root: Path, folder: str, spec: str, seed: int, miou: float, epoch_s: float) -> None:
    run = root / folder / f"s{seed}"
    (run / "eval_test").mkdir(parents=True)
    (root / folder / "spec.txt").write_text(spec + "\n")
    (run / "log.json").write_text(json.dumps([{"epoch": 1, "train_seconds": epoch_s}]))
    summary = {"miou_fg": miou, "mean_dice_fg": miou + 0.1}
    (run / "eval_test" / "metrics.json").write_text(json.dumps({"summary": summary}))


def test_table_has_mean_and_std_over_seeds_and_the_bench_columns(tmp_path: Path) -> None:
    runs = tmp_path / "hippocampus"
    for seed, miou in enumerate((0.70, 0.72)):
        _run(runs, "emf_former_s_head_stride_1", "emf_former_s:head_stride=1", seed, miou, 60)
    _run(runs, "unext", "unext", 0, 0.65, 30)
    bench = {
        "meta": {"train_batch": 2},
        "models": [
            {"label": "emf_former_s:head_stride=1", "params": 780_000, "flops": 5.6e8, "latency_ms": 20.0,
             "throughput_img_s": 50.0, "size": 224},
            {"label": "unext", "params": 1_471_425, "flops": 8.6e8, "latency_ms": 10.0, "throughput_img_s": 90.0},
        ],
        "scaling": {"emf_former_s:head_stride=1": [{"size": 512, "status": "ok", "mem_train_mib": 700.0,
                                                    "train_step_ms": 812.4}],
                    "unext": [{"size": 512, "status": "ok", "mem_train_mib": 400.0}]},
        "engines": [{"label": "unext", "engine": "onnxruntime", "status": "ok", "throughput_img_s": 150.0}],
    }  # fmt: skip
    recipe = {  # a second bench at the recipe's patch and batch: one more memory column
        "meta": {"train_batch": 32},
        "models": [{"label": "emf_former_s:head_stride=1", "params": 1, "flops": 1}],
        "scaling": {"emf_former_s:head_stride=1": [{"size": 64, "status": "ok", "mem_train_mib": 90.0}]},
    }
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    out = tmp_path / "out"
    benches = [str(tmp_path / "bench.json"), str(tmp_path / "recipe.json")]
    assert _module().main(["--runs", str(runs), "--bench", *benches, "--out", str(out)]) == 0
    table = (out / "peers.md").read_text()
    assert "| train MiB / step ms 64² b32 | train MiB / step ms 512² b2 |" in table
    ours = next(line for line in table.splitlines() if line.startswith("| emf_former_s:head_stride=1"))
    assert (
        "| 2 | **71.00 ± 1.41** |" in ours and "| 0.780 | 0.560 | 90 / – | 700 / 812 | 50.0 (eager) |" in ours
    )
    peer = next(line for line in table.splitlines() if line.startswith("| unext"))
    assert "| 1 | **65.00** |" in peer and "| – | 400 / – | 150.0 (onnxruntime)" in peer
    assert table.index("| emf_former_s") < table.index("| unext")  # best mIoU first
    assert (out / "pareto_hippocampus.png").stat().st_size > 0
