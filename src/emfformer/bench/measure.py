"""Measurement primitives of the benchmark: parameters, FLOPs, peak memory, timing, matmul peak.

Everything here runs in the calling process. :mod:`emfformer.bench.probe` calls these functions
inside a fresh child process per model (and per input size), so that allocator caches, peak counters
and thread pools never leak from one model into the next.

Peak memory, CPU (``method="vmhwm"``): the kernel's resident-set high-water mark. Before the step:
``gc.collect()``, glibc ``malloc_trim(0)`` (freed heap pages go back to the OS, so they cannot be
silently reused by the step), reset the high-water mark to the current RSS by writing ``5`` to
``/proc/self/clear_refs`` (Linux >= 4.0), baseline = ``VmRSS``. After the step: peak = ``VmHWM`` -
baseline, i.e. the extra resident memory the step needed on top of model weights and inputs (which
exist before the step). Where ``clear_refs`` is not writable the fallback (``method="sampled"``) polls
the RSS every millisecond from a thread (psutil) and may miss very short spikes.

Peak memory, CUDA (``method="cuda_max_allocated"``): ``torch.cuda.max_memory_allocated`` after
``reset_peak_memory_stats``, minus ``memory_allocated`` before the step (tensor memory only; the
caching allocator's reserve and the CUDA context are not counted).

Parameter and FLOP counts live with the models (:mod:`emfformer.models.stats`) and are re-exported here.
"""

from __future__ import annotations

import ctypes
import gc
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import torch

from ..models.stats import count_flops, count_params

__all__ = [
    "count_params",
    "count_flops",
    "measure_matmul_peak",
    "measure_peak_memory",
    "median",
    "rss_bytes",
    "release_freed_memory",
    "time_calls",
    "RssMonitor",
]

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_matmul_peak(seconds: float = 2.0, n: int = 2048, device: str | torch.device = "cpu") -> float:
    """Best fp32 matmul rate (GFLOP/s) of ``n x n`` products repeated for ``seconds``.

    Uses the thread count currently set in torch (the caller fixes it). The best iteration is taken as
    the machine's practical peak: other load can only slow an iteration down.
    """
    if seconds <= 0 or n < 16:
        raise ValueError(f"seconds must be > 0 and n >= 16, got {seconds}, {n}")
    dev = torch.device(device)
    a = torch.randn(n, n, device=dev)
    b = torch.randn(n, n, device=dev)
    out = torch.empty(n, n, device=dev)
    flops = 2.0 * n**3
    for _ in range(2):  # warm-up: thread pool, kernel selection
        torch.mm(a, b, out=out)
    _sync(dev)
    best = 0.0
    stop = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        _sync(dev)
        t1 = time.perf_counter()
        best = max(best, flops / (t1 - t0) / 1e9)
        if t1 >= stop:
            return best


def rss_bytes() -> int:
    """Resident set size of this process in bytes."""
    return psutil.Process().memory_info().rss


def release_freed_memory() -> None:
    """Collect garbage and return freed glibc heap pages to the OS (no-op off glibc)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _read_status_kib(key: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _reset_hwm() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS; False where unsupported."""
    try:
        _CLEAR_REFS.write_text("5")
        _read_status_kib("VmHWM")
    except (OSError, KeyError):
        return False
    return True


class RssMonitor:
    """Daemon thread that polls the process RSS every ``interval`` seconds, as a context manager.

    It records the highest RSS seen (``peak``: the fallback peak meter) and, with ``limit_bytes``, calls
    ``on_exceed(rss)`` once the RSS passes the limit and stops polling (the bench's guard: the caller
    records "did not fit" and ends the child process).
    """

    def __init__(
        self,
        interval: float = 0.001,
        limit_bytes: int | None = None,
        on_exceed: Callable[[int], None] | None = None,
    ) -> None:
        if limit_bytes is not None and (limit_bytes <= 0 or on_exceed is None):
            raise ValueError(f"limit_bytes must be > 0 and come with on_exceed, got {limit_bytes}")
        self.interval = interval
        self.limit_bytes = limit_bytes
        self.on_exceed = on_exceed
        self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        proc = psutil.Process()
        while not self._stop.is_set():
            rss = proc.memory_info().rss
            self.peak = max(self.peak, rss)
            if self.limit_bytes is not None and rss > self.limit_bytes:
                self.on_exceed(rss)  # type: ignore[misc]
                return
            time.sleep(self.interval)

    def __enter__(self) -> RssMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def measure_peak_memory(fn: Callable[[], Any], device: str | torch.device = "cpu") -> tuple[Any, int, str]:
    """Run ``fn()`` and measure the extra memory it needed at its peak.

    Args:
        fn: the step to measure (e.g. a forward pass or a training step).
        device: ``"cpu"`` (process RSS) or a CUDA device (allocated tensor memory).

    Returns:
        ``(fn's return value, peak bytes above the baseline before the call, method name)``; the
        method is ``"vmhwm"``, ``"sampled"`` or ``"cuda_max_allocated"`` (see the module docstring).
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        gc.collect()
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        out = fn()
        torch.cuda.synchronize(dev)
        return out, max(0, torch.cuda.max_memory_allocated(dev) - base), "cuda_max_allocated"
    release_freed_memory()
    if _reset_hwm():
        base = _read_status_kib("VmRSS") * 1024
        out = fn()
        return out, max(0, _read_status_kib("VmHWM") * 1024 - base), "vmhwm"
    base = rss_bytes()
    with RssMonitor() as sampler:
        out = fn()
    return out, max(0, sampler.peak - base), "sampled"


def time_calls(
    fn: Callable[[], Any],
    warmup: int,
    repeats: int,
    device: str | torch.device = "cpu",
    time_budget_s: float | None = None,
    min_repeats: int = 3,
) -> list[float]:
    """Seconds of each timed call of ``fn`` after ``warmup`` untimed calls.

    Stops early once ``time_budget_s`` of timed calls have passed, but only after
    ``min(min_repeats, repeats)`` calls. CUDA work is synchronised around each call.
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"warmup must be >= 0 and repeats >= 1, got {warmup}, {repeats}")
    dev = torch.device(device)
    for _ in range(warmup):
        fn()
    _sync(dev)
    times: list[float] = []
    spent = 0.0
    while len(times) < repeats:
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        times.append(time.perf_counter() - t0)
        spent += times[-1]
        if time_budget_s is not None and spent >= time_budget_s and len(times) >= min(min_repeats, repeats):
            break
    return times


def median(values: list[float]) -> float:
    """Median of a non-empty list."""
    return float(statistics.median(values))
