"""``emfformer bench``: params, FLOPs, peak memory, latency and throughput of many models in one run.

Every model (and, for the resolution scaling, every model x input side) is measured in a fresh child
process (:mod:`emfformer.bench.probe`), so memory peaks, allocator caches and thread pools do
not leak between models; the fp32 matmul peak that throughput is compared with is measured in the same
run. Sizes whose predicted training memory exceeds ``max_memory_gb`` are skipped; a child that exceeds
it anyway is stopped and recorded as "did not fit". Results: ``bench.json``, ``bench.md`` (tables and
the paper's efficiency claims as targets with PASS/FAIL lines, see :mod:`emfformer.bench.summary`) and PNG plots in ``out_dir``, all written atomically.

Example:
    >>> run_benchmark(["emf_former_s", "unet"], Path("runs/bench"), scaling_sizes=(128, 224))
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from emfformer.progress import tqdm

from ..io import atomic_write_json, atomic_write_text
from .defaults import (
    DEFAULT_MODELS,
    DEFAULT_SCALING_SIZES,
    ENGINES,
    OURS,
    OURS_RECOMPUTE,
    QUICK,
    TWIN,
    TWIN_SDPA,
)
from .engines import PREDICT_SETTINGS, run_engine_probes, run_predict_probes
from .measure import count_flops, count_params, measure_matmul_peak
from .plots import write_plots
from .probe import ModelSpec, ProbeRequest, parse_spec, run_probe, size_problem
from .summary import (
    evaluate_goals,
    find_crossover,
    memory_method_text,
    predict_memory,
    render_markdown,
)

__all__ = [
    "DEFAULT_MODELS",
    "DEFAULT_SCALING_SIZES",
    "count_params",
    "count_flops",
    "measure_matmul_peak",
    "parse_spec",
    "run_benchmark",
    "QUICK",
]

MIB = 2**20
_KEEP = (
    "label", "size", "status", "reason", "params", "flops", "mem_infer_mib", "mem_train_mib", "train_step_ms",
    "latency_ms",
    "latency_ms_min", "latency_runs", "throughput_img_s", "throughput_img_s_best", "throughput_runs",
    "threads_used", "mem_method", "baseline_rss_mib", "predicted_train_mib", "wall_s",
)  # fmt: skip


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _probe(spec: ModelSpec, side: int, base: ProbeRequest, bar: tqdm, timeout_s: float) -> dict[str, Any]:
    bar.set_postfix_str(f"{spec.label} @ {side}")
    problem = size_problem(spec, side)
    if problem:
        res: dict[str, Any] = {"status": "skipped", "reason": problem}
    else:
        t0 = time.perf_counter()
        res = run_probe(replace(base, spec=spec.label, size=side), timeout_s)
        res["wall_s"] = time.perf_counter() - t0
    res.update(label=spec.label, size=side)
    if res["status"] not in ("ok", "did_not_fit"):
        tqdm.write(f"bench: {spec.label} @ {side}: {res['status']}: {res.get('reason')}", file=sys.stderr)
    bar.update()
    return {k: res[k] for k in _KEEP if res.get(k) is not None}


def _scaling(
    spec: ModelSpec,
    sizes: Sequence[int],
    base: ProbeRequest,
    main_results: dict[tuple[str, int], dict[str, Any]],
    bar: tqdm,
    timeout_s: float,
) -> list[dict[str, Any]]:
    """One model at every side, smallest first; sides predicted not to fit the budget are skipped."""
    points: list[dict[str, Any]] = []
    budget_mib = base.max_memory_mb
    for side in sorted(sizes):
        measured = [(p["size"] ** 2, p["mem_train_mib"]) for p in points if p.get("mem_train_mib")]
        predicted = predict_memory(measured, float(side) ** 2)
        if any(p["status"] in ("did_not_fit", "skipped_predicted") for p in points):
            reason = "a smaller side did not fit"
            point = {"label": spec.label, "size": side, "status": "skipped_predicted", "reason": reason}
            bar.update()
        elif any(p["status"] == "timeout" for p in points):
            point = {
                "label": spec.label,
                "size": side,
                "status": "skipped",
                "reason": "a smaller side timed out",
            }
            bar.update()
        elif predicted is not None and predicted > budget_mib:
            reason = f"predicted {predicted:.0f} MiB > budget"
            point = {"label": spec.label, "size": side, "status": "skipped_predicted", "reason": reason}
            point["predicted_train_mib"] = predicted
            bar.update()
        elif (spec.label, side) in main_results:  # same settings as the model table: reuse
            point = dict(main_results[(spec.label, side)])
            bar.update()
        else:
            point = _probe(spec, side, replace(base, batch=0), bar, timeout_s)
        points.append(point)
    ref_side = 224 if 224 in sizes else min(sizes)
    ref = next((p for p in points if p["size"] == ref_side and p["status"] == "ok"), None)
    for p in points:
        p["pixel_ratio"] = p["size"] ** 2 / ref_side**2
        if ref and p.get("mem_train_mib") and ref.get("mem_train_mib"):
            p["mem_growth"] = p["mem_train_mib"] / ref["mem_train_mib"]
        if ref and p.get("latency_ms") and ref.get("latency_ms"):
            p["latency_growth"] = p["latency_ms"] / ref["latency_ms"]
    return points


def run_benchmark(
    models: Sequence[str],
    out_dir: Path,
    size: int = 224,
    batch: int = 16,
    scaling_sizes: Sequence[int] = DEFAULT_SCALING_SIZES,
    scaling_models: Sequence[str] = (OURS, OURS_RECOMPUTE, TWIN, TWIN_SDPA),
    max_memory_gb: float = 8.0,
    threads: int = 2,
    repeats: int = 10,
    train_batch: int = 4,
    device: str = "cpu",
    warmup: int = 2,
    time_budget_s: float = 10.0,
    matmul_seconds: float = 3.0,
    dice: dict[str, float] | None = None,
    timeout_s: float = 1800.0,
    progress: bool = True,
    engines: Sequence[str] = (),
    engine_models: Sequence[str] = (OURS, "unet"),
    predict_checkpoint: str | None = None,
    engine_batch: int | None = None,
) -> dict[str, Any]:
    """Benchmark ``models`` (specs, see :func:`parse_spec`) and write ``bench.json``/``bench.md``/PNGs.

    Args:
        models: model specs for the main table, e.g. ``["emf_former_s", "emf_former_s:conv=plain"]``.
        out_dir: output folder (created).
        size: input side of the main table (square, 1 channel).
        batch: throughput batch.
        scaling_sizes: input sides of the resolution scaling (empty: no scaling).
        scaling_models: specs measured at every scaling side.
        max_memory_gb: memory budget (GiB above the child's baseline) for any measurement.
        threads: CPU threads, fixed in every child.
        repeats: timed runs per timing loop (median reported).
        train_batch: batch of the inference- and training-memory measurements.
        device: ``"cpu"`` or ``"cuda"``.
        warmup: untimed runs before the batch-1 latency loop.
        time_budget_s: a timing loop stops after this many seconds (after >= 3 runs).
        matmul_seconds: duration of the fp32 matmul peak measurement.
        dice: optional model label -> Dice, for the bubble chart.
        timeout_s: a child running longer is killed (status ``timeout``).
        progress: show a tqdm progress bar.
        engines: inference engines (:data:`emfformer.bench.engines.ENGINES`) to time ``engine_models``
            under, at ``size`` and ``engine_batch``; empty: none.
        engine_models: specs for the engine table.
        engine_batch: throughput batch of the engine table (None: the batch ``predict`` runs at ``size``).
        predict_checkpoint: a checkpoint (path or shipped name) whose whole-volume predict is timed.

    Returns:
        The report dict that was written to ``bench.json``.
    """
    _check_settings(models, size, batch, threads, repeats, train_batch, max_memory_gb, time_budget_s,
                    matmul_seconds, warmup, scaling_sizes, device, engines, engine_batch)  # fmt: skip
    specs = [parse_spec(m) for m in models]
    engine_specs = [parse_spec(m) for m in engine_models] if engines else []
    scaling_specs = [parse_spec(m) for m in scaling_models] if scaling_sizes else []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    load_start = _load_avg()
    base = ProbeRequest(
        size=size, batch=batch, train_batch=train_batch, repeats=repeats, warmup=warmup, threads=threads,
        device=device, max_memory_mb=max_memory_gb * 1024, time_budget_s=time_budget_s, matmul_seconds=matmul_seconds,
    )  # fmt: skip
    matmul, results, scaling, engine_rows, predict_rows = _run_probes(
        base, specs, scaling_specs, sorted(set(scaling_sizes)), engine_specs, tuple(engines), predict_checkpoint,
        timeout_s, progress, engine_batch,
    )  # fmt: skip
    _add_peak_fraction(results, matmul.get("gflops"))
    meta = _meta(base, max_memory_gb, specs, scaling_specs, scaling_sizes, device, matmul)
    report: dict[str, Any] = {"meta": meta, "models": results, "scaling": scaling}
    report.update(engines=engine_rows, predict=predict_rows)
    report["crossover"] = find_crossover(report) if {OURS, TWIN} <= set(scaling) else None
    report["goals"] = evaluate_goals(report)
    report["dice"] = dice
    meta["wall_s"] = time.perf_counter() - started
    meta["load_avg_1min"] = [load_start, _load_avg()]
    plots = write_plots(report, out_dir, dice)
    report["files"] = [p.name for p in plots] + ["bench.json", "bench.md"]
    atomic_write_text(out_dir / "bench.md", render_markdown(report))
    atomic_write_json(out_dir / "bench.json", report)
    return report


def _run_probes(
    base: ProbeRequest, specs: list[ModelSpec], scaling_specs: list[ModelSpec], sides: list[int],
    engine_specs: list[ModelSpec], engines: tuple[str, ...], predict_checkpoint: str | None, timeout_s: float,
    progress: bool, engine_batch: int | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, list[dict[str, Any]]], list[dict], list[dict]]:  # fmt: skip
    """Every child process of one run, under one progress bar: the matmul peak, the model table, the
    resolution scaling (reusing table points), the engine table and the whole-volume predict timings."""
    total = 1 + len(specs) + len(scaling_specs) * len(sides) + len(engine_specs) * len(engines)
    total += len(PREDICT_SETTINGS) if predict_checkpoint else 0
    with tqdm(total=total, desc="emfformer bench", unit="probe", disable=not progress) as bar:
        bar.set_postfix_str("fp32 matmul peak")
        matmul = run_probe(replace(base, kind="matmul"), timeout_s)
        bar.update()
        results = [_probe(spec, base.size, base, bar, timeout_s) for spec in specs]
        by_key = {(r["label"], r["size"]): r for r in results}
        scaling = {s.label: _scaling(s, sides, base, by_key, bar, timeout_s) for s in scaling_specs}
        engine_rows = run_engine_probes(engine_specs, engines, base, timeout_s, bar, engine_batch)
        predict_rows = (
            run_predict_probes(predict_checkpoint, base, timeout_s, bar) if predict_checkpoint else []
        )
    return matmul, results, scaling, engine_rows, predict_rows


def _check_settings(
    models: Sequence[str], size: int, batch: int, threads: int, repeats: int, train_batch: int,
    max_memory_gb: float, time_budget_s: float, matmul_seconds: float, warmup: int,
    scaling_sizes: Sequence[int], device: str, engines: Sequence[str], engine_batch: int | None = None,
) -> None:  # fmt: skip
    """Every argument of `run_benchmark` checked up front, with a clear ValueError."""
    if engine_batch is not None:
        if isinstance(engine_batch, bool) or not isinstance(engine_batch, int) or engine_batch < 1:
            raise ValueError(f"--engine-batch must be an int >= 1, got {engine_batch!r}")
        if not engines:
            raise ValueError(
                "--engine-batch sets the engine table's batch: add --engines (or drop --engine-batch)"
            )
    bad = sorted(set(engines) - set(ENGINES))
    if bad:
        raise ValueError(f"unknown engine(s) {bad}; choose from {', '.join(ENGINES)}")
    if not models:
        raise ValueError("models must name at least one model spec")
    for name, value in dict(
        size=size, batch=batch, threads=threads, repeats=repeats, train_batch=train_batch
    ).items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if max_memory_gb <= 0 or time_budget_s <= 0 or matmul_seconds <= 0 or warmup < 0:
        raise ValueError("max_memory_gb, time_budget_s, matmul_seconds must be > 0 and warmup >= 0")
    if any(s < 16 for s in scaling_sizes):
        raise ValueError(f"scaling sizes must be >= 16, got {list(scaling_sizes)}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")


def _load_avg() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _add_peak_fraction(results: list[dict[str, Any]], peak: float | None) -> None:
    """Achieved GFLOP/s of every throughput measurement, and its fraction of the matmul peak."""
    for r in results:
        if r.get("flops") and r.get("throughput_img_s"):
            r["achieved_gflops_s"] = r["flops"] * r["throughput_img_s"] / 1e9
            if peak:
                r["peak_fraction"] = r["achieved_gflops_s"] / peak


def _meta(
    base: ProbeRequest,
    max_memory_gb: float,
    specs: list[ModelSpec],
    scaling_specs: list[ModelSpec],
    scaling_sizes: Sequence[int],
    device: str,
    matmul: dict[str, Any],
) -> dict[str, Any]:
    """The run's settings and machine facts, recorded in bench.json."""
    return {
        **{k: v for k, v in asdict(base).items() if k not in ("spec", "kind", "max_memory_mb")},
        "max_memory_gb": max_memory_gb,
        "models": [s.label for s in specs],
        "scaling_sizes": sorted(set(scaling_sizes)),
        "scaling_models": [s.label for s in scaling_specs],
        "scaling_reference": (224 if 224 in scaling_sizes else min(scaling_sizes)) if scaling_sizes else None,
        "device_name": _device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "matmul_peak_gflops": matmul.get("gflops"),
        "matmul_status": matmul.get("status"),
        "matmul_n": 2048,
        "memory_method": memory_method_text(device),
        "flops_note": "FLOPs = 2 x MACs, torch.utils.flop_counter, matmul/conv/attention only, batch 1",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
