"""Per-channel intensity normalisation, as nnU-Net plans it (``plans.json`` ``normalization``).

Schemes, one dict per input channel:

* ``{"scheme": "ct", "lower": a, "upper": b, "mean": m, "std": s}``: clip to the dataset's foreground
  0.5-99.5 percentiles (HU), then subtract the dataset's foreground mean and divide by its std.
  Every CT scan is normalised with the same numbers, so a HU value means the same everywhere.
* ``{"scheme": "zscore", "clip": [0.5, 99.5], "use_mask": False}``: per image, clip to the image's own
  percentiles, then z-score (MRI and other images without absolute units). With ``use_mask`` the
  statistics are those of the nonzero voxels and the zero background stays 0 (nnU-Net's rule for
  datasets whose nonzero region crops the image by a quarter or more, e.g. skull-stripped brains).
* ``{"scheme": "rescale"}``: per image, to [0, 1]; ``{"scheme": "rgb"}``: divided by 255;
  ``{"scheme": "none"}``: as stored.

``None`` (checkpoints from before plans) is the per-volume percentile z-score of every channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .cases import DataError

__all__ = ["SCHEMES", "check_scheme", "normalize_channels", "zscore"]

SCHEMES = ("ct", "zscore", "rescale", "rgb", "none")


def check_scheme(d: Any, where: str) -> dict[str, Any]:
    """Validate one channel's scheme dict; raises ValueError naming ``where``."""
    if not isinstance(d, dict) or d.get("scheme") not in SCHEMES:
        raise ValueError(f"{where} must be a dict with scheme one of {SCHEMES}, got {d!r}")
    if d["scheme"] == "ct":
        try:
            lo, hi, std = float(d["lower"]), float(d["upper"]), float(d["std"])
            float(d["mean"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"{where}: a ct scheme needs numbers lower, upper, mean, std; got {d!r}"
            ) from None
        if not (lo < hi and std > 0):
            raise ValueError(f"{where}: a ct scheme needs lower < upper and std > 0, got {d!r}")
    return d


def zscore(x: np.ndarray, clip: Sequence[float] = (0.5, 99.5), mask: np.ndarray | None = None) -> np.ndarray:
    """Robust z-score of one channel: clip to its percentiles, standardise with the clipped statistics.

    ``mask``: statistics over these voxels only, and voxels outside it set to 0. A constant channel
    becomes all zeros instead of NaN.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.size == 0:
        raise DataError("Cannot normalise an empty image.")
    if not np.isfinite(x).all():
        raise DataError("Image contains NaN or inf values; fix or mask the file before training.")
    values = x[mask] if mask is not None and mask.any() else x
    lo, hi = np.percentile(values, tuple(clip))
    clipped = np.clip(values, lo, hi)
    mean, std = float(clipped.mean(dtype=np.float64)), float(clipped.std(dtype=np.float64))
    if std <= 1e-6 * max(1.0, abs(mean)):
        return np.zeros_like(x)
    out = ((np.clip(x, lo, hi) - mean) / std).astype(np.float32)
    if mask is not None and mask.any():
        out[~mask] = 0.0
    return out


def _one(x: np.ndarray, d: dict[str, Any] | None, clip: Sequence[float]) -> np.ndarray:
    if d is None:
        return zscore(x, clip)
    scheme = d["scheme"]
    if scheme == "ct":
        return ((np.clip(x, d["lower"], d["upper"]) - d["mean"]) / d["std"]).astype(np.float32)
    if scheme == "zscore":
        return zscore(x, d.get("clip", clip), (x != 0) if d.get("use_mask") else None)
    if scheme == "rescale":
        lo, hi = float(x.min()), float(x.max())
        return np.zeros_like(x, dtype=np.float32) if hi <= lo else ((x - lo) / (hi - lo)).astype(np.float32)
    if scheme == "rgb":
        return (x / 255.0).astype(np.float32)
    return x.astype(np.float32)


def normalize_channels(
    image: np.ndarray, schemes: Sequence[dict[str, Any]] | None, clip: Sequence[float] = (0.5, 99.5)
) -> np.ndarray:
    """Normalise a (X, Y, Z) or channels-last (X, Y, Z, C) image channel by channel (float32, same shape).

    Raises:
        DataError: the image holds NaN/inf, or has another number of channels than ``schemes``.
    """
    x = np.asarray(image, dtype=np.float32)
    chans = x[..., None] if x.ndim == 3 else x
    n = chans.shape[-1]
    if schemes is not None and len(schemes) != n:
        raise DataError(
            f"the image has {n} channel(s) but the model was planned for {len(schemes)}; give every channel "
            "file (_0000, _0001, ...) the model was trained with"
        )
    if not np.isfinite(chans).all():
        raise DataError("Image contains NaN or inf values; fix or mask the file before training.")
    out = np.stack([_one(chans[..., c], None if schemes is None else schemes[c], clip) for c in range(n)], -1)
    return out[..., 0] if x.ndim == 3 else out
