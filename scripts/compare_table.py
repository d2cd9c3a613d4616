"""The peer comparison table and Pareto plots, from the runs of scripts/compare_peers.sh and benches.

    python scripts/compare_table.py --runs runs/compare/hippocampus [runs/compare/left_atrium]
        [--bench docs/bench_peers/engines/bench.json docs/bench_peers/recipe/bench.json] --out docs/results/peers

Reads, per dataset folder, ``<spec>/s<seed>/log.json`` (epoch times) and ``eval_test/metrics.json``
(test-part fg mIoU and Dice, mean over cases), and from the benches (optional; scripts/bench_peers.sh)
params, FLOPs and batch-1 latency (from the first bench that measured the model: give the 224^2 bench
first), training memory per (side, training batch) of every scaling point of every bench, and the best
engine's CPU throughput. Writes ``peers.md`` (the table,
mean +- std over seeds, with the number of seeds) and ``pareto_<dataset>.png`` (accuracy against
batch-1 latency and against training memory) into ``--out``; prints the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _spec_of(folder: Path) -> str:
    """The model spec of a run folder (compare_peers.sh writes it into spec.txt)."""
    spec = folder / "spec.txt"
    return spec.read_text().strip() if spec.is_file() else folder.name


def _runs(root: Path) -> dict[str, list[dict[str, Any]]]:
    """spec -> one record per finished seed: mIoU, Dice, median epoch seconds."""
    out: dict[str, list[dict[str, Any]]] = {}
    for metrics in sorted(root.glob("*/s*/eval_test/metrics.json")):
        run = metrics.parent.parent
        summary = json.loads(metrics.read_text())["summary"]
        log = json.loads((run / "log.json").read_text())
        out.setdefault(_spec_of(run.parent), []).append(
            {
                "seed": run.name,
                "miou": 100 * summary["miou_fg"],
                "dice": 100 * summary["mean_dice_fg"],
                "epoch_s": statistics.median(r["train_seconds"] for r in log),
                "epochs": len(log),
            }
        )
    return out


def _bench(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """spec -> params, GFLOPs (first bench's size), latency, best-engine throughput, and training memory
    per (side, training batch) of every bench (e.g. one at the recipe's patch and batch, one at 512^2)."""
    facts: dict[str, dict[str, Any]] = {}
    for path in paths:
        report = json.loads(path.read_text())
        for row in report["models"]:
            facts.setdefault(row["label"], {
                "params": row.get("params"), "gflops": (row.get("flops") or 0) / 1e9,
                "latency_ms": row.get("latency_ms"), "size": row.get("size"),
                "throughput": row.get("throughput_img_s"), "engine": "eager", "mem": {},
            })  # fmt: skip
        _add_memory(facts, report)
        _add_engines(facts, report)
    return facts


def _add_memory(facts: dict[str, dict[str, Any]], report: dict[str, Any]) -> None:
    """Training memory of every scaling point, keyed by (side, training batch)."""
    batch = report.get("meta", {}).get("train_batch")
    if batch is None:
        return  # a bench that did not record its training batch: its memory would be ambiguous
    for label, points in report.get("scaling", {}).items():  # label -> one point per side
        for row in points:
            if row.get("status") == "ok" and label in facts and row.get("mem_train_mib"):
                facts[label]["mem"][(int(row["size"]), batch)] = row["mem_train_mib"]
                facts[label].setdefault("step", {})[(int(row["size"]), batch)] = row.get("train_step_ms")


def _add_engines(facts: dict[str, dict[str, Any]], report: dict[str, Any]) -> None:
    """The best engine's throughput of every model of the engine table (int8 left out: the bench
    calibrates it on random inputs, so its accuracy is not established; bf16's is, docs/benchmarks.md)."""
    for row in report.get("engines", []):
        f = facts.get(row["label"])
        if (
            f is not None
            and row.get("status") == "ok"
            and row["engine"] != "onnxruntime_int8"
            and (row["throughput_img_s"] or 0) > (f["throughput"] or 0)
        ):
            f.update(throughput=row["throughput_img_s"], engine=row["engine"])


def _static(specs: list[str], side: int, in_channels: int, num_classes: int) -> dict[str, dict[str, Any]]:
    """Params and GFLOPs of each spec built for the recipe's patch (no bench needed: no timing)."""
    from emfformer.bench.probe import parse_spec
    from emfformer.models.stats import count_flops, count_params

    facts = {}
    for spec in specs:
        model = parse_spec(spec).build(side, in_channels, num_classes)
        facts[spec] = {
            "params": count_params(model),
            "gflops": count_flops(model, (1, in_channels, side, side)) / 1e9,
        }
    return facts


def _pm(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def _table(name: str, runs: dict[str, list[dict]], bench: dict[str, dict], sides: list[tuple]) -> list[str]:
    mem_cols = "".join(f"train MiB / step ms {s}² b{b} | " for s, b in sides)
    lines = [
        f"### {name}",
        "",
        f"| model | seeds | test fg mIoU % | test fg Dice % | epoch s | params M | GFLOPs | {mem_cols}"
        "img/s (best engine) |",
        "|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(sides) + "---|",
    ]
    order = sorted(runs, key=lambda s: -statistics.mean(r["miou"] for r in runs[s]))
    for spec in order:
        rs, b = runs[spec], bench.get(spec, {})
        mem = "".join(_mem_cell(b, s) for s in sides)
        speed = f"{b['throughput']:.1f} ({b['engine']})" if b.get("throughput") else "–"
        params = f"{b['params'] / 1e6:.3f}" if b.get("params") else "–"
        gflops = f"{b['gflops']:.3f}" if b.get("gflops") else "–"
        lines.append(
            f"| {spec} | {len(rs)} | **{_pm([r['miou'] for r in rs])}** | {_pm([r['dice'] for r in rs])} | "
            f"{statistics.median(r['epoch_s'] for r in rs):.0f} | {params} | {gflops} | {mem}{speed} |"
        )
    return [*lines, ""]


def _mem_cell(facts: dict[str, Any], key: tuple) -> str:
    """Training memory and step time of one training step at ``key`` = (side, batch): "MiB / ms"."""
    mem, step = facts.get("mem", {}).get(key), facts.get("step", {}).get(key)
    if mem is None:
        return "– | "
    return f"{mem:.0f} / {step:.0f} | " if step else f"{mem:.0f} / – | "


def _pareto(
    name: str, runs: dict[str, list[dict]], bench: dict[str, dict], side: tuple | None, out: Path
) -> Path | None:
    points = [(s, statistics.mean(r["miou"] for r in rs), bench.get(s, {})) for s, rs in runs.items()]
    points = [p for p in points if p[2].get("latency_ms") and side in p[2].get("mem", {})]
    if not points:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label in (
        (axes[0], "latency_ms", f"CPU latency, batch 1, eager, {points[0][2].get('size')}² (ms)"),
        (axes[1], "mem", f"training memory at {side[0]}², batch {side[1]} (MiB)" if side else ""),
    ):
        for spec, miou, b in points:
            x = b[key] if key != "mem" else b["mem"][side]
            ax.scatter(x, miou, s=40)
            ax.annotate(spec.split(":")[0], (x, miou), fontsize=8, xytext=(4, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("test fg mIoU (%)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{name}: accuracy against cost (up and left is better)")
    fig.tight_layout()
    path = out / f"pareto_{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", type=Path, required=True, help="compare_peers.sh output folders")
    ap.add_argument("--bench", type=Path, nargs="*", default=[],
                    help="bench.json files of `emfformer bench` over the same specs (memory columns from each)")  # fmt: skip
    ap.add_argument("--out", type=Path, required=True, help="folder for peers.md and the Pareto PNGs")
    ap.add_argument(
        "--patch", type=int, nargs=3, metavar=("SIDE", "IN", "CLASSES"),
        help="without a bench: params and GFLOPs of each model at this input (e.g. 64 3 3: the recipe's patch)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    bench = _bench(args.bench)
    sides = sorted({s for b in bench.values() for s in b["mem"]})
    args.out.mkdir(parents=True, exist_ok=True)
    lines = []
    for root in args.runs:
        runs = _runs(root)
        if not runs:
            raise SystemExit(f"error: no finished run (*/s*/eval_test/metrics.json) under {root}")
        if args.patch:  # the bench's numbers win where it measured a model
            for spec, f in _static(sorted(runs), *args.patch).items():
                bench.setdefault(spec, {"mem": {}, **f, "size": args.patch[0]})
        lines += _table(root.name, runs, bench, sides)
        plot = _pareto(root.name, runs, bench, max(sides) if sides else None, args.out)
        if plot:
            lines += [f"![{root.name} Pareto]({plot.name})", ""]
    (args.out / "peers.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
