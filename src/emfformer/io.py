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

__all__ = [
    "atomic_write",
    "atomic_write_text",
    "atomic_write_json",
    "save_nifti",
    "remove_stale_temp_files",
    "folder_listing",
    "remove_failed_start",
    "RunLock",
]


def atomic_write(path: str | Path, write: Callable[[Path], None], suffix: str = ".tmp") -> Path:
    """Call ``write(tmp_path)`` on a temp path beside ``path``, then rename it onto ``path``.

    ``suffix`` ends the temp name, for writers that pick the format from it (``.nii.gz``).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    except OSError as exc:
        raise _named(exc, path) from exc
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; outputs should be readable like normal files
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)  # the rename itself survives a power loss
    except OSError as exc:  # disk full, quota, permissions: the old file (or none) stays, no temp file
        Path(tmp).unlink(missing_ok=True)
        raise _named(exc, path) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _named(exc: OSError, path: Path) -> OSError:
    """``exc`` with a message that names the file (a bare ``[Errno 28]`` names none)."""
    if str(path) in str(exc):
        return exc
    return OSError(exc.errno, f"could not write {path}: {exc.strerror or exc}; nothing of it was left behind")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete temp files that `atomic_write` left behind when its process was killed mid-write."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


LOCK_NAME = ".lock"  # the run folder's lock file (RunLock); a failed start leaves it to its holder


def folder_listing(folder: str | Path) -> set[str] | None:
    """Names in ``folder`` (None when it does not exist yet)."""
    path = Path(folder)
    return {p.name for p in path.iterdir()} if path.is_dir() else None


def remove_failed_start(run_dir: Path, before: set[str] | None) -> None:
    """A new run that failed before its first checkpoint leaves nothing behind: the files it created
    (those not in ``before``, from `folder_listing`; config.yaml, splits.json, ...) would otherwise be
    taken up by the next run into that folder. The lock file stays: its holder removes it."""
    if (run_dir / "last.pt").exists() or not run_dir.is_dir():
        return  # a checkpoint exists: keep the run, it can be resumed
    for path in run_dir.iterdir():
        if path.name not in (before or set()) and path.name != LOCK_NAME and path.is_file():
            path.unlink(missing_ok=True)


class RunLock:
    """Advisory lock on a run folder: a ``.lock`` file holding the writer's PID.

    A second writer is refused with a clear ValueError while the holder is alive; a lock left by a
    process that no longer exists is taken over.
    """

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / LOCK_NAME

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid = _read_pid(self.path)
                if pid is not None and _alive(pid):
                    raise ValueError(
                        f"Run folder {self.path.parent} is in use by process {pid} (lock {self.path}). "
                        "Wait for it, or choose another --out."
                    ) from None
                self.path.unlink(missing_ok=True)  # stale: its writer is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return self
        raise ValueError(
            f"Could not lock run folder {self.path.parent}; remove {self.path} if no run is active."
        )

    def __exit__(self, *exc: object) -> None:
        if _read_pid(self.path) == os.getpid():
            self.path.unlink(missing_ok=True)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8, no newline translation) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8", newline=""))


def save_nifti(img: nib.Nifti1Image, path: str | Path) -> Path:
    """Save a NIfTI image atomically; the format (``.nii`` / ``.nii.gz``) follows ``path``'s suffix."""
    name = Path(path).name
    # the temp name carries the lower-case suffix nibabel needs; the final name keeps the user's case
    suffix = ".nii.gz" if name.lower().endswith(".nii.gz") else Path(name).suffix.lower()
    return atomic_write(path, lambda tmp: nib.save(img, str(tmp)), suffix=suffix)


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")
