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
from emfformer.engine.checkpoint import load_checkpoint, model_from_checkpoint, pack_ensemble
from emfformer.engine.config import RunConfig, config_from_dict, load_config
from emfformer.engine.inference import resolve_device
from emfformer.engine.schedule import lr_factor
from emfformer.engine.train import run_training

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
    # epoch 1 is the best so far: last.pt is a byte copy of best.pt (one pickle per epoch, not two)
    assert (trained_run / "last.pt").read_bytes() == (trained_run / "best.pt").read_bytes()

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


def test_preprocessed_data_defaults_to_the_cache_folder(
    tiny_config: Callable[..., RunConfig], tmp_path: Path
) -> None:
    """data.cache_dir = None -> $EMFFORMER_CACHE/preprocessed (the autouse fixture points it into tmp_path)."""
    run = run_training(tiny_config(tmp_path / "run", **{"data.cache_dir": None}))
    folders = [p for p in (tmp_path / "emfformer_cache" / "preprocessed").iterdir() if p.name != "plans"]
    assert len(folders) == 1 and (folders[0] / "index.json").is_file()
    assert len(list(folders[0].glob("*_seg.npy"))) == 4  # one per training case
    assert not list(run.glob("**/*.npy"))
    plan = json.loads((run / "plans.json").read_text())
    assert plan["patch_size"] == 32 and plan["planned"]["patch_size"] == 32 and plan["slice_axis"] == 2


# ----------------------------------------------------------------------------------------------
# Resume and determinism
# ----------------------------------------------------------------------------------------------


def test_resume_continues_from_the_saved_epoch(
    trained_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)  # a finished 1-epoch run
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
    other_run = run_training(tiny_config(tmp_path / "other", seed=1))
    assert _history(other_run)[0]["train_loss"] != reference["train_loss"], "the seed has no effect"
    split = json.loads((other_run / "splits.json").read_text())  # data.split_seed alone decides the split
    assert split == json.loads((trained_run / "splits.json").read_text())


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


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_resolve_device_without_cuda() -> None:
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    for name in ("cuda", "cuda:3"):
        with pytest.raises(ValueError, match="no such CUDA GPU"):
            resolve_device(name)
    with pytest.raises(ValueError, match="auto, cpu, cuda, cuda:N or mps"):
        resolve_device("tpu")


def test_resume_refuses_changes_to_model_data_or_schedule(
    tiny_config: Callable[..., RunConfig], tmp_path: Path
) -> None:
    run = run_training(tiny_config(tmp_path / "run"))
    before = (run / "last.pt").read_bytes()
    for change in (["model.name=unet"], ["data.size=64"], ["optim.batch_size=2"]):
        with pytest.raises(ValueError, match="Cannot change"):
            run_training(load_config(None, {"out_dir": str(run)}), resume=True, resume_overrides=change)
    assert (run / "last.pt").read_bytes() == before


def test_resume_from_a_pack_says_it_is_no_training_state(trained_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "packed"
    folder.mkdir()
    pack_ensemble([trained_run / "best.pt"], folder / "last.pt")
    with pytest.raises(ValueError, match="is not a training state .* --resume continues a run"):
        run_training(load_config(None, {"out_dir": str(folder)}), resume=True)


def test_diverging_loss_stops_with_a_clear_error(
    tiny_config: Callable[..., RunConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class NaNLoss(torch.nn.Module):
        def __init__(self, **kwargs: object) -> None:
            super().__init__()

        def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return logits.sum() * float("nan")

    monkeypatch.setattr(train_module, "SegLoss", NaNLoss)
    with pytest.raises(ValueError, match="diverged"):
        run_training(tiny_config(tmp_path / "run"))


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
