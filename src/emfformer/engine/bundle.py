"""Export a checkpoint as a MONAI bundle: metadata, configs (inference, logging), the weights, docs, licence.

Layout (MONAI Bundle Specification, docs.monai.io)::

    configs/metadata.json   modality, channels and classes from the checkpoint; network_data_format
    configs/inference.json  network_def, MONAI preprocessing / postprocessing, run (engine/bundle_config.py)
    configs/logging.conf    Python logging.config.fileConfig, applied by MONAI's runner
    models/model.pt         state dict of network_def (the checkpoint's first network)
    models/ensemble.pt      the emfformer checkpoint (every network, its preprocessing, TTA) that run uses
    docs/README.md, docs/license.txt

MONAI's runner segments a folder of NIfTI scans exactly as ``emfformer predict`` does::

    python -m monai.bundle run --config_file BUNDLE/configs/inference.json \\
        --bundle_root BUNDLE --dataset_dir scans/ --output_dir labels/

``run`` is emfformer's inference (2.5D slicing, sliding window, ensemble fusion, TTA, labels on each
scan's grid), so the bundle needs ``emfformer`` installed (``required_packages_version``). The network
and its weights, and the pre-/post-transforms, are plain MONAI (``verify_net_in_out``,
``monai.bundle.load``); what they do and do not cover is in engine/bundle_config.py.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..data.preprocess import PreprocessConfig
from .bundle_config import inference_config, unexpressed
from .bundle_meta import SCHEMA_URL, bundle_metadata
from .checkpoint import load_members, pack_ensemble, resolve_checkpoint

__all__ = ["export_bundle", "SCHEMA_URL", "LOGGING_CONF"]

# the console logging MONAI model-zoo bundles ship (logging.config.fileConfig format); MONAI's runner
# applies configs/logging.conf before it parses the config, and refuses classes outside `logging`
LOGGING_CONF = """[loggers]
keys=root

[handlers]
keys=consoleHandler

[formatters]
keys=fullFormatter

[logger_root]
level=INFO
handlers=consoleHandler

[handler_consoleHandler]
class=StreamHandler
level=INFO
formatter=fullFormatter
args=(sys.stdout,)

[formatter_fullFormatter]
format=%(asctime)s - %(name)s - %(levelname)s - %(message)s
"""


def _readme(meta: dict[str, Any], inference: dict[str, Any], left_out: list[str], name: str) -> str:
    fmt = meta["network_data_format"]
    image = fmt["inputs"]["image"]
    side = str(image["spatial_shape"][0]).split("*")[0]  # "16*n" -> 16; UNETR: its one side
    net = inference["network_def"]
    return f"""# {meta["name"]}

{meta["description"]}

Input: {meta["image_classes"]}. Labels: {meta["pred_classes"]}.

## Run

    pip install emfformer=={__version__} fire   # fire: the command line of `python -m monai.bundle`
    python -m monai.bundle run --config_file configs/inference.json --bundle_root . \\
        --dataset_dir scans/ --output_dir labels/

Every `.nii` / `.nii.gz` file in `scans/` gets a label file of the same name in `labels/`, on the
scan's own grid, affine and header. `--device cpu|cuda|auto` and `--tta true|false` override the
defaults in `configs/inference.json`. `run` is emfformer's own inference (`run_prediction` on
`models/ensemble.pt`: 2.5D slicing, sliding window, fusion of every network, mirror TTA).

## The network in MONAI

`network_def` is the first network, `{net["name"]}` (emfformer's registry), and `models/model.pt` its
state dict: it maps (B, {image["num_channels"]}, H, W) slices ({"; ".join(image["channel_def"].values())})
to (B, {fmt["outputs"]["pred"]["num_channels"]}, H, W) logits, H and W multiples of {side}.

    python -m monai.bundle verify_net_in_out network_def --meta_file configs/metadata.json \\
        --config_file configs/inference.json
    cd .. && python -c "import monai; print(monai.bundle.load('{name}', bundle_dir='.', \\
        workflow_type='inference', device='cpu'))"   # network_def with models/model.pt loaded

`preprocessing` (MONAI transforms, key `image`) loads a scan and takes the volume-level steps the
network was trained with; `postprocessing` (key `pred`: logits on that grid) takes the softmax, moves
the probabilities back to the scan's grid, takes the argmax and saves the labels. `run` does not use
them, and they leave out what only emfformer does: {"; ".join(left_out)}.

## Data and licence

Code: Apache-2.0 (`docs/license.txt`). The weights were trained on the data named in
`configs/metadata.json` ("data_source"); respect that dataset's licence (the Medical Segmentation
Decathlon is CC-BY-SA 4.0). {meta["intended_use"]}
"""


def _licence() -> str:
    licence = Path(__file__).resolve().parents[3] / "LICENSE"
    if licence.is_file():
        return licence.read_text()
    return "Apache License 2.0: https://www.apache.org/licenses/LICENSE-2.0\n"


def _write_bundle(folder: Path, checkpoint: str | Path | None, name: str) -> None:
    """Every file of the bundle ``name`` for ``checkpoint`` into the empty ``folder``."""
    members, class_names, tta, states = load_members(checkpoint)  # loads and checks every network
    first = states[0]["members"][0] if "members" in states[0] else states[0]
    (folder / "models").mkdir()
    torch.save(first["model"], folder / "models" / "model.pt")  # the plain state dict of network_def
    pack_ensemble([resolve_checkpoint(checkpoint)], folder / "models" / "ensemble.pt", tta=tta)
    meta = bundle_metadata(states[0], first, class_names, members)
    inference = inference_config(first, tta)
    (folder / "configs").mkdir()
    (folder / "configs" / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    (folder / "configs" / "inference.json").write_text(json.dumps(inference, indent=2) + "\n")
    (folder / "configs" / "logging.conf").write_text(LOGGING_CONF)
    (folder / "docs").mkdir()
    left_out = unexpressed(PreprocessConfig.from_dict(first["preprocess"]))
    (folder / "docs" / "README.md").write_text(_readme(meta, inference, left_out, name))
    (folder / "docs" / "license.txt").write_text(_licence())


def export_bundle(checkpoint: str | Path | None, out_dir: str | Path) -> Path:
    """Write a MONAI bundle folder for ``checkpoint`` (a run's best.pt, a pack or a shipped name).

    The folder is assembled beside ``out_dir`` and renamed into place: it appears whole or not at all.

    Raises:
        ValueError: ``out_dir`` exists and is not empty, or the checkpoint cannot be loaded.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and is not an empty folder; choose a new -o for the bundle.")
    resolve_checkpoint(checkpoint)  # a missing checkpoint is refused before any folder is made
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        _write_bundle(tmp, checkpoint, out.name)
        os.chmod(tmp, 0o755)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
