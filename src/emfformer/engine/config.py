"""Run configuration: one dataclass per concern, loaded as defaults < YAML file < CLI overrides.

Models never see these objects: the engine turns them into plain kwargs (``create_model(**...)``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..data.preprocess import PreprocessConfig
from .config_checks import check_values

__all__ = [
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "load_config",
    "preprocess_config",
    "apply_overrides",
    "config_from_dict",
    "parse_overrides",
    "parse_value",
    "RESUMABLE_KEYS",
]


@dataclass
class DataConfig:
    dataset: str = "hippocampus"  # hippocampus | acdc | msd (any MSD / nnU-Net v2 folder)
    data_dir: str | None = None  # dataset folder; None -> $EMFFORMER_DATA, then the cache folder
    # "auto": the plan's value (plans.json, data/plan.py); a number overrides the plan
    size: int | str = "auto"  # patch side (64 for Hippocampus, 224 for ACDC's resize mode)
    mode: str = "pad"  # pad (patches tiled over whole slices, no resampling) | resize (in-plane resize)
    slice_axis: int | str = "auto"  # volume axis the 2D slices are taken along
    fold: int = 0  # cross-validation fold used for train/val; -1 = train on all non-test cases, no val
    split_seed: int = 0  # seed of the case split (test part + folds); fixed while the run seed varies
    n_folds: int = 5  # folds of the non-test part
    test_fraction: float = 0.2  # held-out test part of folder datasets, fixed for all folds
    keep_empty: float = 1.0  # fraction of all-background training slices kept
    # how far a training patch may reach past its padded slice (px): auto = size // 4 (pad), 0 (resize)
    patch_margin: int | str = "auto"
    context: int = 1  # adjacent slices stacked as input channels (odd; 1 = 2D, 3 = 2.5D)
    clip_percentiles: tuple[float, float] = (0.5, 99.5)  # per-volume intensity clip before z-scoring
    # the training grid, stored with the model; inputs are moved onto it (data/geometry.py). "auto": the
    # training cases' most common orientation / median spacing (spacing only in pad mode); none: as stored
    orientation: str | None = "auto"  # auto | axis codes such as RAS | none
    spacing: tuple[float, float, float] | str | None = "auto"  # auto | [x, y, z] in mm | none
    normalization: str = "auto"  # auto: the plan's per-channel schemes (CT clip + global z-score...) | volume
    crop_border: bool = True  # crop a constant border (zero fill, CT padding) before anything else
    memory_budget_mib: float = 1024.0  # planning: training activation memory one batch may take
    augment: bool = True  # MONAI spatial + intensity augmentation on training slices
    flip_prob: float = 0.0  # per in-plane axis mirroring probability in augmentation (0 = no flips)
    num_workers: int = 0  # DataLoader worker processes for training slices (0: load in the training process)
    cache_dir: str | None = (
        None  # preprocessed data; None -> ($EMFFORMER_CACHE or ~/.cache/emfformer)/preprocessed
    )
    max_cases: int | None = None  # use only the first N train/val/test cases (smoke runs)


def preprocess_config(data: DataConfig, plan: dict[str, Any] | None = None) -> PreprocessConfig:
    """The preprocessing a run's data settings describe (validated by PreprocessConfig itself).

    ``plan``: the dataset's plan (`emfformer.data.plan.make_plan`), which every ``"auto"`` stands for;
    without one, ``"auto"`` takes placeholder values (for validating a config before planning).
    """
    if data.spacing is not None and data.spacing != "auto" and not isinstance(data.spacing, tuple):
        raise ValueError(f"data.spacing must be auto, none or [x, y, z] in mm, got {data.spacing!r}")
    if data.normalization not in ("auto", "volume"):
        raise ValueError(f"data.normalization must be auto or volume, got {data.normalization!r}")
    for key in ("size", "slice_axis"):
        if isinstance(getattr(data, key), str) and getattr(data, key) != "auto":
            raise ValueError(f"data.{key} must be auto or a number, got {getattr(data, key)!r}")
    p = plan or {}
    resample = data.mode == "pad"
    spacing = p.get("spacing") if resample else None
    norm = p.get("normalization") if data.normalization == "auto" else None
    return PreprocessConfig(
        size=int(p.get("patch_size", 64)) if data.size == "auto" else data.size,
        mode=data.mode,
        slice_axis=int(p.get("slice_axis", 2)) if data.slice_axis == "auto" else data.slice_axis,
        context=data.context,
        clip_percentiles=tuple(data.clip_percentiles),
        orientation=p.get("orientation") if data.orientation == "auto" else data.orientation,
        spacing=(None if spacing is None else tuple(spacing)) if data.spacing == "auto" else data.spacing,
        channels=len(p.get("channels", [0])),
        normalization=None if norm is None else tuple(norm),
        crop_border=data.crop_border,
    )


@dataclass
class ModelConfig:
    name: str = "emf_former_s"  # any name from `emfformer models`
    kwargs: dict[str, Any] = field(default_factory=dict)  # constructor overrides, e.g. {attention: mhsa}


@dataclass
class OptimConfig:
    epochs: int = 50  # training epochs
    batch_size: int | str = "auto"  # patches per step; auto: the plan's
    lr: float = 2e-3  # peak AdamW learning rate
    weight_decay: float = 1e-2  # AdamW weight decay
    warmup_epochs: float = 1.0  # linear warm-up from 0, in epochs (fractions allowed)
    schedule: str = "cosine"  # cosine | poly (power 0.9) decay after warm-up
    min_lr: float = 1e-5  # floor of the decay
    grad_clip: float = 1.0  # max gradient norm; 0 disables


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    out_dir: str = "runs/hippocampus_emf_former_s"  # run folder (checkpoints, logs, curves, config)
    seed: int = 0  # seeds python, numpy and torch (the split has its own data.split_seed)
    device: str = "auto"  # auto (cuda, else mps, else cpu) | cpu | cuda | cuda:N | mps
    bf16: bool = False  # bfloat16 autocast for forward passes
    threads: int | None = None  # torch CPU threads; None = torch default
    val_every: int = 1  # validate on whole volumes every N epochs
    progress: bool = True  # tqdm bars

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (tuples become lists), equal to what config.yaml reads back."""
        return _plain(asdict(self))


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return [_plain(v) for v in x] if isinstance(x, list | tuple) else x


def parse_value(text: str) -> Any:
    """Parse one override value with YAML rules, the one syntax of ``--set`` and of bench specs.

    ``3`` -> int, ``1e-3`` -> float, ``true`` -> bool, ``none``/``null`` -> None, ``[1, 2]`` or ``(1, 2)``
    -> list, anything else -> str.

    Raises:
        ValueError: the value is not valid YAML (e.g. unbalanced brackets).
    """
    t = text.strip()
    if t.lower() == "none":
        return None
    if t.startswith("(") and t.endswith(")"):
        t = "[" + t[1:-1] + "]"  # Python tuple spelling -> YAML flow list
    try:
        value = yaml.safe_load(t) if t != "" else ""
    except yaml.YAMLError as exc:
        raise ValueError(f"cannot parse the value {text!r}: {str(exc).splitlines()[0]}") from exc
    if isinstance(value, list):  # [2, none]: Python's None spelled inside a list
        return [None if isinstance(v, str) and v.lower() == "none" else v for v in value]
    if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["optim.lr=1e-3", "data.augment=false"]`` -> ``{"optim.lr": 0.001, "data.augment": False}``."""
    pairs: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"Override {item!r} must look like section.key=value, e.g. optim.lr=1e-3")
        key, value = item.split("=", 1)
        pairs[key.strip()] = parse_value(value)
    return pairs


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any] | list[str]) -> RunConfig:
    """Apply ``{"optim.lr": 1e-3}`` or ``["optim.lr=1e-3"]`` overrides; unknown keys raise ValueError."""
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    for dotted, value in overrides.items():
        *path, key = dotted.split(".")
        target: Any = cfg
        for part in path:
            if not dataclasses.is_dataclass(target) or not hasattr(target, part):
                raise ValueError(f"Unknown config section {part!r} in {dotted!r}")
            target = getattr(target, part)
        if dataclasses.is_dataclass(target) and not hasattr(target, key):
            valid = ", ".join(f.name for f in dataclasses.fields(target))
            raise ValueError(f"Unknown config key {dotted!r}; valid keys here: {valid}")
        if not (dataclasses.is_dataclass(target) or isinstance(target, dict)):
            raise ValueError(f"{'.'.join(path)!r} is a value, not a section: cannot set {dotted!r}")
        if dataclasses.is_dataclass(getattr(target, key, None)):
            if not isinstance(value, dict):
                raise ValueError(f"{dotted!r} is a section; give a mapping or set its keys one by one")
            apply_overrides(getattr(target, key), {k: v for k, v in value.items()})
        elif isinstance(target, dict):
            target[key] = value
        else:
            setattr(target, key, _check_type(type(target), key, value, dotted))
    return cfg


def _check_type(cls: type, key: str, value: Any, dotted: str) -> Any:
    """Return ``value`` converted to the annotated type of ``cls.key``; ValueError when it does not fit."""
    expected = typing.get_type_hints(cls)[key]
    options = typing.get_args(expected) if isinstance(expected, types.UnionType) else (expected,)
    for t in options:
        if t is type(None) and value is None:
            return None
        if t is bool and isinstance(value, bool):
            return value
        if t is int and not isinstance(value, bool):
            if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
                return int(value)
        if t is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if t is float and isinstance(value, str) and _is_number(value):  # YAML 1.1: "1e-3" is a string
            return float(value)
        if t is str and isinstance(value, str):
            return value
        origin = typing.get_origin(t) or t
        if origin is dict and isinstance(value, dict):
            return value
        if origin is tuple and isinstance(value, list | tuple):
            floats = float in typing.get_args(t)  # [1e-3, 1e-3, 2e-3]: YAML 1.1 strings, as parse_value reads
            return tuple(float(v) if floats and isinstance(v, str) and _is_number(v) else v for v in value)
    names = " or ".join(getattr(t, "__name__", str(t)) for t in options)
    raise ValueError(f"Config key {dotted!r} must be {names}, got {value!r}")


def _is_number(text: str) -> bool:
    """Whether ``float(text)`` reads ``text`` (the rule of parse_value for YAML 1.1's "1e-3")."""
    try:
        float(text)
    except ValueError:
        return False
    return True


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (line {key_node.start_mark.line + 1})"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> Any:
    """The YAML document of config file ``path``; ValueError for invalid YAML or a key given twice."""
    try:
        return yaml.load(path.read_text(), Loader=_UniqueKeyLoader) or {}  # noqa: S506 (a SafeLoader)
    except yaml.constructor.ConstructorError as exc:
        if "duplicate key" in str(exc.problem):
            raise ValueError(
                f"Config file {path} gives {exc.problem}: a key may appear once per section; "
                "delete one of them (YAML would silently keep the last)"
            ) from exc
        raise ValueError(f"Config file {path} is not valid YAML: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"Config file {path} is not valid YAML: {exc}") from exc


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "kwargs":
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# What may change when a run is resumed: nothing that alters the model, the data or the schedule's shape.
RESUMABLE_KEYS = (
    "optim.epochs",
    "data.data_dir",
    "data.cache_dir",
    "device",
    "threads",
    "data.num_workers",
    "val_every",
    "progress",
)


def config_from_dict(saved: dict[str, Any], overrides: dict[str, Any] | list[str] | None = None) -> RunConfig:
    """Rebuild a RunConfig from ``RunConfig.to_dict()`` output (e.g. a checkpoint's), then ``overrides``."""
    cfg = apply_overrides(RunConfig(), _flatten(saved))
    if overrides:
        apply_overrides(cfg, overrides)
    _validate(cfg)
    return cfg


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | list[str] | None = None
) -> RunConfig:
    """Defaults < YAML file ``path`` < ``overrides``. Raises ValueError on unknown keys or bad YAML."""
    cfg = RunConfig()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"Config file not found: {path}")
        data = _read_yaml(path)
        if not isinstance(data, dict):
            raise ValueError(f"Config file {path} must hold a mapping of sections (data, model, optim, ...)")
        apply_overrides(cfg, _flatten(data))
    if overrides:
        apply_overrides(cfg, overrides)
    _validate(cfg)
    return cfg


def _validate(cfg: RunConfig) -> None:
    """Every value checked (config_checks.py), then the preprocessing's own checks, named data.*."""
    check_values(cfg)
    try:  # size, mode, slice axis, context and clipping: PreprocessConfig's own checks, named data.*
        preprocess_config(cfg.data)
    except ValueError as exc:
        raise ValueError(str(exc).replace("PreprocessConfig.", "data.")) from exc
