"""All 2D slices of a list of cases in contiguous arrays, an on-disk cache of them, and the Dataset.

`build_slice_cache` reads every case once with `load_volume`, runs `volume_to_slices` and stacks the
result; with a ``cache_dir`` it stores an ``.npz`` whose name is a hash of the case ids, the size and
mtime of every file and the preprocessing config, so a second run does not touch NIfTI at all and
any change to a file or to the config builds a new cache.

`SliceDataset` serves ``{"image": (1, H, W) float32, "label": (H, W) int64}`` samples, optionally
augmented by `train_transforms` (MONAI dictionary transforms, run per sample on the CPU).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import monai.transforms as mt
import numpy as np
import torch
from monai.data import get_track_meta, set_track_meta
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from emfformer.data.cases import Case, DataError, load_volume
from emfformer.data.geometry import to_model_grid
from emfformer.data.preprocess import PreprocessConfig, SliceInfo, volume_to_slices
from emfformer.io import atomic_write

__all__ = [
    "SliceArrays",
    "SliceDataset",
    "SliceAugment",
    "build_slice_cache",
    "train_transforms",
]

logger = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the cache layout or the preprocessing code changes meaning
Sample = dict[str, torch.Tensor]


@dataclass
class SliceArrays:
    """Every slice of every case, stacked. Slices of one case are contiguous and in volume order.

    Attributes:
        images: (N, 1, size, size) float16 or float32 normalised slices.
        labels: (N, size, size) uint8 class indices, or ``None`` when the cases have no labels.
        case_index: (N,) int32 index into ``case_ids`` of each slice.
        slice_index: (N,) int32 position of each slice along the sliced axis of its volume.
        case_ids: the case ids, in the order of the input cases.
        infos: per case, the `SliceInfo` that maps its slices back onto its volume.
    """

    images: np.ndarray
    labels: np.ndarray | None
    case_index: np.ndarray
    slice_index: np.ndarray
    case_ids: tuple[str, ...]
    infos: tuple[SliceInfo, ...]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def case_rows(self, i: int) -> np.ndarray:
        """Row indices (into ``images``/``labels``) of case ``i``'s slices, in slice order."""
        return np.flatnonzero(self.case_index == i)


def _file_signature(path: Path | None) -> list[Any] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError as exc:
        raise DataError(f"Cannot read {path}: {exc}. Check the dataset folder.") from exc
    return [str(Path(path).resolve()), st.st_size, st.st_mtime_ns]


def cache_key(cases: Sequence[Case], cfg: PreprocessConfig, dtype: np.dtype) -> str:
    """Hash of everything the cached arrays depend on (ids, file sizes + mtimes, config, dtype)."""
    payload = {
        "version": CACHE_VERSION,
        "cfg": cfg.to_dict(),
        "dtype": np.dtype(dtype).name,
        "cases": [[c.case_id, _file_signature(Path(c.image)), _file_signature(c.label)] for c in cases],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def _save_npz(path: Path, arrays: SliceArrays) -> None:
    """Write the arrays as one uncompressed ``.npz``, atomically."""
    data: dict[str, np.ndarray] = {
        "images": arrays.images,
        "case_index": arrays.case_index,
        "slice_index": arrays.slice_index,
        "case_ids": np.array(arrays.case_ids, dtype=str),
        "infos": np.array(json.dumps([info.to_dict() for info in arrays.infos])),
    }
    if arrays.labels is not None:
        data["labels"] = arrays.labels

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **data)  # uncompressed: loads at disk speed

    atomic_write(path, write)


def _load_npz(path: Path) -> SliceArrays:
    with np.load(path, allow_pickle=False) as z:
        infos = tuple(SliceInfo.from_dict(d) for d in json.loads(str(z["infos"])))
        labels = z["labels"] if "labels" in z.files else None
        ids = tuple(str(s) for s in z["case_ids"])
        return SliceArrays(z["images"], labels, z["case_index"], z["slice_index"], ids, infos)


def build_slice_cache(
    cases: Sequence[Case],
    cfg: PreprocessConfig,
    cache_dir: Path | None = None,
    progress: bool = True,
    dtype: np.dtype | type = np.float16,
) -> SliceArrays:
    """Load, normalise and slice all cases into one `SliceArrays`, cached on disk if asked.

    Args:
        cases: the cases; either all or none must have labels. Labels must be in 0..255.
        cfg: preprocessing settings.
        cache_dir: folder for ``slices_<hash>.npz``; created if missing. ``None``: no cache.
        progress: show a tqdm progress bar while reading volumes.
        dtype: image dtype, float16 (default, half the memory; z-scored values lose < 1e-3
            relative precision) or float32.

    Returns:
        The stacked slices (N = total number of slices of all cases).

    Raises:
        ValueError: no cases, duplicate case ids or an unsupported dtype.
        DataError: a file is missing/corrupt, labels are mixed/out of range.
    """
    if not cases:
        raise ValueError("build_slice_cache needs at least one case.")
    ids = [c.case_id for c in cases]
    if len(set(ids)) != len(ids):
        raise ValueError("Duplicate case ids: " + ", ".join(sorted({i for i in ids if ids.count(i) > 1})))
    dtype = np.dtype(dtype)
    if dtype not in (np.float16, np.float32):
        raise ValueError(f"dtype must be float16 or float32, got {dtype}.")
    if len({c.label is not None for c in cases}) > 1:
        raise DataError("Some cases have labels and others do not; build labelled and unlabelled sets apart.")

    path = None
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        path = cache_dir / f"slices_{cache_key(cases, cfg, dtype)}.npz"
        if path.is_file():
            try:
                arrays = _load_npz(path)
                logger.info("Loaded %d slices from cache %s", len(arrays), path)
                return arrays
            except Exception as exc:  # corrupt/old file: rebuild and overwrite
                logger.warning("Ignoring unreadable slice cache %s (%s); rebuilding it.", path, exc)

    images, labels, case_index, slice_index, infos = [], [], [], [], []
    for i, case in enumerate(tqdm(cases, desc="Slicing volumes", unit="case", disable=not progress)):
        vol = load_volume(case)
        image, label, _ = to_model_grid(vol.image, vol.affine, cfg.orientation, cfg.spacing, vol.label)
        sl, lab, info = volume_to_slices(image, cfg, label)
        images.append(sl.astype(dtype))
        if lab is not None:
            if lab.size and lab.max() > 255:
                raise DataError(f"Case {case.case_id}: label value {lab.max()} does not fit uint8 (0..255).")
            labels.append(lab.astype(np.uint8))
        case_index.append(np.full(len(sl), i, dtype=np.int32))
        slice_index.append(np.arange(len(sl), dtype=np.int32))
        infos.append(info)
    cat = np.concatenate
    labels_arr = cat(labels) if labels else None
    arrays = SliceArrays(cat(images), labels_arr, cat(case_index), cat(slice_index), tuple(ids), tuple(infos))
    if path is not None:
        _save_npz(path, arrays)
        logger.info("Wrote %d slices to cache %s", len(arrays), path)
    return arrays


class SliceAugment:
    """Per-sample augmentation: a MONAI `Compose` applied to ``{"image", "label"}`` slice samples.

    Takes and returns ``{"image": float32 (1, H, W), "label": int64 (H, W)}`` (the label is optional).
    MONAI metadata tracking is switched off while the transforms run (and restored afterwards): the
    MetaTensor bookkeeping costs more than the resampling itself on 64x64 slices, and nothing here
    needs it. The switch is a MONAI module global, so do not share one instance across threads.
    """

    def __init__(self, transforms: mt.Compose) -> None:
        self.transforms = transforms

    def set_random_state(self, seed: int) -> SliceAugment:
        """Reseed every random transform (deterministic sequence of augmentations from here on)."""
        self.transforms.set_random_state(seed=int(seed) % 2**32)
        return self

    def __call__(self, sample: Sample) -> Sample:
        d: dict[str, Any] = {"image": sample["image"]}
        if "label" in sample:
            d["label"] = sample["label"][None].float()  # MONAI wants channel-first
        prev = get_track_meta()
        set_track_meta(False)
        try:
            d = self.transforms(d)
        finally:
            set_track_meta(prev)
        out = dict(sample)
        out["image"] = torch.as_tensor(d["image"], dtype=torch.float32)
        if "label" in d:
            out["label"] = torch.as_tensor(d["label"])[0].round().long()
        return out


def train_transforms(
    size: int,
    seed: int,
    *,
    affine_prob: float = 0.5,
    rotate_deg: float = 15.0,
    scale: float = 0.15,
    intensity_prob: float = 0.15,
    flip_prob: float = 0.0,
) -> SliceAugment:
    """Training augmentation for (1, size, size) slices, seeded.

    * `RandAffined` (probability ``affine_prob``): rotation in +-``rotate_deg`` and an independent
      scale factor in 1 +- ``scale`` per axis (MONAI draws one factor per axis); image bilinear with
      border padding (edges are background), label nearest with background padding.
    * `RandGaussianNoised` (std 0.1 of the z-scored intensities), `RandScaleIntensityd` (x 0.75..1.25)
      and `RandAdjustContrastd` (gamma 0.7..1.5), each with probability ``intensity_prob``.
    * No flips by default: left and right hippocampus / RV and LV positions are anatomical facts the
      network may use. ``flip_prob > 0`` flips each in-plane axis with that probability (nnU-Net's
      mirroring; pairs with mirror test-time augmentation).

    ``affine_prob`` is 0.5 rather than 1 for speed (see docs): the affine resampling is the costly part.

    Args:
        size: slice side (the affine output keeps ``size x size``; its base grid is cached).
        seed: seed of all random draws. Other arguments: see above.

    Returns:
        A `SliceAugment` callable on `SliceDataset` samples.
    """
    for name, p in dict(affine_prob=affine_prob, intensity_prob=intensity_prob, flip_prob=flip_prob).items():
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {p}.")
    if size < 1 or rotate_deg < 0 or not 0 <= scale < 1:
        raise ValueError(
            f"Need size >= 1, rotate_deg >= 0, 0 <= scale < 1; got {size}, {rotate_deg}, {scale}."
        )
    keys = ("image", "label")
    transforms: list[Callable[..., Any]] = []
    if flip_prob > 0:  # each in-plane axis flipped independently: all 4 mirrorings occur, as in TTA
        transforms += [
            mt.RandFlipd(keys=keys, prob=flip_prob, spatial_axis=axis, allow_missing_keys=True)
            for axis in (0, 1)
        ]
    transforms += [
        mt.RandAffined(
            keys=keys,
            prob=affine_prob,
            rotate_range=math.radians(rotate_deg),
            scale_range=(scale, scale),
            mode=("bilinear", "nearest"),
            padding_mode=("border", "zeros"),
            spatial_size=(size, size),
            cache_grid=True,
            allow_missing_keys=True,
        ),
        mt.RandGaussianNoised(keys="image", prob=intensity_prob, mean=0.0, std=0.1),
        mt.RandScaleIntensityd(keys="image", factors=0.25, prob=intensity_prob),
        mt.RandAdjustContrastd(keys="image", prob=intensity_prob, gamma=(0.7, 1.5)),
    ]
    return SliceAugment(mt.Compose(transforms)).set_random_state(seed)


class SliceDataset(Dataset):
    """Samples ``{"image": float32 (1, H, W), "label": int64 (H, W)}`` from a `SliceArrays`.

    Args:
        arrays: the slices.
        transform: callable on a sample dict (e.g. `train_transforms`), ``None`` for no augmentation.
        keep_empty: fraction of all-background slices to keep (training only; needs labels). The
            subset is drawn from ``(seed, epoch)``: call `set_epoch` to draw a new subset each epoch.
        seed: seed of the empty-slice subset.

    Unlabelled arrays give samples with only ``"image"``. Training loads in the main process (the
    augmentation is reseeded per epoch there); call `set_epoch` before creating the epoch's iterator.
    """

    def __init__(
        self,
        arrays: SliceArrays,
        transform: Callable[[Sample], Sample] | None = None,
        keep_empty: float = 1.0,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= keep_empty <= 1.0:
            raise ValueError(f"keep_empty must be a fraction in [0, 1], got {keep_empty}.")
        if keep_empty < 1.0 and arrays.labels is None:
            raise ValueError("keep_empty < 1 needs labelled slices to know which are empty.")
        self.arrays = arrays
        self.transform = transform
        self.keep_empty = keep_empty
        self.seed = seed
        labels = arrays.labels
        nonempty = np.ones(len(arrays), bool) if labels is None else labels.reshape(len(labels), -1).any(1)
        self._nonempty = np.flatnonzero(nonempty)
        self._empty = np.flatnonzero(~nonempty)
        self.indices = np.arange(len(arrays))
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Draw the kept subset of empty slices for ``epoch`` (no-op when ``keep_empty == 1``)."""
        if self.keep_empty >= 1.0:
            return
        rng = np.random.default_rng([self.seed, epoch])
        n_keep = int(round(self.keep_empty * len(self._empty)))
        kept = rng.choice(self._empty, size=n_keep, replace=False)
        self.indices = np.sort(np.concatenate([self._nonempty, kept]))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Sample:
        j = int(self.indices[i])
        sample = {"image": torch.from_numpy(self.arrays.images[j].astype(np.float32))}
        if self.arrays.labels is not None:
            sample["label"] = torch.from_numpy(self.arrays.labels[j].astype(np.int64))
        return self.transform(sample) if self.transform is not None else sample
