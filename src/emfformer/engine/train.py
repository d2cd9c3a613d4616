"""Training: ``run_training(cfg)`` trains any registered model on 2D slices and validates on volumes.

One epoch = one pass over the (augmented) training slices; validation segments every validation
volume slice by slice and scores the reassembled 3D volume (Dice / IoU, no HD95 for speed). The best
checkpoint is the one with the highest foreground mIoU on validation (the paper's metric).
"""

from __future__ import annotations

import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data.cases import Volume, load_volume
from ..data.locate import default_cache_dir
from ..data.preprocess import PreprocessConfig
from ..data.slices import SliceDataset, build_slice_cache, train_transforms
from ..io import atomic_write_text
from ..metrics import case_metrics, summarize
from ..models import create_model, size_kwargs
from .checkpoint import load_checkpoint, save_checkpoint
from .config import RESUMABLE_KEYS, RunConfig, config_from_dict, parse_overrides
from .history import write_history
from .inference import autocast, predict_volume
from .losses import SegLoss
from .parts import load_dataset, select_cases

__all__ = [
    "run_training",
    "train_one_epoch",
    "lr_factor",
    "seed_everything",
    "resolve_device",
    "evaluate_volumes",
]

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda was asked for but no CUDA GPU is available; use device=cpu or auto")
    return torch.device(device)


def lr_factor(step: int, total: int, warmup: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the peak LR at ``step``: linear warm-up, then cosine or poly(0.9) decay to ``min_ratio``."""
    if warmup > 0 and step < warmup:  # 1) warm-up from ~0 to the peak
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))  # 2) decay over the remaining steps
    decay = 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else (1 - progress) ** 0.9
    return min_ratio + (1 - min_ratio) * decay


def evaluate_volumes(
    model: torch.nn.Module,
    volumes: list[Volume],
    preprocess: PreprocessConfig,
    class_names: list[str],
    hd95: bool = False,
    bf16: bool = False,
    progress: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Segment and score whole volumes: per-case rows and the summary (see :mod:`emfformer.metrics`)."""
    model.eval()
    rows = []
    for vol in tqdm(volumes, desc="evaluate", disable=not progress, leave=False):
        pred, _ = predict_volume(model, vol.image, preprocess, bf16=bf16)
        row = case_metrics(pred, vol.label, len(class_names), vol.spacing, hd95=hd95)
        rows.append({"case_id": vol.case_id, **row})
    return rows, summarize(rows, class_names)


def train_one_epoch(
    model: torch.nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loss_fn: torch.nn.Module,
    grad_clip: float = 1.0,
    bf16: bool = False,
    desc: str = "train",
    progress: bool = True,
) -> float | None:
    """One pass over ``loader`` (batches of ``{"image", "label"}``); returns the mean loss (None: no batch).

    Raises:
        FloatingPointError: the loss became NaN or infinite.
    """
    device = next(model.parameters()).device
    model.train()
    losses: list[float] = []
    bar = tqdm(loader, desc=desc, disable=not progress, leave=False)
    for batch in bar:
        x, y = batch["image"].to(device), batch["label"].to(device)
        with autocast(device, bf16):
            loss = loss_fn(model(x).float(), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    return float(np.mean(losses)) if losses else None


def _finite(x: Any) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def _prepare_run_dir(cfg: RunConfig, resume: bool) -> Path:
    run_dir = Path(cfg.out_dir)
    if not resume and (run_dir / "last.pt").exists():
        raise ValueError(
            f"Run folder {run_dir} already holds a training (last.pt). Use --resume to continue it, "
            "or choose another --out."
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return run_dir


def run_training(
    cfg: RunConfig, resume: bool = False, resume_overrides: dict[str, Any] | list[str] | None = None
) -> Path:
    """Train ``cfg.model`` on ``cfg.data``; returns the run folder (best.pt, last.pt, logs, curves).

    With ``resume``, the run folder's ``last.pt`` gives the config (plus ``resume_overrides`` limited to
    ``RESUMABLE_KEYS``, e.g. ``optim.epochs=80``), weights, optimizer and scheduler state, RNG state and
    history.

    Raises:
        ValueError: bad config, an occupied run folder without ``resume``, a resume override that would
            change the model/data/schedule, or a loss that became NaN/inf.
    """
    threads = torch.get_num_threads()
    try:
        return _train(cfg, resume, resume_overrides)
    finally:
        torch.set_num_threads(threads)  # cfg.threads applies to this run only, not to the caller


def _train(cfg: RunConfig, resume: bool, resume_overrides: dict[str, Any] | list[str] | None) -> Path:
    state = None
    if resume:
        out_dir = cfg.out_dir
        overrides = (
            parse_overrides(resume_overrides) if isinstance(resume_overrides, list) else resume_overrides
        )
        bad = sorted(set(overrides or {}) - set(RESUMABLE_KEYS))
        if bad:
            raise ValueError(
                f"Cannot change {bad} when resuming; only {', '.join(RESUMABLE_KEYS)} may change"
            )
        state = load_checkpoint(Path(out_dir) / "last.pt")
        cfg = config_from_dict(state["config"], overrides)
        cfg.out_dir = out_dir  # the folder may have been moved since
    run_dir = _prepare_run_dir(cfg, resume)
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)

    # 1) data: cases, preprocessed slices (cached), validation volumes
    info = load_dataset(cfg.data, progress=cfg.progress)
    splits_file = run_dir / "splits.json"
    train_cases = select_cases(info, cfg.data, "train", splits_file, cfg.seed)
    val_cases = select_cases(info, cfg.data, "val", splits_file, cfg.seed)
    pre = PreprocessConfig(size=cfg.data.size, mode=cfg.data.mode, slice_axis=cfg.data.slice_axis)
    cache = Path(cfg.data.cache_dir) if cfg.data.cache_dir else default_cache_dir() / "slices"
    arrays = build_slice_cache(train_cases, pre, cache, progress=cfg.progress)
    transform = train_transforms(pre.size, cfg.seed) if cfg.data.augment else None
    dataset = SliceDataset(arrays, transform, keep_empty=cfg.data.keep_empty, seed=cfg.seed)
    val_volumes = [load_volume(c) for c in val_cases]
    class_names = list(info.class_names)
    log.info("train: %d cases / %d slices, val: %d volumes", len(train_cases), len(dataset), len(val_volumes))

    # 2) model, optimizer, schedule
    model_kwargs = {
        "in_channels": 1,
        "num_classes": len(class_names),
        **size_kwargs(cfg.model.name, cfg.data.size),
        **cfg.model.kwargs,
    }
    model = create_model(cfg.model.name, **model_kwargs).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    steps_per_epoch = max(1, len(dataset) // cfg.optim.batch_size)
    total_steps = steps_per_epoch * cfg.optim.epochs
    warmup = int(round(cfg.optim.warmup_epochs * steps_per_epoch))
    min_ratio = min(1.0, cfg.optim.min_lr / cfg.optim.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, warmup, cfg.optim.schedule, min_ratio)
    )
    loss_fn = SegLoss()
    history: list[dict[str, Any]] = []
    best, start_epoch = -1.0, 1
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        history, best, start_epoch = state["history"], state["best_metric"], state["epoch"] + 1
        log.info("resumed from %s at epoch %d", run_dir / "last.pt", state["epoch"])

    base_state = {
        "model_name": cfg.model.name,
        "model_kwargs": model_kwargs,
        "preprocess": pre.to_dict(),
        "class_names": class_names,
        "dataset": info.name,
        "config": cfg.to_dict(),
        "seed": cfg.seed,
    }
    generator = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(start_epoch, cfg.optim.epochs + 1):
        # 3) one pass over the training slices
        generator.manual_seed(cfg.seed * 100_003 + epoch)  # the epoch's order does not depend on resume
        dataset.set_epoch(epoch)
        if transform is not None:
            transform.set_random_state(cfg.seed * 100_003 + epoch)
        loader = DataLoader(
            dataset,
            batch_size=cfg.optim.batch_size,
            shuffle=True,
            drop_last=len(dataset) > cfg.optim.batch_size,  # fewer slices than a batch: one smaller batch
            generator=generator,
        )
        t0 = time.perf_counter()
        try:
            train_loss = train_one_epoch(
                model, loader, optimizer, scheduler, loss_fn, cfg.optim.grad_clip, cfg.bf16,
                desc=f"epoch {epoch}/{cfg.optim.epochs}", progress=cfg.progress,
            )  # fmt: skip
        except FloatingPointError as exc:
            raise ValueError(
                f"{exc} at epoch {epoch}: training diverged. Lower optim.lr (now {cfg.optim.lr}) or turn off "
                f"bf16; {run_dir / 'last.pt'} holds the last good epoch."
            ) from exc
        row: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": train_loss,
            "lr": optimizer.param_groups[0]["lr"],
            "train_seconds": round(time.perf_counter() - t0, 2),
            "val_dice_fg": None,
            "val_miou_fg": None,
        }
        # 4) validation on whole volumes, checkpoints
        if epoch % cfg.val_every == 0 or epoch == cfg.optim.epochs:
            _, summary = evaluate_volumes(model, val_volumes, pre, class_names, bf16=cfg.bf16)
            row["val_dice_fg"] = _finite(summary["mean_dice_fg"])
            row["val_miou_fg"] = _finite(summary["miou_fg"])
            for name, m in summary["per_class"].items():
                row[f"val_dice_{name}"] = _finite(m["dice"])
        history.append(row)
        metric = row["val_miou_fg"]
        improved = metric is not None and metric > best
        best = metric if improved else best
        ckpt = {
            **base_state,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
            "epoch": epoch,
            "metric": metric,
            "best_metric": best,
            "history": history,
        }
        if improved:
            save_checkpoint(run_dir / "best.pt", ckpt)
        save_checkpoint(run_dir / "last.pt", ckpt)
        write_history(run_dir, history)
        log.info(
            "epoch %d: loss %.4f, val Dice %s, val mIoU %s%s (%.1fs)",
            epoch,
            row["train_loss"] or float("nan"),
            row["val_dice_fg"],
            row["val_miou_fg"],
            " (best)" if improved else "",
            row["train_seconds"],
        )
    if not (run_dir / "best.pt").exists():  # no validation ever gave a finite metric
        save_checkpoint(run_dir / "best.pt", load_checkpoint(run_dir / "last.pt"))
    return run_dir
