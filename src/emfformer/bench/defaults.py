"""The benchmark's default model lists, sizes and engine names: plain data, importable without torch.

:mod:`emfformer.bench.args` builds the ``emfformer bench`` flags from these, so that ``emfformer --help``
and every other command start without loading the benchmark (torch, matplotlib).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DEFAULT_MODELS", "DEFAULT_SCALING_SIZES", "ENGINES", "FLOAT32_ENGINES", "OURS", "OURS_RECOMPUTE", "QUICK", "TWIN", "TWIN_SDPA",
]  # fmt: skip

OURS = "emf_former_s"
TWIN = "emf_former_s_twin"
# EMF-former-S recomputing the cheap parts of its blocks in backward: the memory-friendly training mode
OURS_RECOMPUTE = "emf_former_s:recompute=cheap"
TWIN_SDPA = "emf_former_s_twin_sdpa"  # the ordinary transformer with PyTorch's memory-efficient attention

DEFAULT_MODELS: tuple[str, ...] = (
    "emf_former_t",
    OURS,
    "emf_former_b",
    "emf_former_s:attention=mhsa",  # ablations of EMF-former-S, one switch each
    "emf_former_s:heads=parallel",
    "emf_former_s:shuffle=false",
    "emf_former_s:conv=plain",
    "emf_former_s:active_heads=(2,3)",
    OURS_RECOMPUTE,
    "emf_former_s:recompute=all",
    TWIN,
    TWIN_SDPA,
    "unext",  # the lightweight peers (models/unext.py, ege_unet.py, malunet.py)
    "ege_unet",
    "malunet",
    "unet",
    "unetr",
    "swin_unetr",
)
DEFAULT_SCALING_SIZES: tuple[int, ...] = (128, 224, 320, 448, 512, 640, 768, 1024)
# --quick: tiny settings for smoke runs (explicit flags still win)
QUICK: dict[str, Any] = dict(
    size=64, batch=4, train_batch=2, repeats=2, scaling_sizes=(64, 128), matmul_seconds=0.5, time_budget_s=2.0
)
ENGINES = (
    "eager",
    "fused",
    "channels_last",
    "bf16",
    "compile",
    "onnxruntime",
    "onnxruntime_int8",
)  # see emfformer.bench.engines
# the engines whose outputs equal the eager network's up to float32 rounding (the others: bf16, int8)
FLOAT32_ENGINES = ("eager", "fused", "channels_last", "compile", "onnxruntime")
