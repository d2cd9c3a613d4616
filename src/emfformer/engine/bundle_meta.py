"""The MONAI bundle's configs/metadata.json, read from what the checkpoint stores.

Modality and channel names come from the training plan (``plan["channels"]``, the dataset.json
``channel_names`` / ``modality``), the classes from ``class_names``, the network's input and output
format from the first network (``network_def``): (B, channels x context, H, W) slices with H and W
multiples of the architecture's input multiple, (B, classes, H, W) logits. Schema:
``meta_schema_20240725.json`` of the MONAI model zoo (`SCHEMA_URL`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import monai
import nibabel
import numpy as np
import torch

from .. import __version__
from ..data.preprocess import PreprocessConfig
from ..models import input_multiple

__all__ = ["SCHEMA_URL", "bundle_metadata", "channel_names", "modality", "network_data_format"]

# the metadata schema MONAI's model zoo validates against (`monai.bundle verify_metadata` downloads it)
SCHEMA_URL = (
    "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
)
# a word of a channel name -> DICOM modality code (MSD / nnU-Net channel names: "CT", "MRI", "T2", "ADC",
# "FLAIR", "t1gd", "R" / "G" / "B"); names without one of these words count as MR
_MODALITY_WORDS = {
    "CT": "CT", "HU": "CT", "PET": "PT", "PT": "PT", "US": "US", "ULTRASOUND": "US",
    "R": "RGB", "G": "RGB", "B": "RGB", "RGB": "RGB",
}  # fmt: skip
_FORMAT = {"CT": "hounsfield", "RGB": "RGB"}  # MR, PET, ultrasound: "magnitude"
_NETWORKS = {"unext": "UNeXt", "ege_unet": "EGE-UNet", "malunet": "MALUNet", "unet": "U-Net", "unetr": "UNETR",
             "swin_unetr": "Swin UNETR"}  # fmt: skip
_REFERENCES = {
    "emf_former": "Hao, Quan, Lu. EMF-former: An Efficient and Memory-Friendly Transformer for Medical Image "
    "Segmentation. MICCAI 2024.",
    "unext": "Valanarasu, Patel. UNeXt: MLP-based Rapid Medical Image Segmentation Network. MICCAI 2022.",
    "ege_unet": "Ruan, Xie, Gao, Liu, Fu. EGE-UNet: An Efficient Group Enhanced UNet for Skin Lesion "
    "Segmentation. MICCAI 2023.",
    "malunet": "Ruan, Xiang, Xie, Liu, Fu. MALUNet: A Multi-Attention and Light-weight UNet for Skin Lesion "
    "Segmentation. BIBM 2022.",
}


def channel_names(member: dict[str, Any]) -> list[str]:
    """The input channel names of a run checkpoint or pack member: its plan's, else ``image``, ``image_1``..."""
    pre = PreprocessConfig.from_dict(member["preprocess"])
    names = (member.get("plan") or {}).get("channels")
    if isinstance(names, list) and len(names) == pre.channels:
        return [str(n) for n in names]
    return ["image"] + [f"image_{c}" for c in range(1, pre.channels)]


def _channel_modality(name: str, scheme: str | None) -> str:
    words = [w.upper() for w in re.split(r"[^A-Za-z0-9]+", name) if w]
    for w in words:
        if w in _MODALITY_WORDS:
            return _MODALITY_WORDS[w]
    return {"ct": "CT", "rgb": "RGB"}.get(scheme or "", "MR")  # an unnamed channel: its planned scheme says


def modality(names: Sequence[str], pre: PreprocessConfig) -> str:
    """One modality for the input ("CT", "MR", "PT", "US", "RGB"; mixed channels joined by '+', e.g.
    "PT+CT"): each channel's from the words of its name, else from its normalisation scheme, else MR."""
    schemes = [n.get("scheme") for n in pre.normalization] if pre.normalization else [None] * len(names)
    found = [_channel_modality(n, s) for n, s in zip(names, schemes, strict=True)]
    return "+".join(dict.fromkeys(found))


def network_data_format(member: dict[str, Any], class_names: list[str]) -> dict[str, Any]:
    """``network_data_format`` of the first network: its input slices, its logits, the label file after."""
    pre = PreprocessConfig.from_dict(member["preprocess"])
    names = channel_names(member)
    mod = modality(names, pre)
    r = pre.context // 2
    chans = {
        str(c * pre.context + j): name if pre.context == 1 else f"{name}, slice {j - r:+d}"
        for c, name in enumerate(names)
        for j in range(pre.context)
    }  # add_context's order: channel c of slice i + j - r is input c * context + j
    size = member["model_kwargs"].get("img_size")  # UNETR: one fixed side
    m = input_multiple(member["model_name"])
    shape = [size, size] if size else [f"{m}*n", f"{m}*n"]
    patches = pre.mode == "pad"  # larger slices are tiled by a size x size sliding window
    image = {"type": "image", "format": _FORMAT.get(mod, "magnitude"), "modality": mod,
             "num_channels": pre.channels * pre.context, "spatial_shape": shape, "dtype": "float32",
             "value_range": [], "is_patch_data": patches, "channel_def": chans}  # fmt: skip
    # the network's raw output: logits per class
    logits = {"type": "image", "format": "segmentation", "num_channels": len(class_names),
              "spatial_shape": shape, "dtype": "float32", "value_range": [], "is_patch_data": patches,
              "channel_def": {str(i): n for i, n in enumerate(class_names)}}  # fmt: skip
    labels = ", ".join(f"{i} {n}" for i, n in enumerate(class_names))
    label_file = {"type": "image", "format": "segmentation", "num_channels": 1, "spatial_shape": ["*", "*", "*"],
                  "dtype": "uint8", "value_range": [0, len(class_names) - 1], "is_patch_data": False,
                  "channel_def": {"0": f"labels: {labels}"}}  # fmt: skip
    return {
        "inputs": {"image": image},
        "outputs": {"pred": logits},
        "post_processed_outputs": {"pred": label_file},
    }


def _network_name(model_name: str) -> str:
    return "EMF-former" if model_name.startswith("emf_former") else _NETWORKS.get(model_name, model_name)


def bundle_metadata(
    state: dict[str, Any], member: dict[str, Any], class_names: list[str], members: Sequence[Any]
) -> dict[str, Any]:
    """metadata.json for checkpoint ``state`` whose first network is ``member``; ``members``: the loaded
    (model, preprocess) pairs of the whole ensemble."""
    pre = PreprocessConfig.from_dict(member["preprocess"])
    fmt = network_data_format(member, class_names)
    image = fmt["inputs"]["image"]
    dataset = state.get("dataset") or member.get("dataset")
    axes = sorted({p.slice_axis % 3 for _, p in members})
    net = _network_name(member["model_name"])
    ref = _REFERENCES.get("emf_former" if net == "EMF-former" else member["model_name"])
    names = channel_names(member)
    slices = "single slices" if pre.context == 1 else f"{pre.context} adjacent slices stacked as channels"
    return {
        "schema": SCHEMA_URL,
        "version": __version__,
        "changelog": {__version__: "exported by emfformer " + __version__},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": {"emfformer": __version__, "nibabel": nibabel.__version__},
        "name": f"{net} {dataset or ''} segmentation".replace("  ", " "),
        "task": f"{dataset or 'Medical image'} segmentation ({', '.join(class_names[1:])})",
        "description": (
            f"{net} 2D segmentation of {image['modality']} volumes ({len(members)} network(s), slice axes "
            f"{axes}; network_def is the first, on axis {pre.slice_axis % 3}, {slices}), fused per voxel on "
            "the scan's grid; scans are moved to the training grid "
            f"(orientation {pre.orientation}, spacing {pre.spacing} mm) and labels written back on each "
            "scan's own grid."
        ),
        "authors": "emfformer contributors",
        "copyright": "Copyright (c) emfformer contributors",
        "data_source": str(dataset or "see docs/README.md"),
        "data_type": "nifti",
        "image_classes": f"{len(names)} channel(s): {', '.join(names)} ({image['modality']})",
        "pred_classes": ", ".join(f"{i} {n}" for i, n in enumerate(class_names)),
        "intended_use": "Research only; not for clinical or diagnostic use.",
        "references": [ref] if ref else [],
        "network_data_format": fmt,
    }
