"""Self-describing checkpoints (nanoGPT style): everything predict/evaluate need to rebuild the model.

A run checkpoint (``best.pt`` / ``last.pt``) holds: ``model`` / ``optimizer`` / ``scheduler`` (state
dicts), ``rng``, ``history``, ``model_kwargs`` (incl. in_channels / num_classes), ``model_name``,
``preprocess`` (PreprocessConfig dict), ``class_names``, ``dataset``, ``config`` (the resolved
RunConfig), ``splits`` (the run's case split), ``plan`` (the dataset's plan, channel names included),
``epoch``, ``metric`` / ``best_metric``, ``seed``, ``emfformer_version``.

An *ensemble* file (``emfformer pack``) holds ``members`` (stripped run checkpoints, plan kept, e.g.
one per slice axis), the shared ``class_names``, ``dataset`` and ``splits``, and ``tta`` (whether
mirror test-time augmentation is part of the recipe). Both load with ``torch.load(weights_only=True)``:
tensors and plain Python values only, so a crafted file cannot run code.
"""

from __future__ import annotations

import contextlib
import errno
import os
import platform
import shutil
import zipfile
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy._core import multiarray as np_multiarray  # numpy >= 2 (pyproject)

from .. import __version__
from ..data.preprocess import PreprocessConfig
from ..guard import KIND_KEY, check_output, same_file
from ..io import atomic_write
from ..models import create_model, input_problem, list_models
from ..models.fuse import fuse_for_inference
from .inference import Member

__all__ = [
    "SHIPPED",
    "save_checkpoint",
    "load_checkpoint",
    "model_from_checkpoint",
    "members_from_checkpoint",
    "load_members",
    "strip_checkpoint",
    "pack_ensemble",
    "resolve_checkpoint",
]

REQUIRED_KEYS = ("model", "model_name", "model_kwargs", "preprocess", "class_names")
ENSEMBLE_KEYS = ("members", "class_names")
# what inference, evaluation and the model card need; optimizer/scheduler/RNG state are dropped
INFERENCE_KEYS = (
    *REQUIRED_KEYS,
    "dataset",
    "config",
    "seed",
    "epoch",
    "metric",
    "splits",
    "plan",  # the dataset's plan: channel names (a bundle's modality), normalisation, class frequencies
    "emfformer_version",
    "environment",  # where it was trained: torch, python, machine (the report's run metadata)
)
# plain numpy arrays (RNG state in checkpoints of emfformer 0.1): data only, no code paths
_NUMPY_GLOBALS: list[Any] = [np.ndarray, np.dtype, np.dtypes.UInt32DType, np_multiarray._reconstruct]
# pretrained weights shipped inside the package: name -> file in emfformer/weights/
SHIPPED = {"hippocampus": "hippocampus.pt", "left-atrium": "left_atrium.pt", "left_atrium": "left_atrium.pt"}


def environment() -> dict[str, str]:
    """Where this process runs: torch and python versions, OS and CPU (or the GPU it used) name."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    # a GPU only when this process used one (is_initialized does not start CUDA, unlike is_available)
    gpu = torch.cuda.get_device_name() if torch.cuda.is_initialized() else None
    return {"torch": str(torch.__version__), "python": platform.python_version(),
            "machine": f"{platform.system()} {platform.machine()}, {gpu or cpu}"}  # fmt: skip


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically (temp file + rename): a crash never leaves a truncated checkpoint."""
    if "members" in state:
        missing = [k for k in ENSEMBLE_KEYS if k not in state]
    else:
        missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}")
    kind = "ensemble" if "members" in state else "checkpoint"  # the never-destroy marker (guard.py)
    # a state that already records where it was made (a resumed run's, a member's) keeps it
    full = {"environment": environment(), **state, "emfformer_version": __version__, KIND_KEY: kind}
    return _write_checkpoint(path, lambda tmp: torch.save(full, tmp))


def copy_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """``src``'s bytes to ``dst``, atomically: the same state is not pickled a second time."""
    return _write_checkpoint(dst, lambda tmp: shutil.copyfile(src, tmp))


def _write_checkpoint(path: str | Path, write: Callable[[Path], object]) -> Path:
    try:
        return atomic_write(path, write)
    except (OSError, RuntimeError) as exc:  # disk full, quota, permissions: the previous file is untouched
        if isinstance(exc, RuntimeError) and not _is_write_failure(exc):
            raise
        code = getattr(exc, "errno", None) or errno.ENOSPC
        reason = os.strerror(code) if isinstance(exc, RuntimeError) or exc.errno else str(exc)
        raise OSError(
            code,
            f"could not write checkpoint {path}: {reason}. The previous {Path(path).name} (if any) "
            "is intact; free space or fix the folder, then continue with --resume",
        ) from exc


def _is_write_failure(exc: RuntimeError) -> bool:
    """torch.save reports a full disk as a RuntimeError of its zip writer ("unexpected pos ...")."""
    text = str(exc)
    return any(s in text for s in ("PytorchStreamWriter", "unexpected pos", "file write failed"))


def resolve_checkpoint(spec: str | Path | None) -> Path:
    """A shipped name (``hippocampus``, any case; ``None`` means it), a run folder (its ``best.pt``) or a
    checkpoint path -> the checkpoint file.

    Raises:
        ValueError: the file does not exist (the message lists the shipped names).
    """
    spec = "hippocampus" if spec is None else spec
    path = Path(spec)
    run_folder = path.is_dir() and (path / "best.pt").is_file()
    if str(spec).lower() in SHIPPED and not (path.is_file() or run_folder):  # a name, in any case
        return Path(str(resources.files("emfformer") / "weights" / SHIPPED[str(spec).lower()]))
    if run_folder:  # a run folder: its best checkpoint
        return path / "best.pt"
    if path.is_dir():
        raise ValueError(
            f"{path} is a folder without best.pt; give a checkpoint file (e.g. {path / 'last.pt'})."
        )
    if not path.is_file():
        raise ValueError(
            f"Checkpoint not found: {path}. Give the best.pt / last.pt of a run folder, a file from "
            f"`emfformer pack`, or a shipped name ({', '.join(SHIPPED)})."
        )
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a run checkpoint or an ensemble file on the CPU, without running any code from it.

    Raises:
        ValueError: missing file, unreadable or unsafe file, or not an emfformer checkpoint.
    """
    path = resolve_checkpoint(path)
    try:
        with torch.serialization.safe_globals(_NUMPY_GLOBALS):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files and for refused pickles
        reason = (
            (str(exc).splitlines() or [type(exc).__name__])[0]
            if zipfile.is_zipfile(path)
            else "not a PyTorch file (torch.save writes a zip archive; this is none)"
        )
        raise ValueError(
            f"Cannot read checkpoint {path}: {reason}. It is corrupt, not a checkpoint, "
            "holds objects other than tensors and plain values (refused: loading them could run code), "
            "or was written by emfformer < 0.2 (retrain or re-pack it)."
        ) from exc
    keys = ENSEMBLE_KEYS if isinstance(state, dict) and "members" in state else REQUIRED_KEYS
    if not isinstance(state, dict) or any(k not in state for k in keys):
        raise ValueError(f"{path} is not an emfformer checkpoint (needs keys {list(keys)})")
    return state


def _load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """``load_state_dict`` whose error names the keys: missing, unexpected, or of another shape.

    Raises:
        ValueError: the first few offending keys of each kind.
    """
    try:
        result = model.load_state_dict(weights, strict=False)
    except RuntimeError as exc:  # shape mismatches: torch lists one "size mismatch for KEY" line each
        lines = [ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()]
        raise ValueError(
            "; ".join(lines[:3]) + (f" (and {len(lines) - 3} more)" if len(lines) > 3 else "")
        ) from exc
    problems = [
        f"{what} {', '.join(keys[:3])}" + (f" (and {len(keys) - 3} more)" if len(keys) > 3 else "")
        for what, keys in (("missing keys", result.missing_keys), ("unexpected keys", result.unexpected_keys))
        if keys
    ]
    if problems:
        raise ValueError("; ".join(problems))


def model_from_checkpoint(state: dict[str, Any]) -> tuple[torch.nn.Module, PreprocessConfig]:
    """Rebuild the model (eval mode, weights loaded) and its preprocessing from a run checkpoint dict.

    Raises:
        ValueError: the weights do not fit the model the checkpoint names.
    """
    n_classes = (
        state["model_kwargs"].get("num_classes") if isinstance(state.get("model_kwargs"), dict) else None
    )
    if n_classes is not None and n_classes != len(state["class_names"]):
        raise ValueError(
            f"Checkpoint weights do not fit their class names: the model has {n_classes} classes, "
            f"class_names lists {len(state['class_names'])} ({state['class_names']})"
        )
    bad = [
        k
        for k, v in state["model"].items()
        if torch.is_tensor(v) and v.is_floating_point() and not v.isfinite().all()
    ]
    if bad:
        raise ValueError(
            f"Checkpoint weights hold NaN/inf values ({len(bad)} tensors, e.g. {bad[0]}): the training "
            "diverged before it was saved. Use an earlier checkpoint or retrain with a lower optim.lr."
        )
    try:
        model = create_model(state["model_name"], **state["model_kwargs"])
        _load_weights(model, state["model"])
        preprocess = PreprocessConfig.from_dict(state["preprocess"])
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise ValueError(f"Checkpoint weights do not fit model {state.get('model_name')!r}: {exc}") from exc
    problem = _preprocess_problem(state, preprocess)
    if problem:
        raise ValueError(
            f"Checkpoint preprocessing does not fit its network: {problem}. The file was edited or is damaged; "
            "use the checkpoint as training wrote it (or retrain)."
        )
    return model.eval(), preprocess


def _preprocess_problem(state: dict[str, Any], pre: PreprocessConfig) -> str:
    """Why ``pre`` (a checkpoint's preprocess) cannot feed the network of ``state``; "" when it can: the
    network takes ``context x channels`` input channels, and a side its architecture accepts."""
    in_channels = state["model_kwargs"].get("in_channels", 1)
    if in_channels != pre.context * pre.channels:
        return (
            f"the network takes {in_channels} input channel(s), preprocess gives context {pre.context} x "
            f"channels {pre.channels} = {pre.context * pre.channels}"
        )
    name = state["model_name"]
    if name in list_models():
        problem = input_problem(name, pre.size, state["model_kwargs"].get("img_size"))
        if problem:
            return f"preprocess.size {pre.size}: {problem}"
    return ""


def members_from_checkpoint(state: dict[str, Any], device: torch.device | str = "cpu") -> list[Member]:
    """Every (model, preprocess) of a run checkpoint (one) or an ensemble file (several), on ``device``,
    ready for inference: eval mode, with the folds of models/fuse.py (same outputs, fewer and larger ops)."""
    states = state["members"] if "members" in state else [state]
    if not isinstance(states, list) or not states:
        raise ValueError(
            "the ensemble file lists no members (an empty 'members'): re-pack it with `emfformer pack`"
        )
    members = []
    for member in states:
        if list(member["class_names"]) != list(state["class_names"]):
            raise ValueError(f"ensemble members disagree on classes: {member['class_names']}")
        model, pre = model_from_checkpoint(member)
        members.append((fuse_for_inference(model).to(device), pre))
    return members


def load_members(
    checkpoints: str | Path | Sequence[str | Path] | None, device: torch.device | str = "cpu"
) -> tuple[list[Member], list[str], bool, list[dict[str, Any]]]:
    """Load one or several checkpoints (paths, packs or shipped names; ``None`` = the shipped model)
    for fused inference: their members, the shared class names, the recommended TTA and the states.

    Raises:
        ValueError: no checkpoint, an unreadable one, or checkpoints that disagree on class names.
    """
    if checkpoints is None or isinstance(checkpoints, str | Path):
        checkpoints = [checkpoints]
    if not checkpoints:
        raise ValueError("no checkpoint given")
    states = [load_checkpoint(c) for c in checkpoints]
    class_names = list(states[0]["class_names"])
    if any(list(s["class_names"]) != class_names for s in states):
        raise ValueError("the checkpoints disagree on class names; only models of one dataset can be fused")
    members = [m for s in states for m in members_from_checkpoint(s, device)]
    return members, class_names, bool(states[0].get("tta", False)), states


def strip_checkpoint(state: dict[str, Any]) -> dict[str, Any]:
    """The inference part of a run checkpoint (no optimizer, scheduler, RNG, history or local paths)."""
    out = {k: state[k] for k in INFERENCE_KEYS if k in state}
    if isinstance(out.get("config"), dict) and isinstance(out["config"].get("data"), dict):
        # folders of the training machine mean nothing elsewhere (evaluate falls back to --data / env)
        out["config"] = {
            **out["config"],
            "data": {**out["config"]["data"], "data_dir": None, "cache_dir": None},
        }
        out["config"]["out_dir"] = "runs/shipped"
    return out


def pack_ensemble(
    checkpoints: Sequence[str | Path], out: str | Path, tta: bool = False, overwrite: bool = False
) -> Path:
    """Write one ensemble file from run checkpoints (e.g. the three slice-axis models of a recipe).

    All members must share class names, dataset and case split (so the test part is the same).

    ``out`` may be new or a previous pack; anything else needs ``overwrite``, and one of the
    ``checkpoints`` is always refused (guard.py).

    Raises:
        ValueError: no checkpoints, one given twice, members that disagree, or an ``out`` the never-destroy
            rule refuses.
    """
    if not checkpoints:
        raise ValueError("pack needs at least one checkpoint")
    paths = [resolve_checkpoint(c) for c in checkpoints]  # shipped names and run folders too
    for i, a in enumerate(paths):  # the same network twice would count twice in the fused average
        twin = next((checkpoints[j] for j in range(i) if same_file(paths[j], a)), None)
        if twin is not None:
            raise ValueError(f"{checkpoints[i]} is given twice (also as {twin}): pack each checkpoint once")
    check_output(out, "ensemble", checkpoints, overwrite)
    states = [load_checkpoint(c) for c in checkpoints]
    members = [m for s in states for m in (s["members"] if "members" in s else [strip_checkpoint(s)])]
    first = members[0]
    for name in ("class_names", "dataset", "splits"):
        if any(m.get(name) != first.get(name) for m in members):
            raise ValueError(f"the checkpoints disagree on {name}; only models of one dataset and split pack")
    state = {
        "members": members,
        "class_names": first["class_names"],
        "dataset": first.get("dataset"),
        "splits": first.get("splits"),
        "tta": bool(tta),
    }
    return save_checkpoint(out, state)
