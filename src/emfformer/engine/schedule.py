"""Optimizer and learning-rate schedule: AdamW, linear warm-up, then cosine or poly decay, per step."""

from __future__ import annotations

import math

import torch

from .config import OptimConfig

__all__ = ["build_optimizer", "lr_factor"]


def lr_factor(step: int, total: int, warmup: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the peak LR at ``step``: linear warm-up, then cosine or poly(0.9) decay to ``min_ratio``."""
    if warmup > 0 and step < warmup:  # 1) warm-up from ~0 to the peak
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))  # 2) decay over the remaining steps
    decay = 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else (1 - progress) ** 0.9
    return min_ratio + (1 - min_ratio) * decay


def build_optimizer(
    model: torch.nn.Module, cfg: OptimConfig, n_slices: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW and its per-step schedule (linear warm-up, then cosine or poly decay)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, n_slices // cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    min_ratio = min(1.0, cfg.min_lr / cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, warmup, cfg.schedule, min_ratio)
    )
    return optimizer, scheduler
