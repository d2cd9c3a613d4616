"""Export a checkpoint as a MONAI bundle: metadata, an inference config, the model, docs and licence.

The bundle runs with MONAI's own runner and segments a folder of NIfTI scans exactly as
``emfformer predict`` does (the same reorientation, resampling, slicing, fusion and TTA)::

    python -m monai.bundle run --config_file BUNDLE/configs/inference.json \\
        --bundle_root BUNDLE --dataset_dir scans/ --output_dir labels/

``models/model.pt`` is an emfformer ensemble checkpoint (network names, constructor arguments and
weights of each member, plus its preprocessing), so the bundle needs ``emfformer`` installed
(``required_packages_version``). MONAI bundle specification: docs.monai.io, "MONAI Bundle Specification".
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import monai
import nibabel
import numpy as np
import torch

from .. import __version__
from .checkpoint import load_members, pack_ensemble, resolve_checkpoint

__all__ = ["export_bundle", "SCHEMA_URL"]

# the metadata schema MONAI's model zoo validates against (`monai.bundle verify_metadata` downloads it)
SCHEMA_URL = (
    "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
)

_INFERENCE = {
    "imports": ["$from emfformer.engine.predict import run_prediction"],
    "bundle_root": ".",
    "checkpoint": "$@bundle_root + '/models/model.pt'",
    "dataset_dir": "$@bundle_root + '/input'",
    "output_dir": "$@bundle_root + '/eval'",
    "device": "auto",
    "tta": None,  # filled in: what the checkpoint recommends
    "run": [
        "$run_prediction(@dataset_dir, @output_dir, @checkpoint, device=@device, tta=@tta, progress=False)"
    ],
}


def _metadata(state: dict[str, Any], class_names: list[str], members: list) -> dict[str, Any]:
    pre = members[0][1]
    labels = ", ".join(f"{i} {n}" for i, n in enumerate(class_names))
    axes = sorted({p.slice_axis for _, p in members})
    voxel = {"input": {"image": {
        "type": "image", "format": "magnitude", "modality": "MR", "num_channels": 1,
        "spatial_shape": ["*", "*", "*"], "dtype": "float32", "value_range": [], "is_patch_data": False,
        "channel_def": {"0": "image"},
    }}, "output": {"pred": {
        "type": "image", "format": "segmentation", "num_channels": 1, "spatial_shape": ["*", "*", "*"],
        "dtype": "uint8", "value_range": [0, len(class_names) - 1], "is_patch_data": False,
        "channel_def": {"0": f"labels: {labels}"},
    }}}  # fmt: skip
    return {
        "schema": SCHEMA_URL,
        "version": __version__,
        "changelog": {__version__: "exported by emfformer " + __version__},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": {"emfformer": __version__, "nibabel": nibabel.__version__},
        "name": f"EMF-former {state.get('dataset') or ''} segmentation".replace("  ", " "),
        "task": f"{state.get('dataset') or 'Medical image'} segmentation ({', '.join(class_names[1:])})",
        "description": (
            f"EMF-former 2D segmentation ({len(members)} network(s), slice axes {axes}), fused per voxel on the "
            f"scan's grid; scans are moved to the training grid (orientation {pre.orientation}, spacing "
            f"{pre.spacing} mm) and labels written back on each scan's own grid."
        ),
        "authors": "emfformer contributors",
        "copyright": "Copyright (c) emfformer contributors",
        "data_source": str(state.get("dataset") or "see docs/README.md"),
        "data_type": "nifti",
        "intended_use": "Research only; not for clinical or diagnostic use.",
        "references": [
            "Hao, Quan, Lu. EMF-former: An Efficient and Memory-Friendly Transformer for Medical Image "
            "Segmentation. MICCAI 2024."
        ],
        "network_data_format": {"inputs": voxel["input"], "outputs": voxel["output"]},
    }


def _readme(meta: dict[str, Any]) -> str:
    return f"""# {meta["name"]}

{meta["description"]}

Labels: {meta["network_data_format"]["outputs"]["pred"]["channel_def"]["0"]}.

## Run

    pip install emfformer=={__version__} fire   # fire: the command line of `python -m monai.bundle`
    python -m monai.bundle run --config_file configs/inference.json --bundle_root . \\
        --dataset_dir scans/ --output_dir labels/

Every `.nii` / `.nii.gz` file in `scans/` gets a label file of the same name in `labels/`, on the
scan's own grid, affine and header. `--device cpu|cuda|auto` and `--tta true|false` override the
defaults in `configs/inference.json`.

## Data and licence

Code: Apache-2.0 (`docs/license.txt`). The weights were trained on the data named in
`configs/metadata.json` ("data_source"); respect that dataset's licence (the Medical Segmentation
Decathlon is CC-BY-SA 4.0). {meta["intended_use"]}
"""


def export_bundle(checkpoint: str | Path | None, out_dir: str | Path) -> Path:
    """Write a MONAI bundle folder for ``checkpoint`` (a run's best.pt, a pack or a shipped name).

    The folder is assembled beside ``out_dir`` and renamed into place: it appears whole or not at all.

    Raises:
        ValueError: ``out_dir`` exists and is not empty, or the checkpoint cannot be loaded.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and is not an empty folder; choose a new -o for the bundle.")
    members, class_names, tta, states = load_members(checkpoint)  # loads and checks every network
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        pack_ensemble([resolve_checkpoint(checkpoint)], tmp / "models" / "model.pt", tta=tta)
        meta = _metadata(states[0], class_names, members)
        (tmp / "configs").mkdir()
        (tmp / "configs" / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / "configs" / "inference.json").write_text(
            json.dumps({**_INFERENCE, "tta": tta}, indent=2) + "\n"
        )
        (tmp / "docs").mkdir()
        (tmp / "docs" / "README.md").write_text(_readme(meta))
        licence = Path(__file__).resolve().parents[3] / "LICENSE"
        text = (
            licence.read_text()
            if licence.is_file()
            else "Apache License 2.0: https://www.apache.org/licenses/LICENSE-2.0\n"
        )
        (tmp / "docs" / "license.txt").write_text(text)
        os.chmod(tmp, 0o755)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
