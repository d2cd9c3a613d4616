"""Inference engines side by side, and the latency of one whole-volume prediction.

Each (model, engine) pair is timed in its own child process (:mod:`emfformer.bench.probe`,
``kind="engine"``) at the bench's input side, by default with the batch ``predict`` itself runs at that
side (`emfformer.engine.inference.slices_per_pass`: 5 images at 224 x 224), so that the table times
what a user's prediction does (``--engine-batch`` sets another):

* ``eager``: the network as trained (BatchNorm separate), eval mode;
* ``fused``: the inference folds of :mod:`emfformer.models.fuse` (BatchNorm into the convs, layer
  scales into the linear maps, the channel shuffle into a dense conv), what ``predict`` / ``evaluate`` run;
* ``channels_last``: fused, with NHWC weights and inputs;
* ``compile``: fused, ``torch.compile`` (inductor; the compile time is reported, not timed);
* ``onnxruntime``: fused, exported to ONNX and run by onnxruntime with the same thread count;
* ``onnxruntime_int8``: that ONNX file with static int8 quantisation (onnxruntime's QDQ format,
  per-tensor scales calibrated on 8 standard-normal inputs: a speed measurement, not an accuracy one);
* ``bf16``: fused, channels_last, under ``torch.autocast`` in bfloat16 (fast on CPUs with AVX512-BF16 /
  AMX; the logits come back in float32). ``predict --bf16`` runs the same autocast, without channels_last.

``kind="predict"`` times `emfformer.engine.inference.predict_volume` on one Hippocampus-sized volume
(36 x 50 x 35 voxels, 1 mm) with a checkpoint's members, after one warm-up call: the cost of a
``predict`` call once the model is loaded.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..models.fuse import fuse_for_inference
from .defaults import ENGINES
from .measure import count_flops, median, time_calls

__all__ = ["ENGINES", "engine_batch", "prepare_engine", "probe_engine", "probe_predict", "PREDICT_SHAPE"]

PREDICT_SHAPE = (36, 50, 35)  # a typical MSD Hippocampus crop


def prepare_engine(model: nn.Module, engine: str, example: torch.Tensor, threads: int) -> Callable:
    """``run(x) -> logits`` for ``model`` under ``engine`` (see the module docstring)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    model = model.eval() if engine == "eager" else fuse_for_inference(model)
    if engine == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        return lambda x: model(x.contiguous(memory_format=torch.channels_last))
    if engine == "compile":
        compiled = torch.compile(model, dynamic=False)
        return lambda x: compiled(x)
    if engine == "bf16":
        model = model.to(memory_format=torch.channels_last)
        device_type = example.device.type

        def run_bf16(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast(device_type, dtype=torch.bfloat16):
                return model(x.contiguous(memory_format=torch.channels_last)).float()

        return run_bf16
    if engine in ("onnxruntime", "onnxruntime_int8"):
        return _onnx_runner(model, example, threads, int8=engine == "onnxruntime_int8")
    return model


def _onnx_runner(model: nn.Module, example: torch.Tensor, threads: int, int8: bool = False) -> Callable:
    import onnxruntime as ort

    from ..engine.export import _write_onnx, quantize_onnx_int8  # what `emfformer export` uses

    path = Path(tempfile.mkdtemp()) / "model.onnx"
    _write_onnx(model, example[:1], path)
    if int8:  # calibrated on 8 standard-normal inputs: a speed figure, not an accuracy one
        rng = np.random.default_rng(0)
        path = quantize_onnx_int8(
            path, (rng.standard_normal((1, *example.shape[1:]), dtype=np.float32) for _ in range(8))
        )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.numpy()})[0]


def probe_engine(req: Any, model: nn.Module, res: dict[str, Any]) -> None:
    """Throughput (batch ``req.batch``) and batch-1 latency of ``model`` under ``req.engine``."""
    side, c = req.size, req.in_channels
    xb, x1 = torch.randn(req.batch, c, side, side), torch.randn(1, c, side, side)
    res["flops"] = count_flops(model.eval(), (1, c, side, side), "cpu")
    with torch.inference_mode():
        reference = model.eval()(x1)
        run = prepare_engine(model, req.engine, xb, req.threads)
        t0 = time.perf_counter()
        out = run(x1)  # first call: compile / session warm-up
        res["first_call_s"] = time.perf_counter() - t0
        res["max_abs_diff"] = float((torch.as_tensor(out) - reference).abs().max())
        times = time_calls(lambda: run(x1), req.warmup, req.repeats, "cpu", req.time_budget_s)
        res.update(latency_ms=median(times) * 1e3, latency_runs=len(times))
        run(xb)  # a new shape: compiled / ONNX paths specialise once more
        times = time_calls(lambda: run(xb), 1, req.repeats, "cpu", req.time_budget_s)
        res.update(throughput_img_s=req.batch / median(times), throughput_runs=len(times))
        res["throughput_img_s_best"] = req.batch / min(times)  # noise on a shared CPU only slows runs down


def probe_predict(req: Any, res: dict[str, Any]) -> None:
    """Seconds per `predict_volume` call on a Hippocampus-sized volume with ``req.spec``'s members.

    ``req.spec`` is a checkpoint (path or shipped name); ``req.engine`` is ``"tta"`` or ``"no_tta"``;
    ``req.batch`` > 0 keeps only that many members (e.g. 1: one slice axis).
    """
    from ..engine.checkpoint import load_members
    from ..engine.inference import predict_volume

    members, _, _, _ = load_members(req.spec or None)
    if req.batch > 0:
        members = members[: req.batch]
    rng = np.random.default_rng(req.seed)
    image = rng.normal(100, 20, PREDICT_SHAPE).astype(np.float32)
    tta = req.engine == "tta"
    with torch.inference_mode():
        predict_volume(members, image, tta=tta, affine=np.eye(4))  # warm-up
        times = time_calls(
            lambda: predict_volume(members, image, tta=tta, affine=np.eye(4)),
            0, req.repeats, "cpu", req.time_budget_s,
        )  # fmt: skip
    res.update(members=len(members), tta=tta, predict_s=median(times), predict_runs=len(times))


# -- parent side: one child per (model, engine) and per predict setting; table and goals ---------------

_KEEP = ("status", "reason", "flops", "latency_ms", "throughput_img_s", "throughput_img_s_best", "first_call_s", "max_abs_diff",
         "members", "tta", "predict_s")  # fmt: skip
PREDICT_SETTINGS = ((1, "no_tta"), (1, "tta"), (0, "no_tta"), (0, "tta"))  # (members, 0 = all; TTA)


def run_engine_probes(
    specs: list, engines: tuple[str, ...], base: Any, timeout_s: float, bar: Any, batch: int | None = None
) -> list[dict]:
    """Throughput (at ``batch``; None: predict's batch at the bench side) and latency of every spec under
    every engine, each in a fresh child process."""
    from dataclasses import replace

    from ..engine.inference import slices_per_pass
    from .probe import run_probe

    batch = batch or slices_per_pass(base.size, base.size)
    rows = []
    for spec in specs:
        for engine in engines:
            bar.set_postfix_str(f"{spec.label} / {engine}")
            req = replace(base, kind="engine", spec=spec.label, engine=engine, batch=batch)
            res = run_probe(req, timeout_s)
            rows.append(
                {
                    "label": spec.label,
                    "engine": engine,
                    "batch": batch,
                    **{k: res[k] for k in _KEEP if k in res},
                }
            )
            bar.update()
    return rows


def run_predict_probes(checkpoint: str, base: Any, timeout_s: float, bar: Any) -> list[dict]:
    """Seconds per whole-volume predict for 1 member / all members, without / with mirror TTA."""
    from dataclasses import replace

    from .probe import run_probe

    rows = []
    for members, tta in PREDICT_SETTINGS:
        bar.set_postfix_str(f"predict {checkpoint} ({members or 'all'} member(s), {tta})")
        req = replace(
            base, kind="predict", spec=checkpoint, engine=tta, batch=members, repeats=max(base.repeats, 5)
        )
        rows.append(
            {"checkpoint": checkpoint, **{k: v for k, v in run_probe(req, timeout_s).items() if k in _KEEP}}
        )
        bar.update()
    return rows


def engine_batch(report: dict[str, Any]) -> int | None:
    """The batch the engine table was timed at (reports before it was recorded: the bench's batch)."""
    rows = report.get("engines") or []
    return rows[0].get("batch", report["meta"].get("batch")) if rows else None


def engine_markdown(report: dict[str, Any]) -> list[str]:
    """The engine and predict tables of bench.md (empty when they were not measured)."""
    from ..engine.inference import slices_per_pass

    meta, peak = report["meta"], report["meta"].get("matmul_peak_gflops")
    lines: list[str] = []
    if report.get("engines"):
        batch = engine_batch(report)
        lines += ["", f"## Inference engines at {meta['size']}x{meta['size']}", "",
                  f"Throughput at batch {batch}, the batch `predict` runs at this side (64 x 64 x 64 pixels per pass)."
                  if batch == slices_per_pass(meta["size"], meta["size"]) else f"Throughput at batch {batch} (`--engine-batch`).",
                  "", f"| Model | Engine | Throughput b{batch} (img/s) | best run | vs eager | Latency b1 (ms) | % of peak "
                  "| First call (s) | max abs logit diff vs eager | Status |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
        for r in report["engines"]:
            eager = next(
                (e for e in report["engines"] if e["label"] == r["label"] and e["engine"] == "eager"), {}
            )
            tp, flops = r.get("throughput_img_s"), r.get("flops")
            gain = tp / eager["throughput_img_s"] if tp and eager.get("throughput_img_s") else None
            frac = 100 * flops * tp / 1e9 / peak if tp and flops and peak else None
            lines.append(f"| {r['label']} | {r['engine']} | {_fmt(tp)} | {_fmt(r.get('throughput_img_s_best'))} "
                         f"| {_fmt(gain, '.2f')} | {_fmt(r.get('latency_ms'))} "
                         f"| {_fmt(frac)} | {_fmt(r.get('first_call_s'), '.2f')} | {_fmt(r.get('max_abs_diff'), '.1e')} "
                         f"| {r.get('status')}{': ' + r['reason'] if r.get('reason') else ''} |")  # fmt: skip
    if report.get("predict"):
        lines += ["", f"## Whole-volume predict ({'x'.join(map(str, PREDICT_SHAPE))} voxels, after one warm-up call)",
                  "", "| Checkpoint | Members | TTA | Seconds per volume | Status |", "|---|---:|---|---:|---|"]  # fmt: skip
        for r in report["predict"]:
            lines.append(f"| {r['checkpoint']} | {r.get('members', '-')} | {'on' if r.get('tta') else 'off'} "
                         f"| {_fmt(r.get('predict_s'), '.3f')} | {r.get('status')} |")  # fmt: skip
    return lines


def _fmt(value: Any, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)
