"""run_training end to end on synthetic MSD phantoms, resume, determinism, LR schedule and config."""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from emfformer.engine import train as train_module
from emfformer.engine.checkpoint import load_checkpoint, model_from_checkpoint
from emfformer.engine.config import RunConfig, apply_overrides, config_from_dict, load_config
from emfformer.engine.train import lr_factor, resolve_device, run_training

RUN_FILES = ("best.pt", "last.pt", "log.csv", "log.json", "curves.png", "config.yaml", "splits.json")


def _history(run_dir: Path) -> list[dict[str, Any]]:
    return json.loads((run_dir / "log.json").read_text())


# ----------------------------------------------------------------------------------------------
# Pipeline outputs
# ----------------------------------------------------------------------------------------------


def test_run_folder_holds_every_artifact(trained_run: Path) -> None:
    for name in RUN_FILES:
        assert (trained_run / name).is_file(), f"{name} missing from the run folder"
    assert (trained_run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    history = _history(trained_run)
    assert [row["epoch"] for row in history] == [1]
    row = history[0]
    assert math.isfinite(row["train_loss"]) and row["train_loss"] > 0
    assert 0.0 <= row["val_dice_fg"] <= 1.0 and 0.0 <= row["val_miou_fg"] <= 1.0
    assert {"val_dice_background", "val_dice_Anterior", "val_dice_Posterior"} <= set(row)

    with (trained_run / "log.csv").open() as f:
        csv_rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in csv_rows] == [1]
    assert float(csv_rows[0]["train_loss"]) == pytest.approx(row["train_loss"])

    splits = json.loads((trained_run / "splits.json").read_text())
    fold = splits["folds"][0]
    assert splits["test"] and fold["train"] and fold["val"]
    assert not set(splits["test"]) & (set(fold["train"]) | set(fold["val"]))


def test_checkpoint_is_self_describing(trained_run: Path) -> None:
    state = load_checkpoint(trained_run / "last.pt")
    assert state["model_name"] == "emf_former_t"
    assert state["model_kwargs"] == {"in_channels": 1, "num_classes": 3}
    assert state["preprocess"]["size"] == 32 and state["preprocess"]["mode"] == "pad"
    assert state["preprocess"]["slice_axis"] == 2
    assert state["class_names"] == ["background", "Anterior", "Posterior"]
    assert state["epoch"] == 1 and state["seed"] == 0
    # the stored config is the resolved one, identical to config.yaml, and rebuilds a RunConfig
    assert state["config"] == yaml.safe_load((trained_run / "config.yaml").read_text())
    assert config_from_dict(state["config"]).to_dict() == state["config"]

    # the model is rebuilt from the checkpoint alone
    model, preprocess = model_from_checkpoint(state)
    assert preprocess.size == 32 and preprocess.mode == "pad"
    rebuilt = model.state_dict()
    assert rebuilt.keys() == state["model"].keys()
    assert all(torch.equal(rebuilt[k], state["model"][k]) for k in rebuilt)
    with torch.no_grad():
        out = model(torch.zeros(2, 1, 32, 32))
    assert out.shape == (2, 3, 32, 32) and torch.isfinite(out).all()

    best = load_checkpoint(trained_run / "best.pt")
    assert best["epoch"] == 1 and best["metric"] == best["best_metric"]
    assert best["best_metric"] == pytest.approx(_history(trained_run)[0]["val_miou_fg"])


def test_second_run_into_a_used_folder_raises(
    trained_run: Path, tiny_config: Callable[..., RunConfig], tmp_path: Path
) -> None:
    run = shutil.copytree(trained_run, tmp_path / "run")
    before = {name: (run / name).read_bytes() for name in ("config.yaml", "last.pt", "log.json")}
    with pytest.raises(ValueError, match="already holds a training"):
        run_training(tiny_config(run, **{"optim.epochs": 2}))
    assert {name: (run / name).read_bytes() for name in before} == before, "the old run was modified"


def test_batch_larger_than_the_training_slices_still_trains(
    tiny_config: Callable[..., RunConfig], tmp_path: Path
) -> None:
    """4 phantoms x 12 slices = 48 slices < batch 64: one smaller batch per epoch, not zero steps."""
    run = run_training(tiny_config(tmp_path / "run", **{"optim.batch_size": 64, "optim.epochs": 2}))
    history = _history(run)
    assert all(r["train_loss"] is not None and math.isfinite(r["train_loss"]) for r in history)
    state = load_checkpoint(run / "last.pt")
    steps = {int(s["step"]) for s in state["optimizer"]["state"].values()}
    assert steps == {2}, "one optimizer step per epoch"
    assert history[-1]["lr"] == pytest.approx(state["config"]["optim"]["min_lr"])


def test_slice_cache_defaults_to_the_cache_folder(
    tiny_config: Callable[..., RunConfig], tmp_path: Path
) -> None:
    """data.cache_dir = None -> $EMFFORMER_CACHE/slices (the autouse fixture points it into tmp_path)."""
    run_training(tiny_config(tmp_path / "run", **{"data.cache_dir": None}))
    assert len(list((tmp_path / "emfformer_cache" / "slices").glob("slices_*.npz"))) == 1
    assert not list((tmp_path / "run").glob("**/*.npz"))


# ----------------------------------------------------------------------------------------------
# Resume and determinism
# ----------------------------------------------------------------------------------------------


def test_resume_continues_from_the_saved_epoch(
    tiny_config: Callable[..., RunConfig], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = run_training(tiny_config(tmp_path / "run"))
    first = _history(run)
    assert [r["epoch"] for r in first] == [1]

    caplog.set_level(logging.INFO, logger="emfformer.engine.train")
    caplog.clear()
    # only out_dir is given: everything else comes from last.pt, plus the overrides
    resumed = run_training(
        load_config(None, {"out_dir": str(run)}), resume=True, resume_overrides=["optim.epochs=2"]
    )
    assert resumed == run
    history = _history(run)
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[0] == first[0], "epoch 1 must be kept from the first run, not trained again"
    trained = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert len(trained) == 1 and trained[0].startswith("epoch 2:"), trained
    assert any("resumed from" in r.getMessage() and "epoch 1" in r.getMessage() for r in caplog.records)

    last = load_checkpoint(run / "last.pt")
    assert last["epoch"] == 2
    assert last["config"]["optim"]["epochs"] == 2
    assert [r["epoch"] for r in last["history"]] == [1, 2]
    assert yaml.safe_load((run / "config.yaml").read_text())["optim"]["epochs"] == 2
    # the schedule was extended to the new length: it ends at min_lr
    assert history[1]["lr"] == pytest.approx(last["config"]["optim"]["min_lr"])


class _Interrupt(Exception):
    pass


def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(
    tiny_config: Callable[..., RunConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Weights, optimizer, schedule and RNG state are all restored: the result is bit-identical."""
    straight = run_training(tiny_config(tmp_path / "straight", **{"optim.epochs": 2}))

    real_write_history = train_module.write_history

    def crash_after_first_epoch(run_dir: Path, rows: list[dict[str, Any]]) -> None:
        real_write_history(run_dir, rows)
        if len(rows) == 1:
            raise _Interrupt

    monkeypatch.setattr(train_module, "write_history", crash_after_first_epoch)
    with pytest.raises(_Interrupt):
        run_training(tiny_config(tmp_path / "broken", **{"optim.epochs": 2}))
    monkeypatch.setattr(train_module, "write_history", real_write_history)
    assert load_checkpoint(tmp_path / "broken" / "last.pt")["epoch"] == 1

    resumed = run_training(load_config(None, {"out_dir": str(tmp_path / "broken")}), resume=True)
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(resumed / "last.pt")
    assert b["epoch"] == 2
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
    assert [r["val_miou_fg"] for r in a["history"]] == [r["val_miou_fg"] for r in b["history"]]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_same_seed_gives_the_same_first_epoch_loss(
    trained_run: Path, tiny_config: Callable[..., RunConfig], tmp_path: Path
) -> None:
    reference = _history(trained_run)[0]  # seed 0, same config
    again = _history(run_training(tiny_config(tmp_path / "again")))[0]
    assert again["train_loss"] == reference["train_loss"]
    assert again["val_miou_fg"] == reference["val_miou_fg"]
    other = _history(run_training(tiny_config(tmp_path / "other", seed=1)))[0]
    assert other["train_loss"] != reference["train_loss"], "the seed has no effect"


# ----------------------------------------------------------------------------------------------
# Learning-rate schedule
# ----------------------------------------------------------------------------------------------

_COS_MID = 0.1 + 0.9 * 0.5  # cosine half-way between peak 1 and floor 0.1
_POLY_MID = 0.1 + 0.9 * 0.5**0.9


@pytest.mark.parametrize(
    ("step", "total", "warmup", "schedule", "min_ratio", "expected"),
    [
        # 1) linear warm-up from 1/warmup to the peak, whatever the schedule
        (0, 100, 10, "cosine", 0.1, 0.1),
        (4, 100, 10, "cosine", 0.1, 0.5),
        (9, 100, 10, "poly", 0.1, 1.0),
        # 2) decay: starts at the peak right after the warm-up ...
        (10, 100, 10, "cosine", 0.1, 1.0),
        (10, 100, 10, "poly", 0.1, 1.0),
        (0, 100, 0, "cosine", 0.0, 1.0),
        # ... half-way ...
        (55, 100, 10, "cosine", 0.1, _COS_MID),
        (55, 100, 10, "poly", 0.1, _POLY_MID),
        (50, 100, 0, "cosine", 0.0, 0.5),
        # ... reaches the floor at the last step and stays there
        (100, 100, 10, "cosine", 0.1, 0.1),
        (100, 100, 10, "poly", 0.1, 0.1),
        (250, 100, 10, "cosine", 0.1, 0.1),
        (250, 100, 0, "poly", 0.0, 0.0),
        # warm-up longer than training: still a warm-up, never above the peak
        (3, 4, 8, "cosine", 0.0, 0.5),
    ],
)
def test_lr_factor(
    step: int, total: int, warmup: int, schedule: str, min_ratio: float, expected: float
) -> None:
    assert lr_factor(step, total, warmup, schedule, min_ratio) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("schedule", ["cosine", "poly"])
def test_lr_factor_decays_monotonically_to_the_floor(schedule: str) -> None:
    values = [lr_factor(s, 50, 5, schedule, 0.01) for s in range(60)]
    assert values[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    decay = values[5:]
    assert all(a >= b for a, b in zip(decay, decay[1:], strict=False))
    assert max(values) == pytest.approx(1.0) and min(values) == pytest.approx(0.01)


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
        (["data.mode=crop"], "pad|resize"),
        (["optim.epochs=0"], "optim.epochs must be >= 1"),
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


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_resolve_device_without_cuda() -> None:
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_resume_refuses_changes_to_model_data_or_schedule(
    tiny_config: Callable[..., RunConfig], tmp_path: Path
) -> None:
    run = run_training(tiny_config(tmp_path / "run"))
    before = (run / "last.pt").read_bytes()
    for change in (["model.name=unet"], ["data.size=64"], ["optim.batch_size=2"]):
        with pytest.raises(ValueError, match="Cannot change"):
            run_training(load_config(None, {"out_dir": str(run)}), resume=True, resume_overrides=change)
    assert (run / "last.pt").read_bytes() == before


def test_diverging_loss_stops_with_a_clear_error(
    tiny_config: Callable[..., RunConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class NaNLoss(torch.nn.Module):
        def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return logits.sum() * float("nan")

    monkeypatch.setattr(train_module, "SegLoss", NaNLoss)
    with pytest.raises(ValueError, match="diverged"):
        run_training(tiny_config(tmp_path / "run"))


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


def test_thread_setting_applies_to_the_run_only(
    tiny_config: Callable[..., RunConfig], tmp_path: Path
) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run_training(tiny_config(tmp_path / "run"))  # tiny runs use threads=1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
