"""Random training patches from the preprocessed store, a third of them forced onto foreground.

Each item of an epoch is one slice (with its 2.5D context) of one case. Its patch of ``size x size``
is drawn as nnU-Net draws them: at least a third of the items of every epoch (exactly
``ceil(n / 3)``, at random positions) are *foreground* items, centred anywhere around a random voxel
of a random foreground class of the case, so that the voxel lies somewhere inside the patch; the
others lie at a random position in the slice. In pad mode the window may reach ``size // 4`` beyond
the padded slice on every side, so the anatomy sits anywhere in the patch and partly outside it,
never always in the centre; what lies outside is the padding value. Resize-mode slices are the patch.

Samples are ``{"image": float32 (C x context, size, size), "label": int64 (size, size)}``; every random
draw comes from ``(seed, epoch, item)``, so an epoch is the same with any number of loader workers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .preprocess import context_rows
from .store import StoredCase

__all__ = ["PatchDataset", "FOREGROUND_FRACTION"]

FOREGROUND_FRACTION = 1 / 3  # nnU-Net's oversample_foreground_percent
Sample = dict[str, torch.Tensor]


def _window(extent: int, size: int, margin: int, rng: np.random.Generator, inside: int | None) -> int:
    """Start of a window of ``size`` on an axis of ``extent`` (may be negative or reach past the end by
    ``margin``); with ``inside``, the window contains that position."""
    lo, hi = min(0, extent - size) - margin, max(0, extent - size) + margin
    if inside is not None:
        lo, hi = max(lo, inside - size + 1), min(hi, inside)
    return int(rng.integers(lo, hi + 1))


def _crop(array: np.ndarray, top: int, left: int, size: int, fill: np.ndarray | float) -> np.ndarray:
    """(..., H, W) -> (..., size, size) window at (top, left), ``fill`` outside the array."""
    h, w = array.shape[-2:]
    out = np.empty(array.shape[:-2] + (size, size), dtype=np.float32)
    out[...] = fill
    r0, r1, c0, c1 = max(top, 0), min(top + size, h), max(left, 0), min(left + size, w)
    if r0 < r1 and c0 < c1:
        out[..., r0 - top : r1 - top, c0 - left : c1 - left] = array[..., r0:r1, c0:c1]
    return out


class PatchDataset(Dataset):
    """Training patches of the stored cases (see the module docstring).

    Args:
        cases: from `emfformer.data.store.preprocess_cases`.
        size: patch side.
        context: 2.5D context (odd), as in `PreprocessConfig.context`.
        transform: callable on a sample dict (e.g. `train_transforms`), ``None`` for no augmentation.
        keep_empty: fraction of all-background slices kept per epoch.
        seed: seed of every draw.
        margin: how far a window may reach past the padded slice (default ``size // 4``; 0 in resize mode).
        foreground_fraction: share of items forced onto foreground (at least this many, rounded up).
    """

    def __init__(
        self,
        cases: Sequence[StoredCase],
        size: int,
        context: int = 1,
        transform: Callable[[Sample], Sample] | None = None,
        keep_empty: float = 1.0,
        seed: int = 0,
        margin: int | None = None,
        foreground_fraction: float = FOREGROUND_FRACTION,
    ) -> None:
        if not 0.0 <= keep_empty <= 1.0:
            raise ValueError(f"keep_empty must be a fraction in [0, 1], got {keep_empty}.")
        if not 0.0 <= foreground_fraction <= 1.0:
            raise ValueError(f"foreground_fraction must be in [0, 1], got {foreground_fraction}.")
        if not cases:
            raise ValueError("PatchDataset needs at least one case.")
        self.cases, self.size, self.context, self.transform = list(cases), int(size), int(context), transform
        self.keep_empty, self.seed, self.foreground_fraction = keep_empty, int(seed), foreground_fraction
        self.margin = self.size // 4 if margin is None else int(margin)
        rows = [(k, s) for k, c in enumerate(self.cases) for s in range(c.shape[0])]
        self._rows = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
        nonempty = {(k, s) for k, c in enumerate(self.cases) for s in c.nonempty}
        self._is_fg = np.array([(k, s) in nonempty for k, s in rows], dtype=bool)
        self._fg_cache: dict[int, np.ndarray] = {}
        self.epoch = 0
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Draw the epoch's kept empty slices and its foreground items from ``(seed, epoch)``."""
        self.epoch = int(epoch)
        rng = np.random.default_rng([self.seed, self.epoch])
        empty = np.flatnonzero(~self._is_fg)
        kept = rng.choice(empty, size=int(round(self.keep_empty * len(empty))), replace=False)
        self.indices = np.sort(np.concatenate([np.flatnonzero(self._is_fg), kept])).astype(np.int64)
        n = len(self.indices)
        self.forced = np.zeros(n, dtype=bool)
        self.forced[rng.choice(n, size=min(n, math.ceil(self.foreground_fraction * n)), replace=False)] = True

    def __len__(self) -> int:
        return len(self.indices)

    def _foreground(self, k: int) -> np.ndarray:
        if k not in self._fg_cache:
            self._fg_cache[k] = np.load(self.cases[k].fg)
        return self._fg_cache[k]

    def __getitem__(self, i: int) -> Sample:
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        k, s = (int(v) for v in self._rows[self.indices[i]])
        case = self.cases[k]
        target = None
        fg = self._foreground(k) if self.forced[i] else None
        if fg is not None and len(fg):
            cls = rng.choice(np.unique(fg[:, 0]))  # a random present class, then a voxel of it
            pick = fg[fg[:, 0] == cls][rng.integers(int((fg[:, 0] == cls).sum()))]
            s, target = int(pick[1]), (int(pick[2]), int(pick[3]))
        _, _, h, w = case.shape
        top = _window(h, self.size, self.margin, rng, None if target is None else target[0])
        left = _window(w, self.size, self.margin, rng, None if target is None else target[1])
        planes = case.planes()[context_rows(s, case.shape[0], self.context)]  # (context, C, H, W)
        label = case.labels()[s]
        stacked = np.ascontiguousarray(planes.transpose(1, 0, 2, 3)).reshape(-1, h, w)  # channel-major
        fill = np.repeat(np.asarray(case.pad_value, np.float32), self.context)[:, None, None]
        sample = {
            "image": torch.from_numpy(_crop(stacked, top, left, self.size, fill)),
            "label": torch.from_numpy(_crop(label, top, left, self.size, 0).astype(np.int64)),
        }
        return self.transform(sample) if self.transform is not None else sample
