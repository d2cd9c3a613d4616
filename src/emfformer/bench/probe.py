"""One benchmark measurement in a fresh child process: model spec parsing, the child, its launcher.

The parent calls :func:`run_probe`, which starts ``python -m emfformer.bench.probe --request
JSON --result FILE``. The child fixes the thread count, builds the model, then in this order measures
peak inference memory (after a warm-up forward of the same shape), peak memory of one training step
(forward + backward + AdamW step, optimizer state created in that step; after a batch-1 forward +
backward warm-up so one-time autograd/kernel setup is not counted), FLOPs of one forward at batch 1, batch-1 latency and batch-N throughput.
It rewrites its result file after each phase, so a child that is stopped for memory still reports what
it measured. Outcomes (``status``): ``ok``; ``did_not_fit`` (memory budget exceeded, allocation failed
or killed by the OS, e.g. the OOM killer); ``error``; ``timeout``.

Model specs: ``name`` or ``name:key=value,key=value`` with values parsed as bool (true/false), None,
int, float, tuple (``(2,3)``) or str, e.g. ``emf_former_s:shuffle=false,conv=plain``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.config import parse_value as parse_config_value
from ..io import atomic_write_json
from ..models import build_model, input_problem, list_models
from .measure import (
    RssMonitor,
    count_flops,
    count_params,
    measure_matmul_peak,
    measure_peak_memory,
    median,
    rss_bytes,
    time_calls,
)

__all__ = ["ModelSpec", "parse_spec", "parse_value", "ProbeRequest", "run_probe", "size_problem", "main"]

MIB = 2**20
EXIT_OVER_BUDGET = 3  # the child's exit code when its memory guard fired


def _split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split at ``sep`` outside brackets: ``"a=1,b=(2,3)"`` -> ``["a=1", "b=(2,3)"]``."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced brackets in {text!r}")
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise ValueError(f"unbalanced brackets in {text!r}")
    parts.append(text[start:])
    return parts


def parse_value(text: str) -> Any:
    """An override value, parsed like ``--set`` values (:func:`emfformer.engine.config.parse_value`);
    lists become tuples, as the model constructors take them.

    Raises:
        ValueError: empty or unparsable value.
    """
    if not text.strip():
        raise ValueError("empty override value")
    value = parse_config_value(text)
    return tuple(value) if isinstance(value, list) else value


def _format_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, tuple):
        return "(" + ",".join(_format_value(v) for v in value) + ")"
    return str(value)


@dataclass
class ModelSpec:
    """A registered model name plus constructor overrides (an ablation), e.g. ``attention="mhsa"``."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Canonical text form, e.g. ``emf_former_s:shuffle=false,conv=plain``."""
        if not self.overrides:
            return self.name
        return self.name + ":" + ",".join(f"{k}={_format_value(v)}" for k, v in self.overrides.items())

    def build(self, size: int, in_channels: int = 1, num_classes: int = 4) -> nn.Module:
        """Build the model for square inputs of side ``size`` (UNETR gets ``img_size=size``)."""
        return build_model(self.name, size, in_channels, num_classes, **self.overrides)


def parse_spec(text: str) -> ModelSpec:
    """Parse ``name`` or ``name:key=value,...`` (see the module docstring).

    Raises:
        ValueError: unknown model name (the message lists the valid ones), malformed or repeated key.
    """
    name, _, rest = text.strip().partition(":")
    name = name.strip()
    if name not in list_models():
        raise ValueError(f"unknown model {name!r} in spec {text!r}; valid names: {', '.join(list_models())}")
    overrides: dict[str, Any] = {}
    for item in _split_top_level(rest) if rest.strip() else []:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise ValueError(f"override {item!r} in spec {text!r} must look like key=value")
        if key in overrides:
            raise ValueError(f"override {key!r} repeated in spec {text!r}")
        overrides[key] = parse_value(value)
    return ModelSpec(name, overrides)


def size_problem(spec: ModelSpec, size: int) -> str | None:
    """Why ``spec`` cannot take ``size x size`` inputs, or None when it can (the registry's rule)."""
    return input_problem(spec.name, size, spec.overrides.get("img_size"))


@dataclass
class ProbeRequest:
    """What one child measures. Serialised as JSON onto the child's command line."""

    spec: str = ""  # model spec (see parse_spec); unused for kind="matmul"
    kind: str = "model"  # "model" | "matmul" (fp32 peak) | "engine" | "predict" (bench/engines.py)
    engine: str = "eager"  # kind="engine": an inference engine; kind="predict": "tta" or "no_tta"
    size: int = 224  # input side, square images
    batch: int = 16  # throughput batch; 0 skips the throughput measurement
    train_batch: int = 4  # batch of both memory measurements (inference and training step)
    repeats: int = 10  # timed iterations per timing loop (median reported)
    warmup: int = 2  # untimed iterations before the batch-1 latency loop (1 before throughput)
    threads: int = 2  # torch.set_num_threads in the child (and OMP/MKL_NUM_THREADS)
    device: str = "cpu"
    max_memory_mb: float = 8192.0  # memory budget above the baseline; exceeding it -> did_not_fit
    time_budget_s: float = 10.0  # a timing loop stops after this many seconds (after >= 3 runs)
    matmul_seconds: float = 2.0  # duration of the matmul peak loop (kind="matmul")
    in_channels: int = 1
    num_classes: int = 4
    seed: int = 0


def _is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or any(
        s in text for s in ("can't allocate memory", "out of memory", "not enough memory")
    )


def _probe_model(req: ProbeRequest, res: dict[str, Any], write: Callable[[dict[str, Any]], None]) -> None:
    """The child's measurements for one model, written into ``res`` (flushed after each phase)."""
    dev = torch.device(req.device)
    spec = parse_spec(req.spec)
    res["label"] = spec.label
    torch.manual_seed(req.seed)
    model = spec.build(req.size, req.in_channels, req.num_classes).to(dev)
    res["params"] = count_params(model)
    side, c = req.size, req.in_channels
    x = torch.randn(req.train_batch, c, side, side, device=dev)
    y = torch.randint(0, req.num_classes, (req.train_batch, side, side), device=dev)
    res["baseline_rss_mib"] = rss_bytes() / MIB
    budget = int(req.max_memory_mb * MIB)

    def over_budget(rss: int) -> None:
        over = (rss - res["baseline_rss_mib"] * MIB) / MIB
        write({**res, "status": "did_not_fit", "reason": f"{over:.0f} MiB above baseline > budget"})
        os._exit(EXIT_OVER_BUDGET)

    def infer(inp: torch.Tensor) -> None:
        with torch.inference_mode():
            model(inp)

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    guard = RssMonitor(0.005, rss_bytes() + budget, over_budget) if dev.type == "cpu" else None
    with guard if guard is not None else nullcontext():
        model.eval()
        infer(x)  # warm-up at the measured shape: one-time kernel/thread-pool setup is not counted
        _, peak, res["mem_method"] = measure_peak_memory(lambda: infer(x), dev)
        res["mem_infer_mib"] = peak / MIB
        write(res)
        model.train()
        F.cross_entropy(model(x[:1]), y[:1]).backward()  # warm-up: autograd threads, backward kernels
        model.zero_grad(set_to_none=True)
        _, peak, _ = measure_peak_memory(train_step, dev)
        res["mem_train_mib"] = peak / MIB
        write(res)
        if peak > budget:  # CUDA: allocations are not guarded while they happen
            res.update(status="did_not_fit", reason=f"{peak / MIB:.0f} MiB > budget")
            return
        # the step time of that training step (recomputation's price): median of up to 3 more steps
        times = time_calls(train_step, 0, min(req.repeats, 3), dev, req.time_budget_s)
        res["train_step_ms"] = median(times) * 1e3
        write(res)
        optimizer.state.clear()  # AdamW state and gradients are not needed for inference timing
        model.zero_grad(set_to_none=True)
        model.eval()
        res["flops"] = count_flops(model, (1, c, side, side), dev)
        write(res)
        _time_inference(req, infer, dev, res, write)
    res["status"] = "ok"


def _time_inference(
    req: ProbeRequest, infer: Callable[[torch.Tensor], None], dev: torch.device, res: dict[str, Any],
    write: Callable[[dict[str, Any]], None],
) -> None:  # fmt: skip
    """Batch-1 latency (median and best run) and, when ``req.batch`` > 0, throughput at that batch."""
    c, side = req.in_channels, req.size
    x1 = torch.randn(1, c, side, side, device=dev)
    times = time_calls(lambda: infer(x1), req.warmup, req.repeats, dev, req.time_budget_s)
    res.update(latency_ms=median(times) * 1e3, latency_ms_min=min(times) * 1e3, latency_runs=len(times))
    write(res)
    if req.batch > 0:
        xb = torch.randn(req.batch, c, side, side, device=dev)
        times = time_calls(lambda: infer(xb), 1, req.repeats, dev, req.time_budget_s)
        res.update(throughput_img_s=req.batch / median(times), throughput_runs=len(times))
        res["throughput_img_s_best"] = req.batch / min(times)


def main(argv: list[str] | None = None) -> int:
    """Child entry point: ``python -m emfformer.bench.probe --request JSON --result FILE``."""
    parser = argparse.ArgumentParser(description="One benchmark measurement (run by emfformer bench).")
    parser.add_argument("--request", required=True, help="ProbeRequest fields as a JSON object")
    parser.add_argument("--result", required=True, type=Path, help="where to write the result JSON")
    args = parser.parse_args(argv)
    req = ProbeRequest(**json.loads(args.request))
    torch.set_num_threads(req.threads)
    res: dict[str, Any] = {**asdict(req), "status": "running", "reason": None}
    res["threads_used"] = torch.get_num_threads()

    def write(r: dict[str, Any]) -> None:
        atomic_write_json(args.result, r)

    write(res)
    try:
        if req.kind == "matmul":
            res["gflops"] = measure_matmul_peak(req.matmul_seconds, device=req.device)
            res["status"] = "ok"
        elif req.kind == "model":
            _probe_model(req, res, write)
        elif req.kind == "engine":
            from .engines import probe_engine

            torch.manual_seed(req.seed)
            probe_engine(req, parse_spec(req.spec).build(req.size, req.in_channels, req.num_classes), res)
            res["status"] = "ok"
        elif req.kind == "predict":
            from .engines import probe_predict

            probe_predict(req, res)
            res["status"] = "ok"
        else:
            raise ValueError(f"kind must be 'model', 'matmul', 'engine' or 'predict', got {req.kind!r}")
    except Exception as exc:  # reported to the parent through the result file
        oom = _is_oom(exc)
        res.update(status="did_not_fit" if oom else "error", reason=f"{type(exc).__name__}: {exc}"[:500])
    write(res)
    return 0 if res["status"] in ("ok", "did_not_fit") else 1


def _child_env(threads: int) -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[2])  # make the package importable without installing
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    return env


def run_probe(req: ProbeRequest, timeout_s: float = 1800.0) -> dict[str, Any]:
    """Run ``req`` in a fresh child process and return its result dict (always has ``status``).

    A child stopped by its memory guard or killed by a signal (the OOM killer) is ``did_not_fit``;
    one that outlives ``timeout_s`` is killed and reported as ``timeout``.
    """
    with tempfile.TemporaryDirectory(prefix="emf-bench-") as tmp:
        result_path = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "emfformer.bench.probe"]
        cmd += ["--request", json.dumps(asdict(req)), "--result", str(result_path)]
        try:
            proc = subprocess.run(
                cmd, env=_child_env(req.threads), capture_output=True, text=True, timeout=timeout_s
            )
            rc, stderr = proc.returncode, proc.stderr
        except subprocess.TimeoutExpired:
            rc, stderr = None, ""
        res = json.loads(result_path.read_text()) if result_path.exists() else asdict(req)
    if rc is None:
        res.update(status="timeout", reason=f"killed after {timeout_s:.0f} s")
    elif rc == EXIT_OVER_BUDGET:
        res.update(status="did_not_fit", reason=res.get("reason") or "memory budget exceeded")
    elif rc < 0:
        res.update(status="did_not_fit", reason=f"killed by signal {-rc} (likely out of memory)")
    elif res.get("status") not in ("ok", "did_not_fit", "error"):
        tail = stderr.strip().splitlines()[-3:]
        res.update(status="error", reason=f"child exited with {rc}: {' | '.join(tail)}"[:500])
    return res


if __name__ == "__main__":
    sys.exit(main())
