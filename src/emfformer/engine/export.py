"""Export: a checkpoint's networks to ONNX or TorchScript, checked against PyTorch, plus a sidecar.

Only the 2D network is exported (``(B, C, H, W)`` image slices -> ``(B, classes, H, W)`` logits, batch,
height and width dynamic); preprocessing, slice fusion and mirror TTA stay in
:mod:`emfformer.engine.inference`, which runs an exported file through `ExportedNet` exactly as it runs
a PyTorch model. An ensemble (``emfformer pack``) exports one file per member. The sidecar
``<file>.json`` holds what the networks need around them: preprocessing, class names, TTA.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.preprocess import PreprocessConfig
from ..guard import KIND_KEY, check_output, check_outputs
from ..io import atomic_write, atomic_write_json
from .checkpoint import load_members, resolve_checkpoint
from .inference import Member

__all__ = [
    "FORMATS", "export_checkpoint", "load_exported", "onnx_members", "quantize_onnx_int8", "ExportedNet", "PARITY_ATOL",
]  # fmt: skip

FORMATS = ("onnx", "torchscript")
# max |logit difference| allowed between the exported file and PyTorch, per unit of the largest |logit|
# above 1: float32 rounding grows with the logits' scale (untrained EGE-UNet's reach +-25)
PARITY_ATOL = 1e-4
ONNX_INPUT = "image"  # the input name of every ONNX file we write


def _member_paths(out: Path, n: int) -> list[Path]:
    return [out] if n == 1 else [out.with_name(f"{out.stem}.m{i}{out.suffix}") for i in range(n)]


def _write_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    axes = {0: "batch", 2: "height", 3: "width"}

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():  # tracer notes on shape checks that hold for every valid size
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (example,), str(tmp), input_names=[ONNX_INPUT], output_names=["logits"],
                dynamic_axes={ONNX_INPUT: axes, "logits": axes}, opset_version=17, dynamo=False,
            )  # fmt: skip

    atomic_write(path, write, suffix=".onnx")


def _write_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example, check_trace=False)
    atomic_write(path, lambda tmp: traced.save(str(tmp)))


class ExportedNet(nn.Module):
    """An exported file (ONNX through onnxruntime, or TorchScript) behind the ``nn.Module`` call of a model.

    (B, C, H, W) float32 -> (B, classes, H, W) logits, on the CPU.
    """

    def __init__(self, path: str | Path, input_multiple: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.input_multiple = input_multiple  # dynamic axes: inference grows inputs as for the model
        self._anchor = nn.Parameter(torch.zeros(0), requires_grad=False)  # tells inference the device
        if self.path.suffix == ".onnx":
            try:
                import onnxruntime as ort
            except ImportError as exc:
                raise ValueError("ONNX files need onnxruntime: pip install 'emfformer[export]'") from exc
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()  # the same thread budget as torch
            options.inter_op_num_threads = 1
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
            self.script = None
        else:
            self.session = None
            self.script = torch.jit.load(str(self.path), map_location="cpu").eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.script is not None:
            return self.script(x)
        out = self.session.run(None, {ONNX_INPUT: x.detach().cpu().numpy().astype(np.float32)})[0]
        return torch.from_numpy(out)


def onnx_members(members: list[Member]) -> list[Member]:
    """The same members run by onnxruntime: each network exported to a temporary ONNX file, checked.

    On this project's 2-core CPU onnxruntime ran EMF-former-S 2.0x faster than eager PyTorch at
    224^2 (docs/benchmarks.md); ``emfformer predict --engine onnxruntime`` uses this.

    Raises:
        ValueError: onnx / onnxruntime missing, or an export that differs from PyTorch by > PARITY_ATOL.
    """
    folder = Path(tempfile.mkdtemp(prefix="emfformer_onnx_"))
    out: list[Member] = []
    for i, (model, pre) in enumerate(members):
        model = model.cpu()  # onnxruntime runs here on the CPU provider; export and parity inputs are CPU
        path = folder / f"m{i}.onnx"
        try:
            _write_onnx(model, torch.zeros(1, pre.context * pre.channels, pre.size, pre.size), path)
        except ImportError as exc:
            raise ValueError(
                "--engine onnxruntime needs onnx and onnxruntime: pip install 'emfformer[export]'"
            ) from exc
        net = ExportedNet(path, getattr(model, "input_multiple", None))
        diff, tol = _parity(model, net, pre.context * pre.channels, pre.size)
        if not diff <= tol:
            raise ValueError(
                f"the ONNX export of member {i} differs from PyTorch by {diff:.2e} > {tol:.1e}; use --engine torch"
            )
        out.append((net, pre))
    return out


def quantize_onnx_int8(path: Path, inputs: Iterable[np.ndarray]) -> Path:
    """``path`` (an ONNX file of this module) quantised to int8 by onnxruntime: static, QDQ format,
    per-tensor scales calibrated (MinMax) on ``inputs``, each a (1, C, H, W) float32 array. Writes
    ``<stem>.pre.onnx`` (onnxruntime's pre-processed model) and ``<stem>.int8.onnx`` beside it; returns the
    latter."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter({ONNX_INPUT: x} for x in inputs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    prepared, out = path.with_suffix(".pre.onnx"), path.with_suffix(".int8.onnx")
    quant_pre_process(str(path), str(prepared), skip_symbolic_shape=True)
    quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ)
    return out


def _parity(model: nn.Module, exported: ExportedNet, in_channels: int, size: int) -> tuple[float, float]:
    """Max |logit difference| over two batch sizes and two input sides (dynamic axes really work), and
    the tolerance it must meet: ``PARITY_ATOL`` x max(1, largest |logit|)."""
    worst, scale = 0.0, 1.0
    gen = torch.Generator().manual_seed(0)
    for batch, side in ((2, size), (3, size + 32)):
        x = torch.randn(batch, in_channels, side, side, generator=gen)
        with torch.no_grad():
            ref = model(x)
            worst = max(worst, float((exported(x) - ref).abs().max()))
        scale = max(scale, float(ref.abs().max()))
    return worst, PARITY_ATOL * scale


SUFFIXES = {"onnx": (".onnx",), "torchscript": (".pt", ".ts", ".pth")}  # ExportedNet reads by suffix


def _checked_outputs(
    checkpoint: str | Path | None, fmt: str, out: Path, n: int, overwrite: bool
) -> list[Path]:
    """The member files and sidecar ``export`` will write, checked before any work (guard.py): a file
    name with the format's suffix, not a folder, not the checkpoint, new or a previous export."""
    if out.is_dir():
        raise ValueError(
            f"-o {out} is a folder; give the file to write, e.g. -o {out / ('model' + SUFFIXES[fmt][0])}"
        )
    if not out.name.lower().endswith(SUFFIXES[fmt]):
        raise ValueError(
            f"-o {out}: a {fmt} file name ends in {' or '.join(SUFFIXES[fmt])} (predict --onnx picks the "
            f"runtime by it); e.g. -o {out.with_name(out.stem + SUFFIXES[fmt][0])}. Nothing was written."
        )
    source = [resolve_checkpoint(checkpoint)]
    paths = _member_paths(out, n)
    check_outputs([(p, "exported") for p in paths], source, overwrite)
    check_output(out.with_name(out.name + ".json"), "export", source, overwrite)
    return paths


def export_checkpoint(
    checkpoint: str | Path | None, fmt: str, out: str | Path, overwrite: bool = False
) -> dict[str, Any]:
    """Export every network of ``checkpoint`` (a run checkpoint, a pack, or a shipped name) to ``fmt``.

    Writes ``out`` (or ``<stem>.m<i><suffix>`` per member of an ensemble) and the sidecar
    ``<out>.json``; returns the sidecar dict, which records the measured parity.

    ``overwrite``: replace existing files that no export wrote (the checkpoint itself: never).

    Raises:
        ValueError: unknown format, a bad ``out`` (no such suffix, a folder, the checkpoint, a foreign
            file), or an exported file that differs from PyTorch by more than ``PARITY_ATOL``; no
            file is left behind then.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    members, class_names, tta, _ = load_members(checkpoint)
    out = Path(out)
    paths = _checked_outputs(checkpoint, fmt, out, len(members), overwrite)
    try:
        sidecar = _export_members(members, paths, fmt)
    except BaseException:
        for p in paths:
            p.unlink(missing_ok=True)  # no partial export: a member without its sidecar is of no use
        raise
    sidecar = {"format": fmt, "class_names": class_names, "tta": tta, "members": sidecar, KIND_KEY: "export"}
    atomic_write_json(out.with_name(out.name + ".json"), sidecar)
    return sidecar


def _export_members(members: list[Member], paths: list[Path], fmt: str) -> list[dict[str, Any]]:
    """Write and parity-check every member; returns the sidecar's member entries."""
    entries = []
    for (model, pre), path in zip(members, paths, strict=True):
        in_channels = pre.context * pre.channels  # training: one input per channel and context slice
        example = torch.zeros(1, in_channels, pre.size, pre.size)
        (_write_onnx if fmt == "onnx" else _write_torchscript)(model, example, path)
        diff, tol = _parity(model, ExportedNet(path), in_channels, pre.size)
        if not diff <= tol:
            raise ValueError(
                f"exported {path.name} differs from PyTorch by {diff:.2e} > {tol:.1e}: not written"
            )
        entries.append({"file": path.name, "preprocess": pre.to_dict(), "max_abs_logit_diff": diff,
                        "input_multiple": getattr(model, "input_multiple", None)})  # fmt: skip
    return entries


def load_exported(path: str | Path) -> tuple[list[Member], list[str], bool]:
    """Members (exported network, preprocessing), class names and TTA of an exported file's sidecar,
    each network checked against its description before anything runs.

    Raises:
        ValueError: the file or its ``.json`` sidecar is missing or unreadable, the sidecar lists no
            members, a member file is missing or truncated, or a network does not take the sidecar's
            ``context x channels`` inputs or give one output per class name.
    """
    path = Path(path)
    sidecar = path.with_name(path.name + ".json")
    if not sidecar.is_file():
        raise ValueError(f"No sidecar {sidecar} beside {path}: export it with `emfformer export`.")
    try:
        meta = json.loads(sidecar.read_text())
        entries, class_names, tta = meta["members"], list(meta["class_names"]), bool(meta["tta"])
        if not isinstance(entries, list) or not entries:
            raise ValueError("its 'members' list is empty")
        members = [_exported_member(path.with_name(m["file"]), m) for m in entries]
    except (OSError, KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"Cannot load the exported model {path}: {exc}") from exc
    for (net, pre), m in zip(members, entries, strict=True):
        _check_exported(net, pre, class_names, m["file"], sidecar)
    return members, class_names, tta


def _exported_member(file: Path, entry: dict[str, Any]) -> Member:
    """One sidecar entry's network and preprocessing; a missing or damaged file says so."""
    if not file.is_file():
        raise ValueError(f"member file {file} is missing (export again with `emfformer export`)")
    try:
        net = ExportedNet(file, entry.get("input_multiple"))
    except ValueError:
        raise
    except Exception as exc:  # onnxruntime / torch.jit raise their own types for damaged files
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(
            f"member file {file} cannot be read ({reason}): is it complete? Export again"
        ) from exc
    return net, PreprocessConfig.from_dict(entry["preprocess"])


def _check_exported(
    net: ExportedNet, pre: PreprocessConfig, class_names: list[str], file: str, sidecar: Path
) -> None:
    """One forward pass of a zero patch: the network must take ``context x channels`` inputs at the
    sidecar's patch side and give one output per class name."""
    inputs = pre.context * pre.channels
    try:
        with torch.no_grad():
            out = net(torch.zeros(1, inputs, pre.size, pre.size))
    except Exception as exc:  # onnxruntime: INVALID_ARGUMENT; TorchScript: a RuntimeError
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:200]
        raise ValueError(
            f"{sidecar} does not fit {file}: the network does not take {inputs} input channel(s) (context "
            f"{pre.context} x channels {pre.channels}) at {pre.size} x {pre.size} ({reason}). The sidecar was "
            "edited or belongs to another export; export again."
        ) from exc
    if out.ndim != 4 or out.shape[1] != len(class_names):
        raise ValueError(
            f"{sidecar} does not fit {file}: the network gives {out.shape[1] if out.ndim > 1 else '?'} "
            f"classes, the sidecar names {len(class_names)} ({class_names}). Export again."
        )
