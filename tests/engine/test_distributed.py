"""Multi-process training: torchrun with 2 CPU processes (gloo) against one process, and resume."""

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
from emfformer.engine.train import run_training, seed_everything
from emfformer.models import build_model


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


def _torchrun(overrides: dict, *extra: str) -> subprocess.CompletedProcess:
    sets = [f"{k}={v}" for k, v in overrides.items()]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "emfformer", "train", *extra, "--set", *sets]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def two_process_run(
    msd_phantom: Path, slice_cache: Path, make_overrides, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict]:
    """MONAI's UNet trained 1 epoch by 2 processes (shared by the tests below, which never modify it)."""
    out = tmp_path_factory.mktemp("ddp") / "two"
    model = {"model.name": "unet", "model.kwargs": "{}", "data.augment": False}
    overrides = make_overrides(msd_phantom, out, slice_cache, **model)
    done = _torchrun(overrides)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, overrides


def test_two_processes_match_one_process_with_the_same_global_batch(
    two_process_run: tuple[Path, dict], tmp_path: Path
) -> None:
    """MONAI's UNet (instance norm: no statistic depends on the batch) trained 1 epoch by 2 processes
    with 4 slices each, and by 1 process with 8: the same samples per step, averaged gradients."""
    out, overrides = two_process_run
    single = run_training(
        load_config(None, {**overrides, "model.kwargs": {}, "out_dir": str(tmp_path / "one")})
    )
    two, one = load_checkpoint(out / "last.pt"), load_checkpoint(single / "last.pt")
    assert two["epoch"] == one["epoch"] == 1
    seed_everything(0)
    start = build_model("unet", 32, 1, 3).state_dict()

    def update_difference(keys: list[str]) -> float:
        step1 = torch.cat([(one["model"][k] - start[k]).flatten() for k in keys])
        step2 = torch.cat([(two["model"][k] - start[k]).flatten() for k in keys])
        return float((step2 - step1).norm() / step1.norm())

    # conv kernels agree to ~2 % (the deepest instance norms see 2 x 2 maps and amplify float-order
    # noise; a wrong gradient average or sample order gives 25-100 %); the output bias, whose gradient
    # is the sum of all steps' output errors, to < 1e-4. Conv biases in front of an instance norm have
    # no gradient at all (Adam turns their float noise into steps), so they are not compared.
    assert update_difference([k for k, w in start.items() if k.endswith("weight") and w.ndim > 1]) < 0.05
    assert update_difference(["model.2.1.conv.unit0.conv.bias"]) < 1e-4
    loss2, loss1 = two["history"][0]["train_loss"], one["history"][0]["train_loss"]
    val2, val1 = two["history"][0]["val_miou_fg"], one["history"][0]["val_miou_fg"]
    assert abs(loss2 - loss1) / loss1 < 1e-3
    assert val2 is not None and abs(val2 - val1) < 1e-2  # validation gathered from both ranks


def test_only_rank_0_writes_and_resume_works_under_torchrun(
    two_process_run: tuple[Path, dict], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    shutil.copytree(two_process_run[0], out)  # resume a copy: the shared run stays at epoch 1
    overrides = two_process_run[1]
    names = sorted(p.name for p in out.iterdir())
    assert names == ["best.pt", "config.yaml", "curves.png", "last.pt", "log.csv", "log.json", "splits.json"]
    done = _torchrun({k: v for k, v in overrides.items() if k in ("progress",)}, "--resume", "--out", str(out),
                     "--epochs", "2")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    state = load_checkpoint(out / "last.pt")
    assert state["epoch"] == 2 and [r["epoch"] for r in state["history"]] == [1, 2]
    assert not list(out.glob(".*"))  # no lock or temp file left behind
