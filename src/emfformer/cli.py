"""The ``emfformer`` command: thin parsers that validate and call the importable engine functions.

emfformer plan      DATA [-o plans.json] [--model emf_former_s] [--set data.memory_budget_mib=2048]
emfformer train     --config configs/hippocampus.yaml [--data DIR] [--set optim.lr=1e-3 ...]
emfformer evaluate  [--checkpoint RUN/best.pt ...] [--part test] [--tta] | --pred DIR --labels DIR
emfformer predict   -i FILE_OR_DIR -o DIR [--checkpoint RUN/best.pt ...] [--overlays] [--tta]
emfformer export    [--checkpoint C] --format onnx|torchscript|monai-bundle -o FILE|DIR
emfformer pack      RUN_A/best.pt RUN_B/best.pt ... -o ensemble.pt [--tta]
emfformer report    RUN_DIR... -o report.html
emfformer download  hippocampus|acdc --to DIR
emfformer bench     [--models ...] [--out DIR]
emfformer models
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
        args.data, args.output, args.model, args.set or [], args.config, overwrite=args.overwrite
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
        args.input, args.output, args.checkpoint, args.overlays, args.device, args.bf16, tta=args.tta,
        exported=args.onnx, engine=args.engine, fast=args.fast, save_probabilities=args.save_probabilities,
        overwrite=args.overwrite, window=args.window,
    )  # fmt: skip
    print(f"Wrote {len(written)} label file(s) to {args.output}")
    return 0


def _pack(args: argparse.Namespace) -> int:
    from .engine.checkpoint import pack_ensemble

    path = pack_ensemble(args.checkpoints, args.output, tta=args.tta, overwrite=args.overwrite)
    print(f"Wrote {path} ({len(args.checkpoints)} checkpoint(s), tta={'on' if args.tta else 'off'})")
    return 0


def _add_runtime_args(p: argparse.ArgumentParser) -> None:
    """Where and how inference runs: device, CPU threads, bf16."""
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; 1 beside another job)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast")


def _add_overwrite_arg(p: argparse.ArgumentParser) -> None:
    """--overwrite: replace an existing output that this command did not write (an input: never)."""
    p.add_argument(
        "--overwrite", action="store_true",
        help="replace existing output files that emfformer did not write (never one of the inputs)",
    )  # fmt: skip


def _add_checkpoint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint",
        nargs="+",
        default=None,
        help="best.pt of a run, a file from `emfformer pack`, or a shipped name (default: hippocampus); "
        "several are fused by averaging their probabilities",
    )
    p.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mirror test-time augmentation (default: as the checkpoint recommends)",
    )


def _export(args: argparse.Namespace) -> int:
    if args.format == "monai-bundle":
        from .engine.bundle import export_bundle

        out = export_bundle(args.checkpoint, args.output)  # refuses an existing folder by itself
        print(f"Wrote MONAI bundle {out}; run it with: python -m monai.bundle run --config_file "
              f"{out}/configs/inference.json --bundle_root {out} --dataset_dir SCANS --output_dir LABELS")  # fmt: skip
        return 0
    from .engine.export import export_checkpoint

    meta = export_checkpoint(args.checkpoint, args.format, args.output, overwrite=args.overwrite)
    diffs = ", ".join(
        f"{m['file']} (max |logit diff| {m['max_abs_logit_diff']:.1e})" for m in meta["members"]
    )
    print(f"Wrote {diffs} and {args.output}.json")
    return 0


def _report(args: argparse.Namespace) -> int:
    from .engine.html_report import write_html_report

    path = write_html_report(
        args.runs, args.output, data_dir=args.data, overlays=not args.no_overlays, overwrite=args.overwrite
    )
    print(f"Wrote {path}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from .data.download import download_dataset
    from .data.locate import default_cache_dir

    path = download_dataset(args.dataset, args.to or default_cache_dir(), url=args.url, md5=args.md5)
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


def _add_train_parser(sub: Any, commands: dict[str, Callable[[argparse.Namespace], int]]) -> None:
    p = sub.add_parser("train", help="train a model (YAML config < flags < --set)")
    p.add_argument("--config", help="YAML config, e.g. configs/hippocampus.yaml")
    p.add_argument("--data", help="dataset folder (default: $EMFFORMER_DATA, then the cache)")
    p.add_argument("--model", help="model name (see `emfformer models`)")
    p.add_argument("--epochs", type=int, help="training epochs")
    p.add_argument("--out", help="run folder")
    p.add_argument("--seed", type=int, help="random seed (recorded in config.yaml)")
    p.add_argument("--device", help="auto (default: CUDA, else MPS, else CPU) | cpu | cuda | cuda:N | mps")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument(
        "--set",
        nargs="+",
        action="extend",  # repeated --set flags add up instead of replacing each other
        metavar="KEY=VALUE",
        help="any config key, e.g. optim.lr=1e-3 data.size=224",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    commands["train"] = _train


def _add_evaluate_parser(sub: Any, commands: dict[str, Callable[[argparse.Namespace], int]]) -> None:
    p = sub.add_parser("evaluate", help="Dice / IoU / HD95 (mm) of a checkpoint on 3D volumes")
    _add_checkpoint_args(p)
    p.add_argument("--part", default="test", choices=["train", "val", "test", "external_test"])
    p.add_argument("--data", help="dataset folder (default: the one used in training)")
    p.add_argument("--out", help="report folder (default: RUN/eval_<part>)")
    p.add_argument("--splits", help="split JSON (default: RUN/splits.json)")
    p.add_argument("--max-cases", type=int, help="only the first N cases")
    p.add_argument("--pred", help="score this folder of predictions instead of running a checkpoint")
    p.add_argument("--labels", help="with --pred: the folder of reference labels (e.g. DATA/labelsTr)")
    p.add_argument("--dataset-json", help="with --pred: class names (default: LABELS/../dataset.json)")
    _add_runtime_args(p)
    _add_overwrite_arg(p)
    commands["evaluate"] = _evaluate


def _add_plan_parser(sub: Any, commands: dict[str, Callable[[argparse.Namespace], int]]) -> None:
    p = sub.add_parser("plan", help="fingerprint a dataset and write its training plan (plans.json)")
    p.add_argument("data", help="the dataset folder (nnU-Net v2 / MSD layout)")
    p.add_argument("-o", "--output", help="plans.json to write (default: DATA's name under the cache folder)")
    p.add_argument(
        "--model", help="model whose stride the patch is a multiple of (default: the config's, emf_former_s)"
    )
    p.add_argument("--config", help="YAML config whose data settings apply (as in train)")
    p.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. data.size=96")
    _add_overwrite_arg(p)
    commands["plan"] = _plan


def _add_predict_parser(sub: Any, commands: dict[str, Callable[[argparse.Namespace], int]]) -> None:
    p = sub.add_parser("predict", help="segment NIfTI volumes; outputs keep names, shape, affine, header")
    p.add_argument("-i", "--input", required=True, help="a .nii/.nii.gz/.nrrd/.mha file or a folder of them")
    p.add_argument("-o", "--output", required=True, help="output folder for the label files")
    _add_checkpoint_args(p)
    p.add_argument(
        "--onnx", help="an ONNX or TorchScript file from `emfformer export` (instead of --checkpoint)"
    )
    p.add_argument("--overlays", action="store_true", help="also write PNG overlays to OUTPUT/overlays/")
    p.add_argument(
        "--window", nargs=2, type=float, metavar=("LO", "HI"),
        help="overlay intensity window (default: a CT plan's HU window, else the 0.5-99.5 percentiles)",
    )  # fmt: skip
    p.add_argument(
        "--save-probabilities", "--save_probabilities", action="store_true",
        help="also write <case>.npz with the class probabilities (nnU-Net's layout)",
    )  # fmt: skip
    p.add_argument(
        "--fast", action="store_true",
        help="only the first network of an ensemble, no TTA (shipped model: ~0.1 s per volume, 2 points less mIoU)",
    )  # fmt: skip
    p.add_argument(
        "--engine", choices=["torch", "onnxruntime"], default="torch",
        help="run the networks with PyTorch or, exported on the fly and checked, onnxruntime (faster on CPU)",
    )  # fmt: skip
    _add_runtime_args(p)
    _add_overwrite_arg(p)
    commands["predict"] = _predict


def _add_export_parser(sub: Any, commands: dict[str, Callable[[argparse.Namespace], int]]) -> None:
    p = sub.add_parser(
        "export", help="export to ONNX or TorchScript (checked against PyTorch), or as a MONAI bundle"
    )
    p.add_argument("--checkpoint", help="best.pt, a pack, or a shipped name (default: hippocampus)")
    p.add_argument("--format", required=True, choices=["onnx", "torchscript", "monai-bundle"])
    p.add_argument(
        "-o", "--output", required=True,
        help="file to write (ensembles: one file per member); monai-bundle: a new folder",
    )  # fmt: skip
    _add_overwrite_arg(p)
    commands["export"] = _export


def _add_pack_parser(sub: Any, commands: dict[str, Callable[[argparse.Namespace], int]]) -> None:
    p = sub.add_parser(
        "pack", help="pack run checkpoints into one small ensemble file (for predict/evaluate)"
    )
    p.add_argument("checkpoints", nargs="+", help="best.pt files (e.g. one per slice axis)")
    p.add_argument("-o", "--output", required=True, help="the ensemble file to write")
    p.add_argument("--tta", action="store_true", help="record that mirror TTA belongs to the recipe")
    _add_overwrite_arg(p)
    commands["pack"] = _pack


def _add_report_parser(sub: Any, commands: dict[str, Callable[[argparse.Namespace], int]]) -> None:
    p = sub.add_parser("report", help="one self-contained HTML page: results, curves, bench plots, overlays")
    p.add_argument("runs", nargs="+", help="run folders (after evaluate) and/or bench folders")
    p.add_argument("-o", "--output", required=True, help="the .html file to write")
    p.add_argument("--data", help="dataset folder for the overlays (default: the one the evaluation used)")
    p.add_argument("--no-overlays", action="store_true", help="skip the prediction overlays (no data needed)")
    _add_overwrite_arg(p)
    commands["report"] = _report


def _add_download_parser(sub: Any, commands: dict[str, Callable[[argparse.Namespace], int]]) -> None:
    p = sub.add_parser("download", help="download and verify an official dataset archive")
    p.add_argument("dataset", choices=["hippocampus", "acdc"])
    p.add_argument("--to", help="target folder (default: the cache, ~/.cache/emfformer or $EMFFORMER_CACHE)")
    p.add_argument("--url", help="another URL/mirror of the same archive")
    p.add_argument("--md5", help="expected MD5 of the archive at --url")
    commands["download"] = _download


def _add_bench_parser(sub: Any, commands: dict[str, Callable[[argparse.Namespace], int]]) -> None:
    p = sub.add_parser("bench", help="params, FLOPs, memory, latency side by side")
    from .bench.args import add_arguments

    add_arguments(p)
    commands["bench"] = _bench


def _add_models_parser(sub: Any, commands: dict[str, Callable[[argparse.Namespace], int]]) -> None:
    sub.add_parser("models", help="list the registered models and their parameters")
    commands["models"] = _models


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emfformer", description="EMF-former for 2D medical image segmentation"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"emfformer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {}
    _add_train_parser(sub, commands)
    _add_plan_parser(sub, commands)
    _add_evaluate_parser(sub, commands)
    _add_predict_parser(sub, commands)
    _add_export_parser(sub, commands)
    _add_pack_parser(sub, commands)
    _add_report_parser(sub, commands)
    _add_download_parser(sub, commands)
    _add_bench_parser(sub, commands)
    _add_models_parser(sub, commands)
    parser.set_defaults(_commands=commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``emfformer`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    threads = getattr(args, "threads", None)
    try:
        if args.command in ("evaluate", "predict") and threads is not None:  # train takes it via its config
            if threads < 1:
                raise ValueError(f"--threads must be >= 1, got {threads}")
            import torch

            torch.set_num_threads(threads)
        return args._commands[args.command](args)
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
