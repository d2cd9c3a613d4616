"""Test-part accuracy of a checkpoint run by onnxruntime in int8 (static QDQ quantisation) against float32.

    python scripts/int8_check.py --checkpoint hippocampus --data DIR [--calibration-cases 8] [--threads 1]
        [--out docs/results/int8_check.json]

Calibration inputs are what inference really feeds each network: the preprocessed slices of the first N
cases of the checkpoint's *training* part (recorded while those volumes are segmented), never a test case.
Each member is exported to ONNX (float32, the exporter of ``emfformer export``), quantised by onnxruntime
(static, QDQ, per-tensor, MinMax calibration), and the test part is scored with the same pre- and
post-processing, TTA and metrics as ``emfformer evaluate``, once in float32 ONNX and once in int8.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emfformer.data.cases import LazyVolumes
from emfformer.data.locate import load_dataset
from emfformer.data.splits import select_cases
from emfformer.engine.checkpoint import load_members, resolve_checkpoint
from emfformer.engine.config import config_from_dict
from emfformer.engine.export import ExportedNet, _write_onnx, quantize_onnx_int8
from emfformer.engine.inference import evaluate_volumes


class Recorder(nn.Module):
    """The network unchanged, keeping every input batch it is given (the calibration data)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.seen = net, []
        self.input_multiple = getattr(net, "input_multiple", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().cpu().numpy().astype(np.float32))
        return self.net(x)


def _calibration_inputs(batches: list[np.ndarray], limit: int = 64) -> list[np.ndarray]:
    """Up to ``limit`` recorded network inputs, drawn at random (seed 0), each (1, C, H, W)."""
    images = [img[None] for b in batches for img in b]
    picks = np.random.default_rng(0).choice(len(images), size=min(limit, len(images)), replace=False)
    return [images[i] for i in picks]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="hippocampus")
    ap.add_argument("--data", required=True, help="the checkpoint's dataset folder")
    ap.add_argument("--calibration-cases", type=int, default=8, help="training-part cases for calibration")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, help="write the two summaries here (JSON)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    path = resolve_checkpoint(args.checkpoint)
    members, class_names, tta, states = load_members([path], torch.device("cpu"))
    first = states[0]["members"][0] if "members" in states[0] else states[0]
    cfg = config_from_dict(first["config"])
    cfg.data.data_dir = args.data
    info = load_dataset(cfg.data, check=False)
    splits = dict(states[0]["splits"])
    train, test = (select_cases(info, cfg.data, part, splits) for part in ("train", "test"))
    folder, results = Path(tempfile.mkdtemp(prefix="emfformer_int8_")), {}
    recorders = [(Recorder(model.eval()), pre) for model, pre in members]
    with torch.inference_mode():
        evaluate_volumes(
            recorders, LazyVolumes(train[: args.calibration_cases]), class_names, tta=False, progress=False
        )
    fp32, int8 = [], []
    for i, ((rec, pre), (model, _)) in enumerate(zip(recorders, members, strict=True)):
        onnx_path = folder / f"m{i}.onnx"
        _write_onnx(model, torch.zeros(1, pre.context * pre.channels, pre.size, pre.size), onnx_path)
        multiple = getattr(model, "input_multiple", None)
        fp32.append((ExportedNet(onnx_path, multiple), pre))
        int8.append(
            (ExportedNet(quantize_onnx_int8(onnx_path, _calibration_inputs(rec.seen)), multiple), pre)
        )
    for name, nets in (("float32_onnx", fp32), ("int8_onnx", int8)):
        with torch.inference_mode():
            _, summary = evaluate_volumes(
                nets, LazyVolumes(test), class_names, hd95=True, tta=tta, progress=True
            )
        results[name] = {k: v for k, v in summary.items() if isinstance(v, float)}
        print(
            f"{name}: test fg mIoU {100 * summary['miou_fg']:.2f} %, fg Dice {100 * summary['mean_dice_fg']:.2f} %"
        )
    results.update(
        checkpoint=str(path), test_cases=len(test), calibration_cases=args.calibration_cases, tta=tta
    )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
