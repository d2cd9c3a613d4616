"""What the report says about each folder: model, config highlights, training, versions, dates.

Sources, all written by emfformer itself: a run's ``config.yaml`` and ``log.csv`` (or those of the
member runs in its subfolders, for an ensemble folder), the checkpoint an evaluation names in its
``metrics.json`` (model, epoch, the emfformer version that trained it, its config), and a bench
folder's ``bench.json`` (device, torch, python). Checkpoints are loaded once per report.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from .. import __version__
from .checkpoint import environment, load_checkpoint

__all__ = ["checkpoint_paths", "checkpoint_states", "folder_metadata", "report_environment"]

_STATES: dict[Path, dict[str, Any]] = {}  # resolved path -> loaded checkpoint, for one process


def checkpoint_paths(eval_dir: Path, extra: dict[str, Any]) -> list[Path]:
    """The checkpoint files an evaluation ran (``metrics.json`` ``extra.checkpoint``), found as
    recorded (relative to where evaluate ran) or, failing that, beside the evaluation folder.

    Raises:
        ValueError: the evaluation names no checkpoint (``evaluate --pred``), or one is not found.
    """
    recorded = extra.get("checkpoint")
    if not recorded:
        raise ValueError("the evaluation scored prediction files; it names no checkpoint")
    paths = []
    for spec in recorded if isinstance(recorded, list) else [recorded]:
        candidates = [Path(spec), eval_dir.parent / Path(spec).name, eval_dir.parent.parent / Path(spec).name]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise ValueError(
                f"checkpoint {spec} of {eval_dir} not found (tried {', '.join(map(str, candidates))})"
            )
        paths.append(found)
    return paths


def checkpoint_states(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """`load_checkpoint` of every path, each file read once per process."""
    for p in paths:
        key = Path(p).resolve()
        if key not in _STATES:
            _STATES[key] = load_checkpoint(p)
    return [_STATES[Path(p).resolve()] for p in paths]


def _first_member(state: dict[str, Any]) -> dict[str, Any]:
    return state["members"][0] if "members" in state else state


def _config(folder: Path, states: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The run config: ``config.yaml`` here or in a member subfolder, else the checkpoint's."""
    for path in [folder / "config.yaml", *sorted(folder.glob("*/config.yaml"))]:
        try:
            cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(cfg, dict):
            return cfg
    for state in states:
        cfg = _first_member(state).get("config")
        if isinstance(cfg, dict):
            return cfg
    return None


def _training(folder: Path) -> str | None:
    """'N epochs logged, H h of training; best val mIoU at epoch E' from the first ``log.csv``."""
    logs = [p for p in [folder / "log.csv", *sorted(folder.glob("*/log.csv"))] if p.is_file()]
    if not logs:
        return None
    path = logs[0]
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    seconds = sum(float(r.get("train_seconds") or 0) for r in rows)
    took = f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"
    text = f"{len(rows)} epochs logged, {took} of training"
    scored = [(float(r["val_miou_fg"]), r["epoch"]) for r in rows if r.get("val_miou_fg") not in (None, "")]
    if scored:
        best, epoch = max(scored)
        text += f"; best val mIoU {100 * best:.2f} % (epoch {epoch})"
    return text + (f" ({path.parent.name}, the first of {len(logs)} runs here)" if len(logs) > 1 else "")


def _config_pairs(cfg: dict[str, Any]) -> list[tuple[str, str]]:
    """Config highlights: dataset, input, model options, recipe, seed."""
    data, model, optim = cfg.get("data", {}), cfg.get("model", {}), cfg.get("optim", {})
    pairs = [("dataset", str(data.get("dataset", "?")))]
    pairs.append((
        "input",
        f"{data.get('size', '?')}² ({data.get('mode', '?')}), slice axis {data.get('slice_axis', '?')}, "
        f"context {data.get('context', 1)}",
    ))  # fmt: skip
    if model.get("kwargs"):
        pairs.append(("model options", ", ".join(f"{k}={v}" for k, v in model["kwargs"].items())))
    pairs.append((
        "recipe",
        f"{optim.get('epochs', '?')} epochs, batch {optim.get('batch_size', '?')}, lr {optim.get('lr', '?')} "
        f"({optim.get('schedule', '?')}), weight decay {optim.get('weight_decay', '?')}",
    ))  # fmt: skip
    pairs.append(("seed / device", f"{cfg.get('seed', '?')} / {cfg.get('device', '?')}"
                  + (" bf16" if cfg.get("bf16") else "")))  # fmt: skip
    return pairs


def _date(paths: Sequence[Path]) -> str | None:
    times = [p.stat().st_mtime for p in paths if p.is_file()]
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(max(times))) if times else None


def folder_metadata(
    folder: Path, evaluations: Sequence[tuple[Path, dict[str, Any]]]
) -> list[tuple[str, str]]:
    """(key, value) pairs describing a run, evaluation or bench folder (those its files record)."""
    pairs: list[tuple[str, str]] = []
    states: list[dict[str, Any]] = []
    extra = evaluations[0][1].get("extra", {}) if evaluations else {}
    if evaluations:
        try:
            states = checkpoint_states(checkpoint_paths(evaluations[0][0], extra))
        except ValueError:
            pass  # metadata is best effort; the overlays say why they are missing
    if extra.get("model_name"):
        members = extra.get("members", 1)
        pairs.append(("model", extra["model_name"] + (f" × {members} (ensemble)" if members > 1 else "")))
    cfg = _config(folder, states)
    if cfg is not None:
        if not extra.get("model_name"):
            pairs.append(("model", str(cfg.get("model", {}).get("name", "?"))))
        pairs += _config_pairs(cfg)
    training = _training(folder)
    if training:
        pairs.append(("training", training))
    if states:
        first = _first_member(states[0])
        pairs.append(
            ("checkpoint", f"epoch {first.get('epoch', '?')}, TTA {'on' if extra.get('tta') else 'off'}")
        )
        pairs.append(("trained with", f"emfformer {first.get('emfformer_version', '?')}"))
        env = first.get("environment") or states[0].get("environment")
        if env:  # checkpoints from before this key: unknown
            pairs.append(
                (
                    "trained on",
                    f"{env.get('machine', '?')}; torch {env.get('torch', '?')}, python {env.get('python', '?')}",
                )
            )
    if extra.get("predictions"):
        pairs.append(("scored", f"{extra['predictions']} against {extra.get('labels', '?')}"))
    pairs += _bench_pairs(folder)
    written = [folder / n for n in ("log.csv", "best.pt", "metrics.json", "bench.json")]
    date = _date(written + [e / "metrics.json" for e, _ in evaluations])
    if date:
        pairs.append(("last written", date))
    return pairs


def _bench_pairs(folder: Path) -> list[tuple[str, str]]:
    """Device and versions of a bench folder's ``bench.json``."""
    try:
        meta = json.loads((folder / "bench.json").read_text(encoding="utf-8"))["meta"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [
        ("bench device", f"{meta.get('device', '?')} ({meta.get('device_name', '?')}), {meta.get('threads', '?')} threads"),
        ("bench versions", f"torch {meta.get('torch', '?')}, python {meta.get('python', '?')}"),
        ("bench started", str(meta.get("started", "?"))),
    ]  # fmt: skip


def report_environment() -> list[tuple[str, str]]:
    """Where and when this report was written: date, emfformer, torch, python, machine (the same
    description a checkpoint records of its training machine, `checkpoint.environment`)."""
    env = environment()
    return [
        ("report written", time.strftime("%Y-%m-%d %H:%M %Z")),
        ("emfformer", __version__),
        ("torch / python", f"{env['torch']} / {env['python']}"),
        ("machine", env["machine"]),
    ]
