"""Run configuration: precedence, overrides, type checks, model-specific checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from emfformer.engine.config import RunConfig, apply_overrides, config_from_dict, load_config

# ----------------------------------------------------------------------------------------------
# Config: defaults < YAML < overrides, unknown keys
# ----------------------------------------------------------------------------------------------


def _yaml(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_config_precedence_defaults_yaml_overrides(tmp_path: Path) -> None:
    defaults = RunConfig()
    path = _yaml(
        tmp_path,
        {
            "optim": {"lr": 1e-3, "epochs": 7},
            "data": {"size": 32},
            "model": {"kwargs": {"attention": "mhsa"}},
        },
    )
    from_yaml = load_config(path)
    assert from_yaml.optim.lr == 1e-3 and from_yaml.optim.epochs == 7 and from_yaml.data.size == 32
    assert from_yaml.optim.batch_size == defaults.optim.batch_size  # untouched keys keep defaults
    assert from_yaml.model.kwargs == {"attention": "mhsa"}

    cfg = load_config(path, ["optim.lr=5e-4", "data.augment=false", "seed=3", "model.kwargs.drop_path=0.1"])
    assert cfg.optim.lr == 5e-4 and isinstance(cfg.optim.lr, float)  # "5e-4" parsed as a number
    assert cfg.optim.epochs == 7 and cfg.data.size == 32  # from the YAML
    assert cfg.data.augment is False and cfg.seed == 3
    assert cfg.model.kwargs == {"attention": "mhsa", "drop_path": 0.1}
    assert cfg.data.mode == defaults.data.mode

    as_dict = load_config(path, {"optim": {"lr": 2e-4}, "data.size": 48})
    assert as_dict.optim.lr == 2e-4 and as_dict.optim.epochs == 7 and as_dict.data.size == 48


def test_shipped_configs_load() -> None:
    configs = Path(__file__).resolve().parents[2] / "configs"
    for name, dataset in (("hippocampus.yaml", "hippocampus"), ("acdc.yaml", "acdc")):
        cfg = load_config(configs / name)
        assert cfg.data.dataset == dataset


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["optim.learning_rate=1e-3"], "Unknown config key 'optim.learning_rate'"),
        (["optimizer.lr=1e-3"], "Unknown config section 'optimizer'"),
        (["nonsense=1"], "Unknown config key 'nonsense'"),
        (["optim.lr"], "must look like section.key=value"),
        (["data=3"], "is a section"),
        (["data.size=40"], "multiple of 16"),
        (["optim.schedule=step"], "cosine|poly"),
        (["data.mode=crop"], "data.mode must be one of"),
        (["optim.epochs=0"], "optim.epochs must be >= 1"),
        (["data.patch_margin=-2"], "data.patch_margin must be auto or an int >= 0"),
    ],
)
def test_bad_overrides_raise_value_error(overrides: list[str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_config(None, overrides)


def test_unknown_yaml_key_and_bad_files_raise_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Unknown config key 'data.sise'"):
        load_config(_yaml(tmp_path, {"data": {"sise": 32}}))
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(_yaml(tmp_path, "data: [unclosed\n"))
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_config(_yaml(tmp_path, "- a\n- b\n"))
    with pytest.raises(ValueError, match="Config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_config_from_dict_round_trip_and_errors() -> None:
    cfg = load_config(None, ["optim.lr=1e-3", "data.size=48", "model.kwargs.attention=mhsa"])
    again = config_from_dict(cfg.to_dict())
    assert again == cfg and again is not cfg
    assert config_from_dict(cfg.to_dict(), ["optim.epochs=9"]).optim.epochs == 9
    saved = cfg.to_dict()
    saved["optim"]["momentum"] = 0.9
    with pytest.raises(ValueError, match="Unknown config key 'optim.momentum'"):
        config_from_dict(saved)
    with pytest.raises(ValueError, match="Unknown config key"):
        config_from_dict(cfg.to_dict(), ["optim.foo=1"])


def test_apply_overrides_mutates_and_returns_the_config() -> None:
    cfg = RunConfig()
    assert apply_overrides(cfg, {"optim.batch_size": 4}) is cfg
    assert cfg.optim.batch_size == 4


@pytest.mark.parametrize(
    "override",
    [
        "optim.lr=abc",
        "optim.epochs=two",
        "optim.epochs=1.5",
        "data.augment=maybe",
        "optim.lr.x=1",
        "seed=[1]",
    ],
)
def test_wrongly_typed_override_raises_value_error(override: str) -> None:
    with pytest.raises(ValueError):
        load_config(None, [override])


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"model.name": "swin_unetr", "data.size": 48}, "multiple of 32"),
        ({"model.kwargs": [1, 2]}, "model.kwargs"),
    ],
)
def test_model_specific_config_checks(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_config(None, overrides)


def test_unetr_gets_the_training_input_size() -> None:
    from emfformer.models import build_model

    assert build_model("unetr", 64, 1, 3)(torch.zeros(1, 1, 64, 64)).shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match="pad to 64"):
        build_model("emf_former_t", 60)
    with pytest.raises(ValueError, match="img_size=224"):
        build_model("unetr", 64, img_size=224)


def test_yaml_numbers_in_float_keys_read_as_set_reads_them(tmp_path: Path) -> None:
    text = "optim:\n  lr: 1e-3\n  min_lr: 1E-6\ndata:\n  spacing: [1e0, 1e0, 2e0]\n"
    cfg = load_config(_yaml(tmp_path, text))
    assert cfg.optim.lr == 1e-3 and cfg.optim.min_lr == 1e-6
    assert cfg.data.spacing == (1.0, 1.0, 2.0)
    assert load_config(overrides=["optim.lr=1e-3"]).optim.lr == cfg.optim.lr
    with pytest.raises(ValueError, match="optim.lr' must be float"):
        load_config(_yaml(tmp_path, "optim:\n  lr: fast\n"))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("optim:\n  lr: 0.1\n  lr: 0.01\n", r"duplicate key 'lr' \(line 3\)"),
        ("optim:\n  lr: 0.1\noptim:\n  epochs: 2\n", "duplicate key 'optim'"),
    ],
)
def test_a_key_given_twice_in_a_yaml_file_is_refused(tmp_path: Path, text: str, match: str) -> None:
    path = _yaml(tmp_path, text)
    with pytest.raises(ValueError, match=match) as info:
        load_config(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "overrides",
    [["seed=1180591620717411303424"], ["seed=-1"], ["data.split_seed=4294967296"]],
)
def test_seeds_outside_numpys_range_are_refused(overrides: list[str]) -> None:
    with pytest.raises(ValueError, match=r"must be in 0\.\.4294967295"):
        load_config(overrides=overrides)
    assert load_config(overrides=["seed=4294967295"]).seed == 2**32 - 1
