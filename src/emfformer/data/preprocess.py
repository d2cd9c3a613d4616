"""Turn a 3D volume into normalised 2D slices of a fixed size, and turn slice predictions back.

Two in-plane geometries are supported (``PreprocessConfig.mode``):

* ``"pad"``: no in-plane resampling (the volume is already on the planned voxel spacing); a slice
  smaller than the ``size x size`` patch is centre padded up to it, a larger one is kept whole and is
  *tiled* by the patch: random patches in training (`emfformer.data.patches`), a sliding window with
  Gaussian weights at inference (`emfformer.engine.inference`). Nothing is ever cropped away, and the
  inverse is exact.
* ``"resize"``: resample every slice to ``size x size`` (TransUNet ACDC protocol). The image uses
  bicubic interpolation (anti-aliased when shrinking, clamped to the input range so bicubic overshoot
  does not invent intensities), a ground-truth label uses nearest-exact. The inverse resamples the
  per-class scores back with bilinear interpolation and then takes the argmax, which gives smoother
  and more accurate boundaries than nearest-resizing an argmaxed label map.

Everything needed to invert the geometry is recorded in a `SliceInfo`, so predictions are written back
on the voxel grid of the input file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from emfformer.data.cases import DataError
from emfformer.data.geometry import check_orientation
from emfformer.data.normalize import check_scheme, normalize_channels
from emfformer.data.slice_info import SliceInfo

__all__ = [
    "PreprocessConfig",
    "SliceInfo",
    "normalize_volume",
    "volume_to_slices",
    "volume_to_planes",
    "add_context",
    "context_rows",
    "slices_to_volume",
    "slices_to_scores",
    "labels_to_volume",
]

MODES = ("pad", "resize")
_INVERSE_CHUNK = 16  # slices resized back at once in resize mode; bounds peak memory for large volumes


@dataclass
class PreprocessConfig:
    """How volumes become 2D network inputs. Stored in checkpoints via `to_dict`/`from_dict`."""

    size: int = 64  # side of the square 2D network input, in pixels (64 Hippocampus, 224 ACDC)
    mode: str = "pad"  # "pad": centre pad/crop, no resampling; "resize": resample slice to size x size
    slice_axis: int = 2  # volume axis that is sliced (0, 1, 2 or negative); ACDC stacks: last axis
    clip_percentiles: tuple[float, float] = (0.5, 99.5)  # per-volume intensity clip before z-scoring
    context: int = 1  # odd number of adjacent slices stacked as channels (1 = 2D, 3/5 = 2.5D input)
    orientation: str | None = None  # axis codes volumes are turned to first (e.g. "RAS"); None: as stored
    spacing: tuple[float, float, float] | None = (
        None  # voxel size (mm) volumes are resampled to; None: as stored
    )
    channels: int = 1  # input channels of a volume (T2 + ADC: 2, RGB: 3); network input = channels x context
    normalization: tuple[dict[str, Any], ...] | None = None  # per channel (data/normalize.py); None: z-score
    crop_border: bool = (
        True  # crop away a constant border (zero fill, padding) first, as nnU-Net crops to nonzero
    )

    def __post_init__(self) -> None:
        self.clip_percentiles = tuple(float(p) for p in self.clip_percentiles)  # type: ignore[assignment]
        if isinstance(self.normalization, list):
            self.normalization = tuple(self.normalization)
        if isinstance(self.spacing, list | tuple):
            try:
                self.spacing = tuple(float(v) for v in self.spacing)  # type: ignore[assignment]
            except (TypeError, ValueError):
                pass  # validate() names the field
        self.validate()

    def validate(self) -> None:
        """Raise `ValueError` with a clear message if a field is out of range."""
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"PreprocessConfig.size must be a positive int, got {self.size!r}.")
        if self.mode not in MODES:
            raise ValueError(f"PreprocessConfig.mode must be one of {MODES}, got {self.mode!r}.")
        if isinstance(self.slice_axis, bool) or not isinstance(self.slice_axis, int):
            raise ValueError(f"PreprocessConfig.slice_axis must be an int, got {self.slice_axis!r}.")
        if not -3 <= self.slice_axis <= 2:
            raise ValueError(
                f"PreprocessConfig.slice_axis must be in -3..2 for 3D volumes, got {self.slice_axis}."
            )
        if (
            isinstance(self.context, bool)
            or not isinstance(self.context, int)
            or self.context < 1
            or self.context % 2 == 0
        ):
            raise ValueError(f"PreprocessConfig.context must be an odd int >= 1, got {self.context!r}.")
        if self.orientation is not None:
            try:
                self.orientation = check_orientation(self.orientation)
            except ValueError as exc:
                raise ValueError(f"PreprocessConfig.{exc}") from None
        sp = self.spacing
        if sp is not None and (
            not isinstance(sp, tuple) or len(sp) != 3 or not all(np.isfinite(v) and v > 0 for v in sp)
        ):
            raise ValueError(
                f"PreprocessConfig.spacing must be 3 positive voxel sizes in mm or None, got {sp!r}."
            )
        if isinstance(self.channels, bool) or not isinstance(self.channels, int) or self.channels < 1:
            raise ValueError(f"PreprocessConfig.channels must be a positive int, got {self.channels!r}.")
        if self.normalization is not None:
            if len(self.normalization) != self.channels:
                raise ValueError(
                    f"PreprocessConfig.normalization has {len(self.normalization)} entries for {self.channels} channels."
                )
            for c, d in enumerate(self.normalization):
                check_scheme(d, f"PreprocessConfig.normalization[{c}]")
        lo_hi = self.clip_percentiles
        if len(lo_hi) != 2 or not 0.0 <= lo_hi[0] < lo_hi[1] <= 100.0:
            raise ValueError(
                "PreprocessConfig.clip_percentiles must be (low, high) with 0 <= low < high <= 100, "
                f"got {lo_hi!r}; use (0, 100) to disable clipping."
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-serialisable dict (tuples become lists)."""
        d = asdict(self)
        d["clip_percentiles"] = list(self.clip_percentiles)
        d["spacing"] = None if self.spacing is None else list(self.spacing)
        d["normalization"] = None if self.normalization is None else [dict(n) for n in self.normalization]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessConfig:
        """Inverse of `to_dict`; unknown keys raise `ValueError` (catches typos in configs)."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"Unknown PreprocessConfig keys {sorted(unknown)}; known keys: {sorted(known)}.")
        return cls(**{"crop_border": False, **d})  # saved before the border crop existed: none, as trained


def normalize_volume(image: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Normalise a (X, Y, Z) or (X, Y, Z, C) image channel by channel (`emfformer.data.normalize`):
    the planned scheme of each channel, or (no plan) the per-volume percentile-clipped z-score.

    Raises:
        DataError: the image is empty, holds NaN/inf, or has another number of channels than planned.
    """
    return normalize_channels(image, cfg.normalization, cfg.clip_percentiles)


def _check_inputs(image: np.ndarray, cfg: PreprocessConfig, label: np.ndarray | None) -> np.ndarray:
    """(X, Y, Z, C) view of ``image`` after checking its shape, channels and label."""
    image = np.asarray(image)
    if image.ndim not in (3, 4):
        raise ValueError(
            f"volume_to_slices expects a 3D image (X, Y, Z) or (X, Y, Z, C), got shape {image.shape}."
        )
    chans = image if image.ndim == 4 else image[..., None]
    if chans.shape[-1] != cfg.channels:
        raise DataError(
            f"the image has {chans.shape[-1]} channel(s) but the model takes {cfg.channels}; give every channel "
            "file the model was trained with (_0000, _0001, ...)"
        )
    if label is not None:
        if label.shape != chans.shape[:3]:
            raise ValueError(f"Label shape {label.shape} differs from image shape {chans.shape[:3]}.")
        if label.size and label.min() < 0:
            raise ValueError(f"Labels must be non-negative class indices, found {label.min()}.")
    return chans


def volume_to_planes(
    image: np.ndarray, cfg: PreprocessConfig, label: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None, SliceInfo]:
    """Normalise a volume and cut it into 2D planes along ``cfg.slice_axis``, before 2.5D context.

    Pad mode pads each in-plane axis up to ``cfg.size`` (centred; the padding is each channel's minimum,
    i.e. looks like dark background; labels are padded with 0) and never crops. Resize mode resamples
    every plane to ``size x size``.

    Args:
        image: (X, Y, Z) or channels-last (X, Y, Z, C) volume, C = ``cfg.channels``.
        cfg: preprocessing settings.
        label: optional (X, Y, Z) non-negative integer label volume.

    Returns:
        planes: float32 (S, C, H, W), S = size of ``slice_axis``; (H, W) = ``info.slice_shape``.
        label_planes: int64 (S, H, W), or ``None`` without a label.
        info: the `SliceInfo` that `slices_to_scores` / `labels_to_volume` need.
    """
    cfg.validate()
    chans = _check_inputs(image, cfg, None if label is None else np.asarray(label))
    axis = cfg.slice_axis % 3
    vol = np.moveaxis(np.moveaxis(normalize_volume(chans, cfg), -1, 0), axis + 1, 1)  # (C, S, H, W)
    vol = np.ascontiguousarray(vol.swapaxes(0, 1))  # (S, C, H, W)
    lab = None if label is None else np.moveaxis(np.asarray(label), axis, 0).astype(np.int64)
    s, c, h, w = vol.shape
    if cfg.mode == "pad":
        ph, pw = max(h, cfg.size), max(w, cfg.size)
        p0, p1 = (ph - h) // 2, (pw - w) // 2
        info = SliceInfo(tuple(chans.shape[:3]), axis, "pad", cfg.size, (p0, p1), (0, 0), (ph, pw))  # type: ignore[arg-type]
        planes = np.empty((s, c, ph, pw), dtype=np.float32)
        planes[:] = vol.min(axis=(0, 2, 3), keepdims=True) if vol.size else 0.0
        planes[:, :, p0 : p0 + h, p1 : p1 + w] = vol
        label_planes = None
        if lab is not None:
            label_planes = np.zeros((s, ph, pw), dtype=np.int64)
            label_planes[:, p0 : p0 + h, p1 : p1 + w] = lab
        return planes, label_planes, info
    size = cfg.size
    info = SliceInfo(tuple(chans.shape[:3]), axis, "resize", size)  # type: ignore[arg-type]
    t = torch.from_numpy(vol)  # (S, C, H, W)
    if (h, w) != (size, size):
        lo = torch.from_numpy(vol.min(axis=(0, 2, 3), keepdims=True))
        hi = torch.from_numpy(vol.max(axis=(0, 2, 3), keepdims=True))
        shrink = h > size or w > size
        t = F.interpolate(t, size=(size, size), mode="bicubic", align_corners=False, antialias=shrink)
        t = torch.maximum(torch.minimum(t, hi), lo)  # bicubic overshoot invents no intensities
    label_planes = None
    if lab is not None:
        lt = torch.from_numpy(np.ascontiguousarray(lab))[:, None].float()
        if (h, w) != (size, size):
            lt = F.interpolate(lt, size=(size, size), mode="nearest-exact")
        label_planes = lt[:, 0].round().long().numpy()
    return t.numpy().astype(np.float32, copy=False), label_planes, info


def volume_to_slices(
    image: np.ndarray, cfg: PreprocessConfig, label: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None, SliceInfo]:
    """`volume_to_planes` with the 2.5D context: float32 (S, C x context, H, W) network inputs.

    With ``context`` > 1 each channel is followed by its neighbours in volume order (channel-major:
    c0 at z-1, z, z+1, then c1 ...), repeating the edge slice at the ends.

    Raises:
        ValueError: bad config, image not 3D, or label shape/values invalid.
        DataError: another number of channels than ``cfg.channels``.
    """
    planes, label_planes, info = volume_to_planes(image, cfg, label)
    return add_context(planes, cfg.context), label_planes, info


def context_rows(index: np.ndarray | int, num_slices: int, context: int) -> np.ndarray:
    """Slice rows of the 2.5D context of ``index``: clip(i - context//2 .. i + context//2)."""
    r = context // 2
    return np.clip(np.asarray(index)[..., None] + np.arange(-r, r + 1), 0, num_slices - 1)


def add_context(slices: np.ndarray, context: int) -> np.ndarray:
    """(S, C, H, W) -> (S, C x context, H, W): channel c * context + j of slice i is channel c of slice
    clip(i - context//2 + j)."""
    if context == 1:
        return slices
    idx = context_rows(np.arange(len(slices)), len(slices), context)  # (S, context)
    s, c, h, w = slices.shape
    stacked = slices[idx]  # (S, context, C, H, W)
    return np.ascontiguousarray(stacked.transpose(0, 2, 1, 3, 4).reshape(s, c * context, h, w))


def _as_float_tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x)).float()
    return x.detach().cpu().float()


def slices_to_scores(probs: torch.Tensor | np.ndarray, info: SliceInfo) -> np.ndarray:
    """Put per-slice class probabilities back on the original voxel grid: (S, C, size, size) -> (C, X, Y, Z).

    Pad mode crops the padding away exactly; where the original slice was larger than ``size`` and was
    centre-cropped, the network never saw the border: it gets background probability 1. Resize mode
    resizes the scores back with bilinear interpolation. Probabilities of several models (other slice
    axes, other folds) can then be averaged voxel by voxel.

    Args:
        probs: (S, C, size, size) scores, C >= 2, S = ``info.num_slices``.
        info: returned by `volume_to_slices` for this volume.

    Returns:
        float32 (C, *info.original_shape).
    """
    scores = _as_float_tensor(probs)
    expected = (info.num_slices, *info.slice_shape)
    if scores.ndim != 4 or (scores.shape[0], *scores.shape[2:]) != expected:
        raise ValueError(
            f"Expected scores of shape (S={expected[0]}, C, {expected[1]}, {expected[2]}) for this volume, "
            f"got {tuple(scores.shape)}."
        )
    if scores.shape[1] < 2:
        raise ValueError(f"Need at least 2 class channels to take an argmax, got {scores.shape[1]}.")
    h, w = info.in_plane_shape
    out = np.zeros((info.num_slices, scores.shape[1], h, w), dtype=np.float32)
    if info.mode == "pad":
        (p0, p1), (c0, c1), (l0, l1) = info.pad_before, info.crop_start, info.length
        out[:, 0] = 1.0  # outside the centre crop: background
        out[:, :, c0 : c0 + l0, c1 : c1 + l1] = scores[:, :, p0 : p0 + l0, p1 : p1 + l1].numpy()
    else:
        for i in range(0, info.num_slices, _INVERSE_CHUNK):
            chunk = scores[i : i + _INVERSE_CHUNK]
            if (h, w) != (info.size, info.size):
                chunk = F.interpolate(chunk, size=(h, w), mode="bilinear", align_corners=False)
            out[i : i + _INVERSE_CHUNK] = chunk.numpy()
    # (S, C, h, w) -> (C, X, Y, Z) with S back at the sliced axis
    return np.ascontiguousarray(np.moveaxis(out.swapaxes(0, 1), 1, info.slice_axis + 1))


def slices_to_volume(probs_or_logits: torch.Tensor | np.ndarray, info: SliceInfo) -> np.ndarray:
    """Turn per-slice class scores (S, C, size, size) into an int16 label volume on the original grid.

    The argmax of `slices_to_scores` (probabilities or logits both work; resize mode can differ only
    at near-ties).
    """
    return slices_to_scores(probs_or_logits, info).argmax(axis=0).astype(np.int16)


def _uncrop_labels(label_slices: np.ndarray, info: SliceInfo) -> np.ndarray:
    """Pad-mode inverse on a (S, size, size) label array -> int16 volume with the original shape."""
    h, w = info.in_plane_shape
    (p0, p1), (c0, c1), (l0, l1) = info.pad_before, info.crop_start, info.length
    out = np.zeros((info.num_slices, h, w), dtype=np.int16)
    out[:, c0 : c0 + l0, c1 : c1 + l1] = label_slices[:, p0 : p0 + l0, p1 : p1 + l1]
    return np.ascontiguousarray(np.moveaxis(out, 0, info.slice_axis))


def labels_to_volume(label_slices: torch.Tensor | np.ndarray, info: SliceInfo) -> np.ndarray:
    """Put (S, size, size) integer label slices back on the original grid (int16, original shape).

    Pad mode copies the labels back exactly. Resize mode one-hot encodes them and goes through
    `slices_to_volume`, i.e. exactly the path a prediction takes.
    """
    labels = label_slices.detach().cpu().numpy() if isinstance(label_slices, torch.Tensor) else label_slices
    labels = np.asarray(labels)
    expected = (info.num_slices, *info.slice_shape)
    if labels.shape != expected:
        raise ValueError(f"Expected label slices of shape {expected}, got {labels.shape}.")
    if info.mode == "pad":
        return _uncrop_labels(labels, info)
    lt = torch.from_numpy(labels.astype(np.int64))
    num_classes = max(int(lt.max()) + 1, 2) if lt.numel() else 2
    one_hot = F.one_hot(lt, num_classes).permute(0, 3, 1, 2).float()
    return slices_to_volume(one_hot, info)
