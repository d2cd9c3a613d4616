"""Training options behind the accuracy recipe: fold -1 (all non-test cases), split seed, 2.5D, flips."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from emfformer.engine.checkpoint import load_checkpoint, model_from_checkpoint
from emfformer.engine.config import RunConfig
from emfformer.engine.inference import predict_volume
from emfformer.engine.train import run_training


def test_fold_minus_one_trains_on_every_non_test_case(tiny_config: Callable[..., RunConfig], tmp_path: Path):
    run = run_training(tiny_config(tmp_path / "all", **{"data.fold": -1}))
    splits = json.loads((run / "splits.json").read_text())
    history = json.loads((run / "log.json").read_text())
    assert all(row["val_miou_fg"] is None for row in history), "fold -1 has no validation part"
    best, last = load_checkpoint(run / "best.pt"), load_checkpoint(run / "last.pt")
    assert best["epoch"] == last["epoch"] == 1
    assert best["splits"] == splits
    n_non_test = sum(len(f["val"]) for f in splits["folds"])
    assert n_non_test == 6 and len(splits["test"]) == 2


def test_the_split_follows_split_seed_not_the_run_seed(tiny_config: Callable[..., RunConfig], tmp_path: Path):
    tests = {}
    for seed, split_seed in ((0, 0), (1, 0), (1, 3)):
        cfg = tiny_config(tmp_path / f"s{seed}_{split_seed}", seed=seed, **{"data.split_seed": split_seed})
        cfg.optim.epochs = 1
        run = run_training(cfg)
        tests[(seed, split_seed)] = json.loads((run / "splits.json").read_text())["test"]
    assert tests[(0, 0)] == tests[(1, 0)], "another run seed must keep the test part"
    assert tests[(1, 3)] != tests[(0, 0)]


def test_context_slices_make_a_25d_model_that_predicts(tiny_config: Callable[..., RunConfig], tmp_path: Path):
    run = run_training(tiny_config(tmp_path / "ctx", **{"data.context": 3, "data.flip_prob": 0.5}))
    state = load_checkpoint(run / "best.pt")
    assert state["model_kwargs"]["in_channels"] == 3 and state["preprocess"]["context"] == 3
    model, pre = model_from_checkpoint(state)
    image = np.random.default_rng(0).normal(size=(24, 28, 12)).astype(np.float32)
    with torch.inference_mode():
        assert predict_volume(model, image, pre).shape == image.shape


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [("data.context", 2, "odd"), ("data.fold", -2, "data.fold"), ("data.flip_prob", 1.5, "flip_prob")],
)
def test_bad_options_are_value_errors(tiny_config, tmp_path: Path, key: str, value, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tiny_config(tmp_path / "bad", **{key: value})


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("optim.lr", float("inf"), "finite"),
        ("optim.weight_decay", -1.0, "finite and >= 0"),
        ("threads", -1, "threads"),
    ],
)
def test_non_finite_or_negative_settings_are_refused(
    tiny_config, tmp_path: Path, key: str, value, match: str
):
    with pytest.raises(ValueError, match=match):
        tiny_config(tmp_path / "bad", **{key: value})
