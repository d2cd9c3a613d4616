"""The MONAI bundle's configs/inference.json: the network, MONAI pre- and post-transforms, the run.

What is MONAI and what is emfformer (read this before relying on the MONAI parts):

* ``network_def`` builds the *first* network of the checkpoint through emfformer's registry
  (`emfformer.models.create_model`); ``models/model.pt`` holds its plain state dict, so MONAI's own
  tools work on it: ``python -m monai.bundle verify_net_in_out network_def``, ``monai.bundle.load``
  and a ``CheckpointLoader`` handler with ``load_dict {"model": ...}``. The network maps
  (B, channels x context, H, W) slices to (B, classes, H, W) logits; H and W multiples of the
  architecture's input multiple (`emfformer.models.input_multiple`).
* ``preprocessing`` is a MONAI ``Compose`` of the volume-level steps emfformer takes before it slices:
  load, channel first, the constant-border crop (``CropForegroundd`` with emfformer's own rule,
  `emfformer.data.geometry.border_mask`), ``Orientationd``, ``Spacingd`` (axes within 1 % of the
  target spacing kept, as emfformer keeps them) and the planned intensity normalisation where MONAI has
  it. ``postprocessing`` is softmax, the inverse of ``preprocessing`` on the probabilities (back to the
  scan's grid, interpolated, then argmax, as emfformer does) and ``SaveImaged``.
* ``run`` is *not* MONAI's: it calls `emfformer.engine.predict.run_prediction` on ``models/ensemble.pt``
  (the whole emfformer checkpoint), because MONAI has no transform or inferer for 2.5D context (adjacent
  slices stacked as channels), centre padding with each channel's minimum, several networks on
  different slice axes fused on the scan's grid, or mirror TTA. ``preprocessing`` and
  ``postprocessing`` describe the same steps for MONAI tools, but ``run`` does not call them, and they
  differ from emfformer's in detail: MONAI's ``Spacingd`` resamples onto a slightly different grid than
  emfformer's trilinear resize (up to a voxel at the edges), and per-image z-scoring over the nonzero
  voxels only, or channels normalised by different schemes, have no MONAI transform (then
  ``preprocessing`` stops before intensity normalisation; `unexpressed` says what is left out).

Specification: docs.monai.io, "MONAI Bundle Specification" and "Config syntax".
"""

from __future__ import annotations

from typing import Any

from ..data.geometry import SPACING_RTOL  # axes this close to the target spacing keep their voxels
from ..data.preprocess import PreprocessConfig

__all__ = ["inference_config", "network_def", "monai_preprocessing", "monai_postprocessing", "unexpressed"]

_NIBABEL_AXES = [["L", "R"], ["P", "A"], ["I", "S"]]  # axis letters of orientation codes such as "RAS"


def network_def(member: dict[str, Any]) -> dict[str, Any]:
    """The config component that builds ``member``'s network (a run checkpoint or a pack member)."""
    kwargs = dict(member["model_kwargs"])
    return {
        "_target_": "emfformer.models.create_model",
        "name": member["model_name"],
        "in_channels": kwargs.pop("in_channels", 1),
        "num_classes": kwargs.pop("num_classes", len(member["class_names"])),
        **kwargs,
    }


def _normalization(pre: PreprocessConfig) -> list[dict[str, Any]] | None:
    """MONAI transforms for the planned intensity normalisation; None where MONAI cannot express it."""
    schemes = pre.normalization or ({"scheme": "zscore", "clip": list(pre.clip_percentiles)},) * pre.channels
    if any(dict(s) != dict(schemes[0]) for s in schemes):
        return None  # one scheme per channel: MONAI's intensity transforms treat all channels alike
    s = schemes[0]
    key = {"keys": "image"}
    if s["scheme"] == "zscore":
        if s.get("use_mask"):
            return None  # percentiles of the nonzero voxels only: ClipIntensityPercentilesd takes all
        lo, hi = s.get("clip", pre.clip_percentiles)
        return [
            {"_target_": "ClipIntensityPercentilesd", **key, "lower": lo, "upper": hi, "channel_wise": True},
            {"_target_": "NormalizeIntensityd", **key, "channel_wise": True},
        ]
    if s["scheme"] == "ct":  # clip to the dataset's HU range (an identity rescale that clips), then fixed z
        lo, hi = float(s["lower"]), float(s["upper"])
        return [
            {"_target_": "ScaleIntensityRanged", **key, "a_min": lo, "a_max": hi, "b_min": lo, "b_max": hi,
             "clip": True},
            {"_target_": "NormalizeIntensityd", **key, "subtrahend": float(s["mean"]), "divisor": float(s["std"])},
        ]  # fmt: skip
    if s["scheme"] == "rescale":
        return [{"_target_": "ScaleIntensityd", **key, "minv": 0.0, "maxv": 1.0, "channel_wise": True}]
    if s["scheme"] == "rgb":
        return [{"_target_": "NormalizeIntensityd", **key, "subtrahend": 0.0, "divisor": 255.0}]
    return []  # "none": as stored


def unexpressed(pre: PreprocessConfig) -> list[str]:
    """The preprocessing steps of ``pre`` that the bundle's MONAI ``preprocessing`` leaves out."""
    left = [] if _normalization(pre) is not None else ["the planned intensity normalisation"]
    if pre.context > 1:
        left.append(f"the 2.5D context ({pre.context} adjacent slices stacked as channels)")
    left.append(
        f"cutting {'padded' if pre.mode == 'pad' else 'resized'} {pre.size} x {pre.size} slices along axis "
        f"{pre.slice_axis % 3}"
    )
    return left


def monai_preprocessing(pre: PreprocessConfig) -> dict[str, Any]:
    """A MONAI ``Compose`` of ``pre``'s volume-level steps (dict key ``image``; see the module docstring)."""
    key = {"keys": "image"}
    steps: list[dict[str, Any]] = [
        {"_target_": "LoadImaged", **key, "image_only": True},
        {"_target_": "EnsureChannelFirstd", **key},
        {"_target_": "EnsureTyped", **key, "dtype": "$torch.float32"},
    ]
    if pre.crop_border:
        steps.append({"_target_": "CropForegroundd", **key, "source_key": "image", "select_fn": "$border_mask",
                      "allow_smaller": True})  # fmt: skip
    if pre.orientation is not None:
        # explicit: MONAI's default is moving from these letters to the MetaTensor's "space"
        steps.append({"_target_": "Orientationd", **key, "axcodes": pre.orientation, "labels": _NIBABEL_AXES})
    if pre.spacing is not None:
        sp = [float(v) for v in pre.spacing]
        steps.append({"_target_": "Spacingd", **key, "pixdim": sp, "mode": "bilinear",
                      "min_pixdim": [v * (1 - SPACING_RTOL) for v in sp],
                      "max_pixdim": [v * (1 + SPACING_RTOL) for v in sp]})  # fmt: skip
    steps.extend(_normalization(pre) or [])
    return {"_target_": "Compose", "transforms": steps}


def monai_postprocessing() -> dict[str, Any]:
    """A MONAI ``Compose``: logits ``pred`` (classes, *preprocessed grid) -> a label file on the scan's grid."""
    key = {"keys": "pred"}
    return {"_target_": "Compose", "transforms": [
        {"_target_": "Activationsd", **key, "softmax": True},
        {"_target_": "Invertd", **key, "transform": "@preprocessing", "orig_keys": "image",
         "nearest_interp": False, "to_tensor": True},  # probabilities back, interpolated; argmax after
        {"_target_": "AsDiscreted", **key, "argmax": True},
        {"_target_": "SaveImaged", **key, "output_dir": "@output_dir", "output_postfix": "",
         "output_dtype": "$numpy.uint8", "separate_folder": False, "resample": False, "print_log": False},
    ]}  # fmt: skip


def inference_config(member: dict[str, Any], tta: bool) -> dict[str, Any]:
    """configs/inference.json for a bundle whose first network is ``member`` (see the module docstring)."""
    pre = PreprocessConfig.from_dict(member["preprocess"])
    return {
        "imports": [
            "$import numpy",
            "$import torch",
            "$from emfformer.data.geometry import border_mask",
            "$from emfformer.engine.predict import run_prediction",
        ],
        "bundle_root": ".",
        "checkpoint": "$@bundle_root + '/models/ensemble.pt'",  # the emfformer checkpoint `run` uses
        "model_file": "$@bundle_root + '/models/model.pt'",  # network_def's weights (a plain state dict)
        "dataset_dir": "$@bundle_root + '/input'",
        "output_dir": "$@bundle_root + '/eval'",
        "device": "auto",
        "tta": bool(tta),
        "network_def": network_def(member),
        "preprocessing": monai_preprocessing(pre),
        "postprocessing": monai_postprocessing(),
        "run": [
            "$run_prediction(@dataset_dir, @output_dir, @checkpoint, device=@device, tta=@tta, progress=False)"
        ],
    }
