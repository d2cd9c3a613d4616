"""The preprocessed training data on disk: one memory-mapped array per case (nnU-Net's preprocessed folder).

`preprocess_cases` reads each case once, moves it onto the planned grid (border crop, orientation,
spacing), normalises it and cuts it into planes along the slice axis (`volume_to_planes`: padded up to
the patch size, never cropped). Per case it writes ``<id>.npy`` (float16 (S, C, H, W)), ``<id>_seg.npy``
(uint8 (S, H, W)) and ``<id>_fg.npy`` (int32 (K, 4): class, slice, row, column of up to 10,000 sampled
voxels per foreground class), then ``index.json`` last, so an interrupted run leaves no index and is
redone. The folder name is a hash of the files (paths, sizes, modification times) and of the
preprocessing, so any change makes a new folder. Training reads slices through ``np.load(mmap_mode="r")``
one sample at a time: memory stays flat however large the dataset is.

Where it lives: ``data.cache_dir``, else ``$EMFFORMER_CACHE/preprocessed`` (``~/.cache/emfformer``);
delete the folder to clear it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emfformer.io import atomic_write, atomic_write_json
from emfformer.progress import tqdm

from .cases import Case, DataError, case_signature, load_volume
from .geometry import to_model_grid
from .preprocess import PreprocessConfig, volume_to_planes

__all__ = ["STORE_VERSION", "StoredCase", "preprocess_cases", "store_key"]

log = logging.getLogger(__name__)

STORE_VERSION = 2  # bump when the layout or the meaning of the arrays changes
_FG_SAMPLES = 10_000  # foreground voxel locations kept per class (nnU-Net keeps 10 k as well)


@dataclass(frozen=True)
class StoredCase:
    """One preprocessed case: where its arrays are and what they hold."""

    case_id: str
    image: Path  # float16 (S, C, H, W); float32 when a channel is not normalised (scheme "none")
    label: Path  # uint8 (S, H, W)
    fg: Path  # int32 (K, 4): class, slice, row, column
    shape: tuple[int, int, int, int]
    pad_value: tuple[float, ...]  # per channel: what the padding holds (the channel's minimum)
    nonempty: tuple[int, ...]  # slices with foreground

    def planes(self) -> np.ndarray:
        return np.load(self.image, mmap_mode="r")

    def labels(self) -> np.ndarray:
        return np.load(self.label, mmap_mode="r")


def store_key(cases: Sequence[Case], cfg: PreprocessConfig) -> str:
    """Hash of everything the stored arrays depend on (files, preprocessing; not the 2.5D context)."""
    pre = {k: v for k, v in cfg.to_dict().items() if k != "context"}
    payload = {
        "version": STORE_VERSION, "cfg": pre,
        "cases": [case_signature(c) for c in cases],
    }  # fmt: skip
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def _fg_locations(label: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = []
    for cls in np.unique(label):
        if cls == 0:
            continue
        where = np.argwhere(label == cls)
        if len(where) > _FG_SAMPLES:
            where = where[rng.choice(len(where), _FG_SAMPLES, replace=False)]
        rows.append(np.column_stack([np.full(len(where), cls), where]))
    return np.concatenate(rows).astype(np.int32) if rows else np.zeros((0, 4), np.int32)


def _save(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda tmp: np.save(tmp, array), suffix=".npy")


def _write_case(case: Case, cfg: PreprocessConfig, folder: Path, seed: int) -> dict[str, Any]:
    vol = load_volume(case)
    if vol.label is not None and vol.label.size and vol.label.max() > 255:
        raise DataError(f"Case {case.case_id}: label value {vol.label.max()} does not fit uint8 (0..255).")
    image, label, _ = to_model_grid(
        vol.image, vol.affine, cfg.orientation, cfg.spacing, vol.label, crop_border=cfg.crop_border
    )
    planes, label_planes, _ = volume_to_planes(image, cfg, label)
    seg = np.zeros(planes.shape[:1] + planes.shape[2:], np.uint8) if label_planes is None else label_planes
    raw = any(
        n.get("scheme") == "none" for n in cfg.normalization or ()
    )  # unnormalised: may overflow float16
    _save(folder / f"{case.case_id}.npy", planes.astype(np.float32 if raw else np.float16))
    _save(folder / f"{case.case_id}_seg.npy", seg.astype(np.uint8))
    _save(folder / f"{case.case_id}_fg.npy", _fg_locations(seg, seed))
    return {
        "case_id": case.case_id, "shape": list(planes.shape),
        "pad_value": [float(v) for v in planes.min(axis=(0, 2, 3))],
        "nonempty": np.flatnonzero(seg.reshape(len(seg), -1).any(1)).tolist(),
    }  # fmt: skip


def _stored(folder: Path, rec: dict[str, Any]) -> StoredCase:
    cid = rec["case_id"]
    return StoredCase(
        cid, folder / f"{cid}.npy", folder / f"{cid}_seg.npy", folder / f"{cid}_fg.npy",
        tuple(rec["shape"]), tuple(rec["pad_value"]), tuple(rec["nonempty"]),
    )  # fmt: skip


def preprocess_cases(
    cases: Sequence[Case], cfg: PreprocessConfig, cache_dir: Path, progress: bool = True
) -> list[StoredCase]:
    """Preprocess ``cases`` into ``cache_dir/<hash>/`` (or reuse a complete folder); see the module docstring.

    Raises:
        ValueError: no cases or duplicate case ids.
        DataError: a file is missing or corrupt, or labels do not fit uint8.
    """
    if not cases:
        raise ValueError("preprocess_cases needs at least one case.")
    ids = [c.case_id for c in cases]
    if len(set(ids)) != len(ids):
        raise ValueError("Duplicate case ids: " + ", ".join(sorted({i for i in ids if ids.count(i) > 1})))
    folder = Path(cache_dir) / store_key(cases, cfg)
    index = folder / "index.json"
    if index.is_file():
        try:
            records = json.loads(index.read_text())["cases"]
            stored = [_stored(folder, r) for r in records]
            if all(s.image.is_file() and s.label.is_file() and s.fg.is_file() for s in stored):
                log.info("preprocessed data: %s (%d cases, reused)", folder, len(stored))
                return stored
        except (OSError, ValueError, KeyError) as exc:
            log.warning("Ignoring unreadable preprocessed folder %s (%s); rebuilding it.", folder, exc)
    folder.mkdir(parents=True, exist_ok=True)
    records = [
        _write_case(c, cfg, folder, seed=i)
        for i, c in enumerate(tqdm(cases, desc="preprocess", unit="case", disable=not progress))
    ]
    atomic_write_json(index, {"version": STORE_VERSION, "preprocess": cfg.to_dict(), "cases": records})
    log.info("preprocessed data: %s (%d cases written)", folder, len(records))
    return [_stored(folder, r) for r in records]
