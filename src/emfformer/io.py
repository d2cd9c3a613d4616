"""Atomic file writes: a temp file in the target folder, fsync, then ``os.replace``.

Readers never see a half-written file, and an interrupted write leaves the old file (or none).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_json", "save_nifti"]


def atomic_write(path: str | Path, write: Callable[[Path], None], suffix: str = ".tmp") -> Path:
    """Call ``write(tmp_path)`` on a temp path beside ``path``, then rename it onto ``path``.

    ``suffix`` ends the temp name, for writers that pick the format from it (``.nii.gz``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; outputs should be readable like normal files
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8, no newline translation) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8", newline=""))


def save_nifti(img: nib.Nifti1Image, path: str | Path) -> Path:
    """Save a NIfTI image atomically; the format (``.nii`` / ``.nii.gz``) follows ``path``'s suffix."""
    name = Path(path).name
    suffix = ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix
    return atomic_write(path, lambda tmp: nib.save(img, str(tmp)), suffix=suffix)


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")
