"""Training: ``run_training(cfg)`` trains any registered model on 2D slices and validates on volumes.

One epoch = one pass over the (augmented) training slices; validation segments every validation
volume slice by slice and scores the reassembled 3D volume (Dice / IoU, no HD95 for speed). The best
checkpoint is the one with the highest foreground mIoU on validation (the paper's metric).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from emfformer.progress import tqdm

from ..guard import check_run_dir
from ..io import (
    RunLock,
    folder_listing,
    remove_failed_start,
    remove_stale_temp_files,
)
from ..metrics import summarize
from ..models import build_model
from . import distributed
from .checkpoint import copy_checkpoint, load_checkpoint, save_checkpoint
from .config import RESUMABLE_KEYS, RunConfig, config_from_dict, parse_overrides
from .history import write_history
from .inference import autocast, evaluate_volumes, resolve_device
from .losses import SegLoss
from .schedule import build_optimizer
from .train_data import RunData, load_data

__all__ = [
    "run_training",
    "train_one_epoch",
    "seed_everything",
]

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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


def _warn_if_busy(threads: int) -> None:
    """Warn when other processes already load the CPU: several multi-threaded jobs on few cores spin
    against each other (measured here: a 2-thread training next to another one ran about 25x slower)."""
    if not hasattr(os, "getloadavg"):
        return
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load + threads > cores + 0.5:
        log.warning(
            "the CPU is busy (load %.1f on %d cores) and this run uses %d threads: it may run many times "
            "slower. Give each concurrent job --threads 1 (or fewer threads than free cores).",
            load,
            cores,
            threads,
        )


def _rng_state() -> dict[str, Any]:
    """torch, numpy and python RNG states as tensors and plain values (checkpoints load weights-only)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]
    return {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}


def _as_tuples(x: Any) -> Any:
    """random.setstate needs the nested tuples that a round trip through lists may have turned into lists."""
    return tuple(_as_tuples(v) for v in x) if isinstance(x, list | tuple) else x


def _finite(x: Any) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def _check_run_dir(cfg: RunConfig, resume: bool) -> None:
    """Refuse, before anything is written, a folder holding a training (without resume) or run files
    that train did not write (guard.py's never-destroy rule)."""
    run_dir = Path(cfg.out_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--out {run_dir} is a file; give a folder for the run")
    if not resume and (run_dir / "last.pt").exists():
        raise ValueError(
            f"Run folder {run_dir} already holds a training (last.pt). Use --resume to continue it, "
            "or choose another --out."
        )
    check_run_dir(run_dir, resume)


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
    d = distributed.from_env()  # several processes under torchrun, else one
    created = not Path(cfg.out_dir).exists()  # a failed start removes the folder it created, if empty
    try:
        # a second training into the same folder is refused; under torchrun rank 0 holds the lock
        with RunLock(cfg.out_dir) if d.is_main else contextlib.nullcontext():
            if d.is_main:
                remove_stale_temp_files(cfg.out_dir)  # left by a process killed while writing
            state = None
            if resume:
                cfg, state = resume_config(cfg.out_dir, resume_overrides)
            if d.is_main:
                _check_run_dir(cfg, resume=state is not None)  # before anything is written
            before = folder_listing(cfg.out_dir)
            try:
                return _train(cfg, state, d)
            except BaseException:
                if d.is_main and state is None:
                    remove_failed_start(Path(cfg.out_dir), before)
                raise
    except BaseException:
        if created and d.is_main:
            with contextlib.suppress(OSError):
                Path(cfg.out_dir).rmdir()
        raise
    finally:
        distributed.teardown(d)
        torch.set_num_threads(threads)  # cfg.threads applies to this run only, not to the caller


def resume_config(
    out_dir: str, overrides: dict[str, Any] | list[str] | None
) -> tuple[RunConfig, dict[str, Any]]:
    """The config and state of ``out_dir/last.pt``, with ``overrides`` limited to ``RESUMABLE_KEYS``."""
    overrides = parse_overrides(overrides) if isinstance(overrides, list) else overrides
    bad = sorted(set(overrides or {}) - set(RESUMABLE_KEYS))
    if bad:
        raise ValueError(f"Cannot change {bad} when resuming; only {', '.join(RESUMABLE_KEYS)} may change")
    path = Path(out_dir) / "last.pt"
    state = load_checkpoint(path)
    missing = [k for k in ("config", "epoch", "optimizer", "scheduler", "rng", "history") if k not in state]
    if missing:  # a pack, a stripped best.pt or another tool's file: nothing to continue from
        raise ValueError(
            f"{path} is not a training state (it has no {', '.join(missing)}): --resume continues a run "
            "from the last.pt that `emfformer train` wrote. Start a new run in another --out folder."
        )
    cfg = config_from_dict(state["config"], overrides)
    cfg.out_dir = out_dir  # the folder may have been moved since
    if cfg.optim.epochs <= state["epoch"]:
        raise ValueError(
            f"{out_dir} has already trained {state['epoch']} epochs; --resume needs --epochs above that "
            f"(got {cfg.optim.epochs}). Nothing was changed."
        )
    return cfg, state


def _restore(state: dict[str, Any], model, optimizer, scheduler) -> tuple[list[dict[str, Any]], float, int]:
    """Put a last.pt back: weights, optimizer, schedule, RNG; returns (history, best metric, next epoch)."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    name, keys, pos, has_gauss, cached = state["rng"]["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate(_as_tuples(state["rng"]["python"]))
    return state["history"], state["best_metric"], state["epoch"] + 1


def _epoch_loader(
    data: RunData, cfg: RunConfig, epoch: int, generator: torch.Generator, d: distributed.Dist
) -> DataLoader:
    """The epoch's shuffled batches; order, empty-slice subset and augmentation depend on (seed, epoch)."""
    generator.manual_seed(cfg.seed * 100_003 + epoch)  # the epoch's order does not depend on resume
    data.dataset.set_epoch(epoch)
    if data.transform is not None:
        data.transform.set_random_state(cfg.seed * 100_003 + epoch)
    n = len(data.dataset)
    # this rank's part of each global batch; fewer slices than a batch: one smaller batch
    batches = distributed.rank_batches(n, cfg.optim.batch_size, generator, n > cfg.optim.batch_size, d)
    workers = cfg.data.num_workers
    return DataLoader(
        data.dataset, batch_sampler=batches, num_workers=workers, generator=generator,
        worker_init_fn=_seed_worker if workers else None,
    )  # fmt: skip


def _seed_worker(worker_id: int) -> None:
    """Give each DataLoader worker its own augmentation stream (torch seeds it from the epoch's generator)."""
    info = torch.utils.data.get_worker_info()
    transform = getattr(info.dataset, "transform", None)
    if transform is not None and hasattr(transform, "set_random_state"):
        transform.set_random_state(info.seed % 2**32)


def _validate(
    model: torch.nn.Module, data: RunData, cfg: RunConfig, epoch: int, d: distributed.Dist
) -> dict[str, Any]:
    """Validation metrics of the epoch on whole volumes (None when there is no validation this epoch).

    Under torchrun each rank scores its share of the volumes and the per-case rows are gathered.
    """
    row: dict[str, Any] = {"val_dice_fg": None, "val_miou_fg": None}
    if data.val_volumes and (epoch % cfg.val_every == 0 or epoch == cfg.optim.epochs):
        rows, _ = evaluate_volumes(
            [(model, data.preprocess)],
            distributed.shard(data.val_volumes, d),
            data.class_names,
            bf16=cfg.bf16,
        )
        summary = summarize(distributed.gather(rows, d), data.class_names)
        row["val_dice_fg"] = _finite(summary["mean_dice_fg"])
        row["val_miou_fg"] = _finite(summary["miou_fg"])
        for name, m in summary["per_class"].items():
            row[f"val_dice_{name}"] = _finite(m["dice"])
    return row


def _describe(cfg: RunConfig, data: RunData) -> dict[str, Any]:
    """What every checkpoint of the run carries so that predict/evaluate can rebuild the model alone."""
    pre = data.preprocess
    # in_channels last: the network is built with channels x context inputs (as _build_model does)
    model_kwargs = {
        "num_classes": len(data.class_names),
        **cfg.model.kwargs,
        "in_channels": pre.context * pre.channels,
    }
    if cfg.model.name == "unetr":  # build_model sizes UNETR to the input side
        model_kwargs.setdefault("img_size", data.preprocess.size)
    return {
        "model_name": cfg.model.name, "model_kwargs": model_kwargs, "preprocess": data.preprocess.to_dict(),
        "class_names": data.class_names, "dataset": data.name, "splits": data.splits, "plan": data.plan,
        "config": cfg.to_dict(), "seed": cfg.seed,
    }  # fmt: skip


def _build_model(cfg: RunConfig, data: RunData, device: torch.device) -> torch.nn.Module:
    try:
        pre = data.preprocess
        model = build_model(
            cfg.model.name, pre.size, pre.context * pre.channels, len(data.class_names), **cfg.model.kwargs
        )
    except TypeError as exc:  # an unknown constructor argument in model.kwargs
        raise ValueError(f"model.kwargs {cfg.model.kwargs} do not fit model {cfg.model.name}: {exc}") from exc
    return model.to(device)


def _start(
    cfg: RunConfig, state: dict[str, Any] | None, d: distributed.Dist
) -> tuple[Path, torch.device, RunData]:
    """Device and process group, run folder, seeds and threads, data (rank 0 first: it writes the split
    and the slice cache that the other ranks then read)."""
    device = distributed.setup(d, resolve_device(cfg.device))
    run_dir = Path(cfg.out_dir)
    if d.is_main:
        run_dir.mkdir(
            parents=True, exist_ok=True
        )  # config.yaml and plans.json follow once the data is checked
    else:
        logging.getLogger("emfformer").setLevel(logging.WARNING)  # one log, from rank 0
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if d.is_main:
        _warn_if_busy(torch.get_num_threads() * d.world_size)
    data = None
    for rank0_turn in (True, False):
        if d.is_main == rank0_turn:
            data = load_data(cfg, run_dir, d.is_main)
        distributed.barrier(d)
    assert data is not None
    return run_dir, device, data


def _train(cfg: RunConfig, state: dict[str, Any] | None, d: distributed.Dist) -> Path:
    # 1) process group, run folder, data
    run_dir, device, data = _start(cfg, state, d)
    # 2) model, optimizer, schedule (restored on resume); DistributedDataParallel under torchrun
    model = _build_model(cfg, data, device)
    optimizer, scheduler = build_optimizer(model, cfg.optim, len(data.dataset))
    history, best, start_epoch = [], -1.0, 1
    if state is not None:
        history, best, start_epoch = _restore(state, model, optimizer, scheduler)
        log.info("resumed from %s at epoch %d", run_dir / "last.pt", state["epoch"])
    net = distributed.wrap(model, d, device)
    base_state = _describe(cfg, data)
    loss_fn, generator = SegLoss(distributed=d.enabled), torch.Generator()
    for epoch in range(start_epoch, cfg.optim.epochs + 1):
        # 3) one pass over the training slices
        t0 = time.perf_counter()
        try:
            train_loss = train_one_epoch(
                net, _epoch_loader(data, cfg, epoch, generator, d), optimizer, scheduler, loss_fn,
                cfg.optim.grad_clip, cfg.bf16, desc=f"epoch {epoch}/{cfg.optim.epochs}",
                progress=cfg.progress and d.is_main,
            )  # fmt: skip
        except FloatingPointError as exc:
            raise ValueError(
                f"{exc} at epoch {epoch}: training diverged. Lower optim.lr (now {cfg.optim.lr}) or turn off "
                f"bf16; {run_dir / 'last.pt'} holds the last good epoch."
            ) from exc
        row = {"epoch": epoch, "train_loss": distributed.mean(train_loss, d), "lr": optimizer.param_groups[0]["lr"],
               "train_seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip
        # 4) validation on whole volumes, checkpoints and history (rank 0)
        row.update(_validate(model, data, cfg, epoch, d))
        history.append(row)
        improved = row["val_miou_fg"] is not None and row["val_miou_fg"] > best
        best = row["val_miou_fg"] if improved else best
        if d.is_main:
            ckpt = {**base_state, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "rng": _rng_state(), "epoch": epoch,
                    "metric": row["val_miou_fg"], "best_metric": best, "history": history}  # fmt: skip
            if improved:  # best first (a crash in between leaves the older last.pt to resume from)
                save_checkpoint(run_dir / "best.pt", ckpt)
                copy_checkpoint(run_dir / "best.pt", run_dir / "last.pt")  # the same state: bytes, no pickle
            else:
                save_checkpoint(run_dir / "last.pt", ckpt)
            write_history(run_dir, history)
        log.info("epoch %d: loss %.4f, val Dice %s, val mIoU %s%s (%.1fs)", epoch, row["train_loss"] or float("nan"),
                 row["val_dice_fg"], row["val_miou_fg"], " (best)" if improved else "", row["train_seconds"])  # fmt: skip
    if d.is_main and not (run_dir / "best.pt").exists():  # no validation (fold -1): the last epoch
        copy_checkpoint(run_dir / "last.pt", run_dir / "best.pt")
    distributed.barrier(d)  # no rank returns before the run folder is complete
    return run_dir
