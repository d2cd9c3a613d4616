"""A training that fails leaves either nothing (before its first checkpoint) or a resumable run."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from emfformer import cli
from emfformer.engine.checkpoint import load_checkpoint
from emfformer.engine.config import RunConfig
from emfformer.engine.train import run_training


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_files(
    tiny_config: Callable[..., RunConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")  # a file the user put there stays

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("model construction failed")

    monkeypatch.setattr("emfformer.engine.train.build_model", broken)
    with pytest.raises(RuntimeError, match="model construction failed"):
        run_training(tiny_config(run, **{"data.n_folds": 4}))
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]  # no config.yaml / splits.json
    monkeypatch.undo()
    # a later run into the folder makes its own split with its own fold count
    run_training(tiny_config(run, **{"data.n_folds": 3}))
    assert load_checkpoint(run / "last.pt")["splits"]["n_folds"] == 3


def test_disk_full_while_saving_keeps_the_last_good_checkpoint(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)  # epoch 1 saved
    good = (run / "last.pt").read_bytes()
    real_save = torch.save

    def full_disk(obj: object, f: object, *args: object, **kwargs: object) -> None:
        with open(f, "wb") as fh:  # type: ignore[arg-type]
            fh.write(b"partial")  # a half-written temp file, as a real ENOSPC leaves
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    code = cli.main(["train", "--resume", "--out", str(run), "--epochs", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "No space left on device" in err[0] and "could not write checkpoint" in err[0]
    assert "--resume" in err[0]
    assert (run / "last.pt").read_bytes() == good  # epoch 1 intact
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no temp file, no lock
    monkeypatch.setattr(torch, "save", real_save)
    assert cli.main(["train", "--resume", "--out", str(run), "--epochs", "2"]) == 0
    assert load_checkpoint(run / "last.pt")["epoch"] == 2


def test_a_patch_beyond_the_memory_budget_is_refused_before_training(
    tiny_config: Callable[..., RunConfig], tmp_path: Path
) -> None:
    from emfformer.data.cases import DataError

    run = tmp_path / "run"
    cfg = tiny_config(run, **{"data.size": 1024, "optim.batch_size": 32, "data.memory_budget_mib": 512})
    with pytest.raises(DataError, match=r"1024 x 1024 needs about 48000 MiB.*data.memory_budget_mib = 512"):
        run_training(cfg)
    assert not run.exists() or not list(run.iterdir())  # nothing left behind
