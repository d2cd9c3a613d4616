"""The never-destroy rule: a command writes only files that it creates or that it wrote itself before.

Every command that writes (``train --out``, ``plan -o``, ``evaluate --out``, ``predict -o``, ``export -o``,
``pack -o``, ``report -o``) asks `check_output` (or `check_run_dir` / `check_report_dir` for folders)
about each path it will write, before any work starts:

* an output that *is* one of the command's inputs (the same file, compared with ``os.path.samefile``)
  is always refused, also with ``--overwrite``: the command would read what it destroys;
* an existing path that this command wrote before (its marker, below) is rewritten: re-running a
  command replaces its own previous output;
* any other existing path is refused, unless the user passes ``--overwrite``.

How a file says "emfformer wrote it": a marker inside the file, in the place its format keeps such
things, so the file is still an ordinary file of its format for every other tool, and the marker
survives copying and renaming (file names and sidecar registries do not):

* HTML report: ``<meta name="generator" content="emfformer">`` (HTML's own field for the writer);
* checkpoints and packs (torch dicts), the export sidecar, ``metrics.json``, run ``plans.json``,
  ``splits.json`` and ``<case>.npz`` probabilities: a key ``emfformer_kind`` naming what the file is
  (``checkpoint``, ``ensemble``, ``export``, ``evaluation``, ...), so a pack never replaces a run
  checkpoint. Checkpoints older than the key are recognised by ``emfformer_version``;
* train's ``config.yaml``: a first-line YAML comment (comments are ignored by every YAML reader);
* label NIfTI: the header's ``descrip`` field = ``emfformer labels`` (NIfTI's free-text field);
  ``.nrrd`` / ``.mha`` labels: the ITK metadata key ``emfformer`` = ``labels``; ``.png`` labels and
  overlays: a PNG ``tEXt`` chunk ``Software`` = ``emfformer labels`` / ``emfformer overlay``;
* an exported ONNX / TorchScript file: its sidecar ``<file>.json`` is ours and lists the file.

A marker is read from the header or the first bytes only (a checkpoint loads memory-mapped), so
checking stays cheap. Errors are one `ValueError` naming the path and what to do.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "KIND_KEY",
    "HTML_MARKER",
    "CONFIG_MARKER",
    "LABEL_DESCRIP",
    "ITK_KEY",
    "PNG_KEY",
    "same_file",
    "written_by_us",
    "check_output",
    "check_outputs",
    "check_run_dir",
    "check_report_dir",
]

KIND_KEY = "emfformer_kind"
HTML_MARKER = '<meta name="generator" content="emfformer">'
CONFIG_MARKER = "# emfformer train config (written by emfformer train; edit a copy, not this file)"
LABEL_DESCRIP = "emfformer labels"
ITK_KEY = "emfformer"
PNG_KEY = "Software"
RUN_FILES = (
    "config.yaml",
    "plans.json",
    "splits.json",
    "log.csv",
    "log.json",
    "curves.png",
    "best.pt",
    "last.pt",
)
REPORT_FILES = ("metrics.json", "per_case.csv", "summary.md")


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether ``a`` and ``b`` are the same existing file (hard links and symlinks included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def _json_kind(path: Path) -> str | None:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return obj.get(KIND_KEY) if isinstance(obj, dict) else None


def _checkpoint_kind(path: Path) -> str | None:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a torch file, or not one of ours: either way not ours
        return None
    if not isinstance(state, dict) or not ({KIND_KEY, "emfformer_version"} & set(state)):
        return None
    return state.get(KIND_KEY) or ("ensemble" if "members" in state else "checkpoint")


def _png_text(path: Path) -> str | None:
    try:
        from PIL import Image

        with Image.open(path) as im:
            return getattr(im, "text", {}).get(PNG_KEY)
    except Exception:
        return None


def _label_marker(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith(".png"):
        return _png_text(path) == LABEL_DESCRIP
    if name.endswith((".nrrd", ".mha")):
        try:
            import SimpleITK as sitk

            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            reader.SetImageIO("NrrdImageIO" if name.endswith(".nrrd") else "MetaImageIO")
            reader.ReadImageInformation()
            return reader.HasMetaDataKey(ITK_KEY) and reader.GetMetaData(ITK_KEY) == "labels"
        except Exception:
            return False
    try:
        import nibabel as nib

        descrip = nib.load(str(path)).header["descrip"]
        return bytes(descrip).rstrip(b"\0").decode("ascii", "replace") == LABEL_DESCRIP
    except Exception:
        return False


def _exported_marker(path: Path) -> bool:
    sidecar = path.with_name(path.name + ".json")
    if _json_kind(sidecar) != "export":
        return False
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    return path.name in {m.get("file") for m in meta.get("members", [])}


def written_by_us(path: str | Path, kind: str) -> bool:
    """Whether the existing file ``path`` carries the marker of an emfformer output of ``kind``."""
    path = Path(path)
    if not path.is_file():
        return False
    if kind == "html":
        with open(path, "rb") as f:
            return HTML_MARKER.encode() in f.read(4096)
    if kind == "config":
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.readline().rstrip("\n") == CONFIG_MARKER
    if kind in ("checkpoint", "ensemble"):
        return _checkpoint_kind(path) == kind
    if kind == "labels":
        return _label_marker(path)
    if kind == "overlay":
        return _png_text(path) == "emfformer overlay"
    if kind == "exported":
        return _exported_marker(path)
    if kind == "probabilities":
        return _npz_kind(path) == kind
    if kind == "plans" and _json_kind(path) is None:  # plans.json of emfformer before the marker
        with contextlib.suppress(OSError, ValueError, UnicodeDecodeError):
            obj = json.loads(path.read_text(encoding="utf-8"))
            return isinstance(obj, dict) and "patch_size" in obj and "preprocess" in obj
    return _json_kind(path) == kind  # export, evaluation, plans


def _npz_kind(path: Path) -> str | None:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            return str(z[KIND_KEY]) if KIND_KEY in z.files else None
    except Exception:
        return None


def check_output(
    path: str | Path, kind: str, inputs: Iterable[str | Path] = (), overwrite: bool = False, what: str = "-o"
) -> Path:
    """``path`` if the command may write it (see the module docstring), else one clear ValueError.

    Args:
        path: the file the command will write.
        kind: what the command writes there (``html``, ``checkpoint``, ``labels``, ...).
        inputs: files the command reads; the output may never be one of them.
        overwrite: the user's ``--overwrite``: replace a foreign existing file.
        what: the option that named the path, for the message.
    """
    path = Path(path)
    for src in inputs:
        if Path(src).exists() and path.exists() and same_file(path, src):
            raise ValueError(
                f"{what} {path} is one of this command's inputs ({src}); writing it would destroy it. "
                "Choose another output path (--overwrite does not apply to inputs)."
            )
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder; give the file to write (e.g. {path / _example(kind)}).")
    if path.exists() and not overwrite and not written_by_us(path, kind):
        raise ValueError(
            f"{what} {path} already exists and was not written by this emfformer command; nothing was "
            "written. Choose another output path, or pass --overwrite to replace it."
        )
    return path


def _example(kind: str) -> str:
    return {"html": "report.html", "ensemble": "ensemble.pt", "exported": "model.onnx"}.get(kind, "out")


def check_outputs(
    paths: Iterable[tuple[Path, str]],
    inputs: Iterable[str | Path] = (),
    overwrite: bool = False,
    what: str = "-o",
) -> None:
    """`check_output` on every (path, kind) pair, before anything is written."""
    inputs = list(inputs)
    for path, kind in paths:
        check_output(path, kind, inputs, overwrite, what)


def check_run_dir(run_dir: str | Path, resume: bool) -> None:
    """Refuse a ``train --out`` folder that holds run files (config.yaml, plans.json, ...) train did not
    write. Train's own folder (its config.yaml carries the marker) is fine, and so is ``--resume``,
    whose last.pt has already been loaded as an emfformer checkpoint."""
    run_dir = Path(run_dir)
    if resume or not run_dir.is_dir() or written_by_us(run_dir / "config.yaml", "config"):
        return
    foreign = [name for name in RUN_FILES if (run_dir / name).exists()]
    if foreign:
        raise ValueError(
            f"Run folder {run_dir} holds {', '.join(foreign)} that emfformer train did not write (no "
            f"'{CONFIG_MARKER[:24]}...' config.yaml); training there would overwrite them. Nothing was "
            "written: choose another --out (a new or empty folder)."
        )


def _refuse_a_data_folder(out_dir: Path) -> None:
    """A folder of images / labels (or a dataset folder, or one directly inside it) is no report folder."""
    from .data.cases import IMAGE_SUFFIXES

    if not out_dir.is_dir():
        return
    in_dataset = (out_dir / "dataset.json").is_file() or (out_dir.parent / "dataset.json").is_file()
    scans = [p.name for p in out_dir.iterdir() if p.name.lower().endswith(IMAGE_SUFFIXES)]
    if in_dataset or scans:
        what = f"holds image files ({', '.join(sorted(scans)[:2])} ...)" if scans else "is part of a dataset"
        raise ValueError(
            f"--out {out_dir} {what}; an evaluation report does not go there. Choose another --out."
        )


def check_report_dir(out_dir: str | Path, overwrite: bool = False) -> None:
    """Refuse an ``evaluate --out`` folder whose metrics.json / per_case.csv / summary.md are not from a
    previous evaluation (its metrics.json carries ``emfformer_kind: evaluation``)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(
            f"--out {out_dir} is a file; give the folder for metrics.json, per_case.csv, summary.md"
        )
    _refuse_a_data_folder(out_dir)  # even with --overwrite: a report never goes among scans or labels
    if overwrite or written_by_us(out_dir / "metrics.json", "evaluation"):
        return
    foreign = [str(out_dir / name) for name in REPORT_FILES if (out_dir / name).exists()]
    if foreign:
        raise ValueError(
            f"--out {out_dir} holds {', '.join(foreign)}, not written by emfformer evaluate; nothing was "
            "written. Choose another --out, or pass --overwrite to replace them."
        )
