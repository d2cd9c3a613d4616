"""The command-line face of ``emfformer bench``: its flags, and a run of :func:`run_benchmark` from them.

:mod:`emfformer.cli` adds these flags to its ``bench`` sub-command; the measurement itself lives in
:mod:`emfformer.bench.run`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

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

__all__ = ["add_arguments", "run_from_args"]


def _load_dice(path: Path | None) -> dict[str, float] | None:
    if path is None:
        return None
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or not all(isinstance(v, (int, float)) for v in data.values()):
        raise ValueError(f"{path}: expected a JSON object mapping model name -> Dice (number)")
    return {str(k): float(v) for k, v in data.items()}


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the flags of ``emfformer bench`` to ``parser``."""
    a = parser.add_argument
    a("--models", nargs="+", metavar="SPEC", help="model specs, e.g. emf_former_s emf_former_s:conv=plain "
      "(values: int/float/true/false/none/(a,b)/str); default: EMF-former T/S/B, S ablations, twin, baselines")  # fmt: skip
    a(
        "-o",
        "--out",
        "--output",
        dest="out",
        type=Path,
        default=Path("runs/bench"),
        help="output folder (default runs/bench)",
    )
    a("--size", type=int, help="input side of the model table in pixels (default 224)")
    a("--batch", type=int, help="throughput batch (default 16)")
    a("--train-batch", type=int, help="batch of the memory measurements (default 4)")
    a("--threads", type=int, help="CPU threads fixed in every child process (default 2)")
    a(
        "--max-memory-gb",
        type=float,
        help="memory budget in GiB above baseline; larger is 'did not fit' (default 8)",
    )
    a("--scaling-sizes", type=int, nargs="*", help="input sides for resolution scaling; none to skip "
      f"(default {' '.join(map(str, DEFAULT_SCALING_SIZES))})")  # fmt: skip
    a(
        "--scaling-models",
        nargs="+",
        metavar="SPEC",
        help=f"specs for the scaling (default {OURS} {OURS_RECOMPUTE} {TWIN} {TWIN_SDPA})",
    )
    a("--repeats", type=int, help="timed runs per timing loop, median reported (default 10)")
    a(
        "--time-budget-s",
        type=float,
        help="stop a timing loop after this many seconds, >= 3 runs (default 10)",
    )
    a("--device", default="cpu", help="cpu or cuda (default cpu)")
    a("--dice-json", type=Path, help="JSON object model name -> Dice, for the params/FLOPs/Dice bubble chart")
    a("--engines", nargs="*", metavar="ENGINE", help=f"time --engine-models under these inference engines "
      f"({', '.join(ENGINES)}; no value: all)")  # fmt: skip
    a("--engine-batch", type=int, help="throughput batch of the engine table (default: the batch predict "
      "runs at --size, 5 at 224^2)")  # fmt: skip
    a("--engine-models", nargs="+", metavar="SPEC", help=f"specs for the engine table (default {OURS} unet)")
    a(
        "--predict-checkpoint",
        metavar="C",
        help="time a whole-volume predict with this checkpoint (e.g. hippocampus)",
    )
    a("--quick", action="store_true", help="tiny settings for a smoke run (64^2, 2 repeats, scaling 64/128)")
    a("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run the benchmark from parsed :func:`add_arguments` flags; print the goals and output paths."""
    settings: dict[str, Any] = dict(QUICK) if args.quick else {}
    for key in ("size", "batch", "train_batch", "threads", "max_memory_gb", "repeats", "time_budget_s"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if args.scaling_sizes is not None:
        settings["scaling_sizes"] = tuple(args.scaling_sizes)
    if args.scaling_models is not None:
        settings["scaling_models"] = tuple(args.scaling_models)
    if args.engines is not None:
        settings["engines"] = tuple(args.engines) or ENGINES
    if args.engine_models is not None:
        settings["engine_models"] = tuple(args.engine_models)
    if args.engine_batch is not None:
        settings["engine_batch"] = args.engine_batch
    if args.predict_checkpoint:
        settings["predict_checkpoint"] = args.predict_checkpoint
    from . import run  # torch and matplotlib are loaded by a bench run only, not by `emfformer --help`

    report = run.run_benchmark(  # a ValueError becomes the CLI's one-line error (exit 2)
        args.models or DEFAULT_MODELS,
        args.out,
        device=args.device,
        dice=_load_dice(args.dice_json),
        progress=not args.no_progress,
        **settings,
    )
    for goal in report["goals"]:
        print(f"{goal['status']:>4}  {goal['text']} ({goal['detail']})")
    print(
        f"wrote {', '.join(str(args.out / f) for f in report['files'])} in {report['meta']['wall_s']:.0f} s"
    )
    return 0
