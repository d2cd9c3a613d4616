"""Training options behind the accuracy recipe: fold -1 (all non-test cases), split seed, 2.5D, flips."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from emfformer.data.locate import load_dataset
from emfformer.data.splits import select_cases
from emfformer.engine.checkpoint import load_checkpoint, model_from_checkpoint
from emfformer.engine.config import RunConfig
from emfformer.engine.evaluate import run_evaluation
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
    summary = run_evaluation(run / "best.pt", part="test", device="cpu", progress=False)
    assert summary["num_cases"] == 2  # a fold -1 checkpoint evaluates on the fixed test part


def test_the_split_follows_split_seed_not_the_run_seed(
    trained_run: Path, tiny_config: Callable[..., RunConfig], tmp_path: Path
):
    """Training takes its split from ``select_cases`` on ``cfg.data``; the run seed is not part of it."""
    tests = {}
    for seed, split_seed in ((0, 0), (1, 0), (1, 3)):
        cfg = tiny_config(tmp_path / "unused", seed=seed, **{"data.split_seed": split_seed})
        cases = select_cases(load_dataset(cfg.data), cfg.data, "test", tmp_path / f"{seed}_{split_seed}.json")
        tests[(seed, split_seed)] = sorted(c.case_id for c in cases)
    assert tests[(0, 0)] == tests[(1, 0)], "another run seed must keep the test part"
    assert tests[(1, 3)] != tests[(0, 0)]
    assert (
        sorted(json.loads((trained_run / "splits.json").read_text())["test"]) == tests[(0, 0)]
    )  # what a run wrote


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


def test_a_second_writer_is_refused_and_stale_temp_files_are_removed(
    tiny_config: Callable[..., RunConfig], tmp_path: Path
) -> None:
    import os

    from emfformer.io import RunLock

    run_dir = tmp_path / "locked"
    run_dir.mkdir()
    (run_dir / ".last.pt.abc.tmp").write_bytes(b"half a checkpoint")
    with RunLock(run_dir):
        assert (run_dir / ".lock").read_text() == str(os.getpid())
        with pytest.raises(ValueError, match="in use by process"):
            run_training(tiny_config(run_dir))
    (run_dir / ".lock").write_text("999999999")  # a writer that died: its lock is taken over
    run_training(tiny_config(run_dir))
    assert not (run_dir / ".lock").exists() and not list(run_dir.glob(".*.tmp"))


def test_resume_of_a_finished_run_without_more_epochs_is_refused(
    tiny_config: Callable[..., RunConfig], tmp_path: Path
) -> None:
    run = run_training(tiny_config(tmp_path / "done"))
    before = (run / "config.yaml").read_text()
    with pytest.raises(ValueError, match="already trained 1 epochs"):
        run_training(tiny_config(run), resume=True, resume_overrides={"optim.epochs": 1})
    assert (run / "config.yaml").read_text() == before


def test_a_split_file_with_another_fold_count_is_refused(
    tiny_config: Callable[..., RunConfig], tmp_path: Path
):
    from emfformer.data.cases import DataError

    run_training(tiny_config(tmp_path / "f"))
    (tmp_path / "f" / "last.pt").unlink()  # a fresh run into the folder, with another fold count
    with pytest.raises(DataError, match="has 5 folds but this run asks for 3"):
        run_training(tiny_config(tmp_path / "f", **{"data.n_folds": 3}))


def test_unknown_model_kwargs_are_a_value_error(
    tiny_config: Callable[..., RunConfig], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="do not fit model emf_former_t"):
        run_training(tiny_config(tmp_path / "bogus", **{"model.kwargs": {"bogus": 1}}))


def test_dataloader_workers_are_seeded_so_runs_repeat(
    trained_run: Path, tiny_config: Callable[..., RunConfig], tmp_path: Path
):
    """2 worker processes with augmentation: each worker has its own stream, and a rerun is identical."""
    runs = [run_training(tiny_config(tmp_path / f"w{i}", **{"data.num_workers": 2})) for i in range(2)]
    a, b = (load_checkpoint(r / "last.pt")["model"] for r in runs)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    serial = load_checkpoint(trained_run / "last.pt")["model"]  # the same run without workers
    assert any(not torch.equal(a[k], serial[k]) for k in a)  # workers draw other augmentations


def test_a_file_whose_name_lies_about_its_compression_trains(
    msd_phantom: Path, tmp_path: Path, make_overrides: Callable[..., dict], slice_cache: Path
) -> None:
    """README: such a file is read by its bytes; training reads it (and its grid) like predict does."""
    import shutil

    import nibabel as nib

    from emfformer.data.fingerprint import dataset_fingerprint
    from emfformer.data.locate import load_dataset as load
    from emfformer.engine.config import load_config

    data = Path(shutil.copytree(msd_phantom, tmp_path / "Task97_Lying"))
    lying = data / "imagesTr" / "hippocampus_001.nii.gz"
    nib.save(nib.load(lying), tmp_path / "plain.nii")  # uncompressed bytes under a .nii.gz name
    shutil.copy(tmp_path / "plain.nii", lying)
    assert lying.read_bytes()[:2] != b"\x1f\x8b"
    cfg = load_config(None, make_overrides(data, tmp_path / "run", tmp_path / "cache"))
    info = load(cfg.data)
    assert dataset_fingerprint(info.cases, info.channel_names, 3, progress=False)["orientation"] == "RAS"
    run = run_training(cfg)
    assert load_checkpoint(run / "best.pt")["epoch"] == 1


@pytest.mark.parametrize(("margin", "expected"), [("auto", None), (0, 0), (5, 5)])
def test_patch_margin_reaches_the_training_patches(
    tiny_config: Callable[..., RunConfig], tmp_path: Path, margin: object, expected: int | None
) -> None:
    from emfformer.engine.train_data import load_data

    cfg = tiny_config(tmp_path / "run", **{"data.patch_margin": margin})
    (tmp_path / "run").mkdir()
    data = load_data(cfg, tmp_path / "run")
    assert data.dataset.margin == (data.dataset.size // 4 if expected is None else expected)
