"""Multi-process training: torchrun with 2 CPU processes (gloo) resuming a run, against one process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from emfformer.engine import distributed
from emfformer.engine.checkpoint import load_checkpoint
from emfformer.engine.config import load_config
from emfformer.engine.train import run_training


def test_ranks_split_each_global_batch_of_the_same_order() -> None:
    one = distributed.rank_batches(21, 8, torch.Generator().manual_seed(3), True, distributed.Dist())
    parts = [
        distributed.rank_batches(21, 8, torch.Generator().manual_seed(3), True, distributed.Dist(r, 2))
        for r in range(2)
    ]
    assert [len(b) for b in one] == [8, 8]  # drop_last: the 5 leftover samples wait for the next epoch
    for step, batch in enumerate(one):
        assert sorted(parts[0][step] + parts[1][step]) == sorted(batch)
        assert len(parts[0][step]) == len(parts[1][step]) == 4
    with pytest.raises(ValueError, match="divide evenly among the 3 processes"):
        distributed.rank_batches(21, 8, torch.Generator(), True, distributed.Dist(0, 3))


def test_shard_then_gather_is_the_identity_in_one_process() -> None:
    d = distributed.Dist()
    assert distributed.gather(distributed.shard(list("abcde"), d), d) == list("abcde")
    assert distributed.shard(list("abcde"), distributed.Dist(1, 2)) == ["b", "d"]
    assert distributed.mean(0.5, d) == 0.5 and distributed.mean(None, d) is None


@pytest.mark.parametrize(
    "env, match",
    [({"WORLD_SIZE": "2", "RANK": "2"}, "inconsistent"), ({"WORLD_SIZE": "two"}, "must be integers")],
)
def test_a_broken_torchrun_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], match: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match=match):
        distributed.from_env()


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "emfformer", "train", *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def epoch_2_runs(
    session_env: Path,
    msd_phantom: Path,
    slice_cache: Path,
    make_overrides,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Path]:
    """MONAI's UNet trained 1 epoch by one process, then resumed to epoch 2 twice: by 2 processes under
    torchrun (one launch; its fresh slice cache is written by rank 0 and read by rank 1) and by one.
    Shared by the tests below, which never modify the folders."""
    root = tmp_path_factory.mktemp("ddp")
    model = {"model.name": "unet", "model.kwargs": {}, "data.augment": False}
    epoch1 = run_training(
        load_config(None, make_overrides(msd_phantom, root / "epoch1", slice_cache, **model))
    )
    runs = {"epoch1": epoch1, "one": root / "one", "two": root / "two", "two_cache": root / "two_cache"}
    for name in ("one", "two"):
        shutil.copytree(epoch1, runs[name])
    done = _torchrun("--resume", "--out", str(runs["two"]), "--epochs", "2",
                     "--set", f"data.cache_dir={runs['two_cache']}")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    runs["torchrun_stdout"] = root / "torchrun_stdout.txt"
    runs["torchrun_stdout"].write_text(done.stdout)
    cfg = load_config(None, make_overrides(msd_phantom, runs["one"], slice_cache, **model))
    run_training(cfg, resume=True, resume_overrides={"optim.epochs": 2})
    return runs


def test_two_processes_match_one_process_with_the_same_global_batch(epoch_2_runs: dict[str, Path]) -> None:
    """Epoch 2 of MONAI's UNet (instance norm: no statistic depends on the batch) run by 2 processes with
    4 slices each, and by 1 process with 8, from the same epoch-1 state: the same samples per step,
    averaged gradients."""
    start = load_checkpoint(epoch_2_runs["epoch1"] / "last.pt")["model"]
    two, one = (load_checkpoint(epoch_2_runs[name] / "last.pt") for name in ("two", "one"))
    assert two["epoch"] == one["epoch"] == 2

    def update_difference(keys: list[str]) -> float:
        step1 = torch.cat([(one["model"][k] - start[k]).flatten() for k in keys])
        step2 = torch.cat([(two["model"][k] - start[k]).flatten() for k in keys])
        return float((step2 - step1).norm() / step1.norm())

    # measured here: conv kernel updates agree to 1.5e-7, the output bias to 4e-8, the loss to 2e-8 (float
    # summation order only). A wrong sample order changes every update; gradients summed instead of
    # averaged move the kernel updates by 9 % (measured: Adam's moments keep epoch 1's scale). Conv biases
    # in front of an instance norm have no gradient at all (Adam turns their float noise into steps), so
    # they are not compared.
    assert update_difference([k for k, w in start.items() if k.endswith("weight") and w.ndim > 1]) < 1e-3
    assert update_difference(["model.2.1.conv.unit0.conv.bias"]) < 1e-4
    loss2, loss1 = two["history"][1]["train_loss"], one["history"][1]["train_loss"]
    val2, val1 = two["history"][1]["val_miou_fg"], one["history"][1]["val_miou_fg"]
    assert abs(loss2 - loss1) / loss1 < 1e-5
    assert val2 is not None and abs(val2 - val1) < 1e-4  # validation gathered from both ranks


def test_only_rank_0_writes_and_resume_works_under_torchrun(epoch_2_runs: dict[str, Path]) -> None:
    out = epoch_2_runs["two"]
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "best.pt", "config.yaml", "curves.png", "last.pt", "log.csv", "log.json", "plans.json", "splits.json",
        "splits_final.json",
    ]  # fmt: skip
    state = load_checkpoint(out / "last.pt")
    assert state["epoch"] == 2 and [r["epoch"] for r in state["history"]] == [1, 2]
    assert state["config"]["data"]["cache_dir"] == str(epoch_2_runs["two_cache"])
    assert any(epoch_2_runs["two_cache"].iterdir())  # rank 0 filled the new slice cache
    assert not list(out.glob(".*"))  # no lock or temp file left behind
    stdout = epoch_2_runs["torchrun_stdout"].read_text()
    assert stdout.count("Run folder:") == 1, stdout  # the summary line comes from rank 0 only
