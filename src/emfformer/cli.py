"""The ``emfformer`` command: thin parsers that validate and call the importable engine functions.

emfformer plan      DATA [-o plans.json] [--model emf_former_s] [--set data.memory_budget_mib=2048]
emfformer train     --config configs/hippocampus.yaml [--data DIR] [-o RUN] [--set optim.lr=1e-3 ...]
emfformer evaluate  [--checkpoint RUN/best.pt ...] [--part test] [--tta] | --pred DIR --labels DIR [-o DIR]
emfformer predict   -i FILE_OR_DIR -o DIR [--checkpoint RUN/best.pt ...] [--overlays] [--tta]
emfformer export    [--checkpoint C] --format onnx|torchscript|monai-bundle -o FILE|DIR
emfformer pack      RUN_A/best.pt RUN_B/best.pt ... -o ensemble.pt [--tta]
emfformer report    RUN_DIR... -o report.html
emfformer download  hippocampus|acdc [-o DIR]
emfformer bench     [--models ...] [-o DIR] [--quick]
emfformer models

Every command takes -o/--out for what it writes; the parsers and their conventions: cli_parsers.py.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import __version__
from .data.cases import DataError

__all__ = ["main", "build_parser"]

log = logging.getLogger("emfformer")


def _train(args: argparse.Namespace) -> int:
    from .engine.config import load_config, parse_overrides
    from .engine.distributed import from_env
    from .engine.train import run_training

    overrides: dict[str, object] = {}
    for flag, key in (
        ("data", "data.data_dir"),
        ("model", "model.name"),
        ("epochs", "optim.epochs"),
        ("out", "out_dir"),
        ("fold", "data.fold"),
        ("seed", "seed"),
        ("device", "device"),
        ("threads", "threads"),
    ):
        value = getattr(args, flag)
        if value is not None:
            overrides[key] = value  # typed by argparse, not re-parsed: --out 2024 stays a folder name
    overrides.update(parse_overrides(args.set or []))  # --set wins over flags (README)
    if args.resume:
        if args.out is None:
            raise ValueError("--resume needs --out RUN_DIR (the run folder holding last.pt)")
        if args.config:
            raise ValueError("--resume takes the config from RUN_DIR/last.pt; do not pass --config")
        cfg = load_config(None, {"out_dir": args.out})
        overrides.pop("out_dir")
        run_dir = run_training(cfg, resume=True, resume_overrides=overrides)
    else:
        run_dir = run_training(load_config(args.config, overrides))
    if not from_env().is_main:  # under torchrun: one summary line, from rank 0
        return 0
    # list what this run wrote: ACDC runs have no splits.json (their split ships with the package)
    written = sorted(p.name for p in Path(run_dir).glob("[!.]*"))
    print(f"Run folder: {run_dir}" + (f" ({', '.join(written)})" if written else ""))
    return 0


def _plan(args: argparse.Namespace) -> int:
    from .engine.planning import run_plan

    plan, path = run_plan(
        args.data, args.out, args.model, args.set or [], args.config, overwrite=args.overwrite
    )
    print(f"Wrote {path}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    if (args.pred is None) != (args.labels is None):
        raise ValueError(
            "--pred and --labels go together: a folder of predictions and one of reference labels"
        )
    if args.pred is not None:
        from .engine.score import score_folders

        if args.checkpoint:
            raise ValueError("--pred scores existing predictions: drop --checkpoint")
        s = score_folders(
            args.pred, args.labels, args.out or Path(args.pred) / "evaluation", args.dataset_json,
            overwrite=args.overwrite,
        )  # fmt: skip
    else:
        s = _evaluate_checkpoint(args)
    print(
        f"fg Dice {100 * s['mean_dice_fg']:.2f} %, fg mIoU {100 * s['miou_fg']:.2f} %, HD95 {s['hd95_fg_mm']:.2f} mm"
    )
    print(f"Report: {s['out_dir']}/summary.md")
    return 0


def _evaluate_checkpoint(args: argparse.Namespace) -> dict[str, Any]:
    from .engine.evaluate import run_evaluation

    return run_evaluation(
        args.checkpoint, args.part, args.data, args.out, args.splits, args.max_cases, args.device, args.bf16,
        tta=args.tta, overwrite=args.overwrite,
    )  # fmt: skip


def _predict(args: argparse.Namespace) -> int:
    from .engine.predict import run_prediction

    if args.onnx and args.checkpoint:
        raise ValueError("give either --checkpoint or --onnx, not both")
    written = run_prediction(
        args.input, args.out, args.checkpoint, args.overlays, args.device, args.bf16, tta=args.tta,
        exported=args.onnx, engine=args.engine, fast=args.fast, save_probabilities=args.save_probabilities,
        overwrite=args.overwrite, window=args.window,
    )  # fmt: skip
    print(f"Wrote {len(written)} label file(s) to {args.out}")
    return 0


def _pack(args: argparse.Namespace) -> int:
    from .engine.checkpoint import pack_ensemble

    path = pack_ensemble(args.checkpoints, args.out, tta=args.tta, overwrite=args.overwrite)
    print(f"Wrote {path} ({len(args.checkpoints)} checkpoint(s), tta={'on' if args.tta else 'off'})")
    return 0


def _export(args: argparse.Namespace) -> int:
    if args.format == "monai-bundle":
        from .engine.bundle import export_bundle

        out = export_bundle(args.checkpoint, args.out)  # refuses an existing folder by itself
        print(f"Wrote MONAI bundle {out}; run it with: python -m monai.bundle run --config_file "
              f"{out}/configs/inference.json --bundle_root {out} --dataset_dir SCANS --output_dir LABELS")  # fmt: skip
        return 0
    from .engine.export import export_checkpoint

    meta = export_checkpoint(args.checkpoint, args.format, args.out, overwrite=args.overwrite)
    diffs = ", ".join(
        f"{m['file']} (max |logit diff| {m['max_abs_logit_diff']:.1e})" for m in meta["members"]
    )
    print(f"Wrote {diffs} and {args.out}.json")
    return 0


def _report(args: argparse.Namespace) -> int:
    from .engine.html_report import write_html_report

    path = write_html_report(
        args.runs,
        args.out,
        data_dir=args.data,
        overlays=not args.no_overlays,
        overwrite=args.overwrite,
        device=args.device,
    )
    print(f"Wrote {path}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from .data.download import download_dataset
    from .data.locate import default_cache_dir

    path = download_dataset(args.dataset, args.out or default_cache_dir(), url=args.url, md5=args.md5)
    print(f"Dataset ready: {path}  (use --data {path} or set EMFFORMER_DATA={path})")
    return 0


def _models(args: argparse.Namespace) -> int:
    from .models import create_model, list_models
    from .models.stats import count_params

    for name in list_models():
        n = count_params(create_model(name))
        print(f"{name:22s} {n / 1e6:8.3f} M params")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .bench.args import run_from_args

    return run_from_args(args)


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": _train, "plan": _plan, "evaluate": _evaluate, "predict": _predict, "export": _export,
    "pack": _pack, "report": _report, "download": _download, "bench": _bench, "models": _models,
}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The ``emfformer`` argument parser (the builders live in cli_parsers.py)."""
    from .cli_parsers import build_parser as build

    return build(HANDLERS, __version__)


def _set_threads(args: argparse.Namespace) -> None:
    """--threads for the commands that compute here (train takes it via its config, bench per child)."""
    threads = getattr(args, "threads", None)
    if args.command in ("train", "bench") or threads is None:
        return
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``emfformer`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    try:
        _set_threads(args)
        return args._handler(args)
    except (DataError, ValueError, KeyError, OSError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"emfformer {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:
        print(
            f"emfformer {args.command}: internal error: this is a bug, please report it with the traceback below",
            file=sys.stderr,
        )
        raise


if __name__ == "__main__":
    sys.exit(main())
