"""The argument parsers of the ``emfformer`` command, one builder per subcommand (cli.py runs them).

One convention everywhere: ``-o/--out`` names what a command writes (``--output`` is accepted too);
``--threads`` and ``--device`` on every command that computes; ``-i/-o`` for predict as in nnU-Net,
whose names are accepted where they mean the same: ``-chk`` (checkpoint), ``-f`` (fold),
``-device`` and ``--save_probabilities``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["build_parser"]

Handler = Callable[[argparse.Namespace], int]


def _add_out_arg(p: argparse.ArgumentParser, help: str, required: bool = False) -> None:
    """-o/--out (and --output): what the command writes, as ``args.out``."""
    p.add_argument("-o", "--out", "--output", dest="out", required=required, help=help)


def _add_threads_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; 1 beside another job)")


def _add_runtime_args(p: argparse.ArgumentParser, bf16: bool = True) -> None:
    """Where and how the networks run: device, CPU threads (and bf16 autocast)."""
    p.add_argument(
        "--device",
        "-device",
        default="auto",
        help="auto (CUDA, else MPS, else CPU) | cpu | cuda | cuda:N | mps",
    )
    _add_threads_arg(p)
    if bf16:
        p.add_argument("--bf16", action="store_true", help="bfloat16 autocast")


def _add_overwrite_arg(p: argparse.ArgumentParser) -> None:
    """--overwrite: replace an existing output that this command did not write (an input: never)."""
    p.add_argument(
        "--overwrite", action="store_true",
        help="replace existing output files that emfformer did not write (never one of the inputs)",
    )  # fmt: skip


def _add_checkpoint_args(p: argparse.ArgumentParser, several: bool = True) -> None:
    p.add_argument(
        "--checkpoint", "-chk", nargs="+" if several else None, default=None,
        help="best.pt of a run, a file from `emfformer pack`, or a shipped name (default: hippocampus)"
        + ("; several are fused by averaging their probabilities" if several else ""),
    )  # fmt: skip
    if several:
        p.add_argument(
            "--tta", action=argparse.BooleanOptionalAction, default=None,
            help="mirror test-time augmentation (default: as the checkpoint recommends)",
        )  # fmt: skip


def _train(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train a model (YAML config < flags < --set)")
    p.add_argument("--config", help="YAML config, e.g. configs/hippocampus.yaml")
    p.add_argument("--data", help="dataset folder (default: $EMFFORMER_DATA, then the cache)")
    p.add_argument("--model", help="model name (see `emfformer models`)")
    p.add_argument("--epochs", type=int, help="training epochs")
    p.add_argument("-f", "--fold", type=int, help="cross-validation fold (data.fold; -1: all non-test cases)")
    _add_out_arg(p, "run folder (default: the config's out_dir)")
    p.add_argument("--seed", type=int, help="random seed (recorded in config.yaml)")
    p.add_argument(
        "--device", "-device", help="auto (default: CUDA, else MPS, else CPU) | cpu | cuda | cuda:N | mps"
    )
    _add_threads_arg(p)
    p.add_argument(
        "--set", nargs="+", action="extend",  # repeated --set flags add up instead of replacing each other
        metavar="KEY=VALUE", help="any config key, e.g. optim.lr=1e-3 data.size=224",
    )  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    return p


def _evaluate(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("evaluate", help="Dice / IoU / HD95 (mm) of a checkpoint on 3D volumes")
    _add_checkpoint_args(p)
    p.add_argument("--part", default="test", choices=["train", "val", "test", "external_test"])
    p.add_argument("--data", help="dataset folder (default: the one used in training)")
    _add_out_arg(p, "report folder (default: RUN/eval_<part>, or PRED/evaluation with --pred)")
    p.add_argument("--splits", help="split JSON (default: RUN/splits.json)")
    p.add_argument("--max-cases", type=int, help="only the first N cases")
    p.add_argument("--pred", help="score this folder of predictions instead of running a checkpoint")
    p.add_argument("--labels", help="with --pred: the folder of reference labels (e.g. DATA/labelsTr)")
    p.add_argument("--dataset-json", help="with --pred: class names (default: LABELS/../dataset.json)")
    _add_runtime_args(p)
    _add_overwrite_arg(p)
    return p


def _plan(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("plan", help="fingerprint a dataset and write its training plan (plans.json)")
    p.add_argument("data", help="the dataset folder (nnU-Net v2 / MSD layout)")
    _add_out_arg(p, "plans.json to write (default: DATA's name under the cache folder)")
    p.add_argument(
        "--model", help="model whose stride the patch is a multiple of (default: the config's, emf_former_s)"
    )
    p.add_argument("--config", help="YAML config whose data settings apply (as in train)")
    p.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. data.size=96")
    _add_threads_arg(p)  # the fingerprint reads and resamples every case (no network: no --device)
    _add_overwrite_arg(p)
    return p


def _predict(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("predict", help="segment NIfTI volumes; outputs keep names, shape, affine, header")
    p.add_argument("-i", "--input", required=True, help="a .nii/.nii.gz/.nrrd/.mha file or a folder of them")
    _add_out_arg(p, "output folder for the label files", required=True)
    _add_checkpoint_args(p)
    p.add_argument(
        "--onnx", help="an ONNX or TorchScript file from `emfformer export` (instead of --checkpoint)"
    )
    p.add_argument("--overlays", action="store_true", help="also write PNG overlays to OUT/overlays/")
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
    return p


def _export(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export", help="export to ONNX or TorchScript (checked against PyTorch), or as a MONAI bundle"
    )
    _add_checkpoint_args(p, several=False)
    p.add_argument("--format", required=True, choices=["onnx", "torchscript", "monai-bundle"])
    _add_out_arg(
        p, "file to write (ensembles: one file per member); monai-bundle: a new folder", required=True
    )
    _add_threads_arg(p)  # export traces on the CPU (the portable graph), so there is no --device
    _add_overwrite_arg(p)
    return p


def _pack(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "pack", help="pack run checkpoints into one small ensemble file (for predict/evaluate)"
    )
    p.add_argument("checkpoints", nargs="+", help="best.pt files (e.g. one per slice axis)")
    _add_out_arg(p, "the ensemble file to write", required=True)
    p.add_argument("--tta", action="store_true", help="record that mirror TTA belongs to the recipe")
    _add_overwrite_arg(p)
    return p


def _report(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("report", help="one self-contained HTML page: results, curves, bench plots, overlays")
    p.add_argument(
        "runs",
        nargs="+",
        help="run folders, evaluation folders (evaluate --out), bench folders and/or peer comparisons (scripts/compare_table.py --out)",
    )
    _add_out_arg(p, "the .html file to write", required=True)
    p.add_argument("--data", help="dataset folder for the overlays (default: the one the evaluation used)")
    p.add_argument("--no-overlays", action="store_true", help="skip the prediction overlays (no data needed)")
    _add_runtime_args(p, bf16=False)  # the overlays segment the shown cases again
    _add_overwrite_arg(p)
    return p


def _download(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("download", help="download and verify an official dataset archive")
    p.add_argument("dataset", choices=["hippocampus", "acdc"])
    p.add_argument(
        "-o", "--out", "--output", "--to", dest="out",
        help="target folder (default: the cache, ~/.cache/emfformer or $EMFFORMER_CACHE)",
    )  # fmt: skip
    p.add_argument("--url", help="another URL/mirror of the same archive")
    p.add_argument("--md5", help="expected MD5 of the archive at --url")
    return p


def _bench(sub: Any) -> argparse.ArgumentParser:
    from .bench.args import add_arguments

    p = sub.add_parser(
        "bench", help="params, FLOPs, memory, latency side by side (--quick: a small smoke run)"
    )
    add_arguments(p)
    return p


def _models(sub: Any) -> argparse.ArgumentParser:
    return sub.add_parser("models", help="list the registered models and their parameters")


_BUILDERS = {
    "train": _train, "plan": _plan, "evaluate": _evaluate, "predict": _predict, "export": _export,
    "pack": _pack, "report": _report, "download": _download, "bench": _bench, "models": _models,
}  # fmt: skip


def build_parser(handlers: Mapping[str, Handler], version: str) -> argparse.ArgumentParser:
    """The ``emfformer`` parser; each subcommand's namespace carries its handler as ``_handler``."""
    parser = argparse.ArgumentParser(
        prog="emfformer", description="EMF-former for 2D medical image segmentation"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"emfformer {version}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, build in _BUILDERS.items():
        build(sub).set_defaults(_handler=handlers[name])
    return parser
