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


def test_training_on_labels_that_are_all_background_is_refused(
    msd_phantom: Path, make_overrides: Callable[..., dict], tmp_path: Path
) -> None:
    import nibabel as nib
    import numpy as np

    from emfformer.data.cases import DataError
    from emfformer.engine.config import load_config

    data = tmp_path / "Task99_Empty"
    shutil.copytree(msd_phantom, data)
    for label in (data / "labelsTr").glob("*.nii.gz"):
        img = nib.load(label)
        nib.save(nib.Nifti1Image(np.zeros(img.shape, np.uint8), img.affine), label)
    run = tmp_path / "run"
    cfg = load_config(None, make_overrides(data, run, tmp_path / "cache"))
    with pytest.raises(DataError, match=r"every one of the 4 training cases .* all-background label"):
        run_training(cfg)
    assert not (run / "best.pt").exists() and not (run / "plans.json").exists()


@pytest.mark.parametrize(
    ("class_cases", "warned"),
    [([4, 4, 4], None), ([4, 4, 0], "Posterior"), ([4, 0, 0], None), (None, None)],
)
def test_a_class_no_training_case_holds_is_warned_once(
    class_cases: list[int] | None, warned: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    from emfformer.data.cases import DataError
    from emfformer.engine.train_data import check_foreground

    plan = {"class_cases": class_cases, "num_cases": 4}
    names = ["background", "Anterior", "Posterior"]
    if class_cases == [4, 0, 0]:
        with pytest.raises(DataError, match="nothing to learn"):
            check_foreground(plan, names, "Task99")
        return
    with caplog.at_level("WARNING"):
        check_foreground(plan, names, "Task99")
    found = [r.getMessage() for r in caplog.records if "appear in none" in r.getMessage()]
    assert len(found) == (0 if warned is None else 1)
    assert all(warned in m for m in found)
