"""`SliceInfo`: what turning one volume into 2D slices did, so that it can be undone exactly."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["SliceInfo"]


@dataclass(frozen=True)
class SliceInfo:
    """What `volume_to_slices` did to one volume, so that `slices_to_volume` can undo it exactly.

    For each in-plane axis ``i`` (the two axes left after moving ``slice_axis`` to the front), pad mode
    copies ``length[i] = min(n_i, size)`` pixels from ``crop_start[i]`` in the volume to
    ``pad_before[i]`` in the slice; at most one of the two offsets is non-zero. In resize mode both
    offsets are 0 and the scale factors are ``resize_factors``.

    Attributes:
        original_shape: shape (X, Y, Z) of the input volume.
        slice_axis: the sliced axis, normalised to 0, 1 or 2.
        mode: "pad" or "resize".
        size: side of the square slices.
        pad_before: pixels of padding before the volume, per in-plane axis (pad mode).
        crop_start: first volume pixel kept, per in-plane axis (pad mode, volume larger than size).
    """

    original_shape: tuple[int, int, int]
    slice_axis: int
    mode: str
    size: int
    pad_before: tuple[int, int] = (0, 0)
    crop_start: tuple[int, int] = (0, 0)
    padded: tuple[int, int] | None = None  # (H, W) of the slices; None: size x size

    @property
    def slice_shape(self) -> tuple[int, int]:
        """(H, W) of the network-side slices: the padded slice in pad mode, size x size in resize mode."""
        return self.padded if self.padded is not None else (self.size, self.size)

    @property
    def num_slices(self) -> int:
        return self.original_shape[self.slice_axis]

    @property
    def in_plane_shape(self) -> tuple[int, int]:
        """(H, W) of one original slice."""
        h, w = (n for a, n in enumerate(self.original_shape) if a != self.slice_axis)
        return h, w

    @property
    def length(self) -> tuple[int, int]:
        """Pixels copied per in-plane axis in pad mode."""
        h, w = self.in_plane_shape
        ph, pw = self.slice_shape
        return min(h, ph), min(w, pw)

    @property
    def resize_factors(self) -> tuple[float, float]:
        """Output/input scale per in-plane axis in resize mode (1.0 in pad mode)."""
        if self.mode != "resize":
            return 1.0, 1.0
        h, w = self.in_plane_shape
        return self.size / h, self.size / w

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SliceInfo:
        return cls(
            original_shape=tuple(int(n) for n in d["original_shape"]),  # type: ignore[arg-type]
            slice_axis=int(d["slice_axis"]),
            mode=str(d["mode"]),
            size=int(d["size"]),
            pad_before=tuple(int(n) for n in d["pad_before"]),  # type: ignore[arg-type]
            crop_start=tuple(int(n) for n in d["crop_start"]),  # type: ignore[arg-type]
            padded=None if d.get("padded") is None else tuple(int(n) for n in d["padded"]),  # type: ignore[arg-type]
        )
