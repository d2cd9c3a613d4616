"""Shared fixtures for the engine tests: synthetic MSD phantoms and tiny trained runs, built once.

Everything is written under pytest's tmp folders; the cache variable points there too, so no test
touches ``~/.cache/emfformer`` or the real data. ``EMFFORMER_DATA`` is removed so that only explicit
folders are used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from emfformer.data.synthetic import write_msd_phantoms
from emfformer.engine.config import RunConfig, load_config
from emfformer.engine.train import run_training

# 8 cases -> split with test_fraction 0.2 and 5 folds: 2 test, 2 val (fold 0), 4 train.
N_PHANTOMS = 8
PHANTOM_SHAPE = (24, 28, 12)  # slices along the last axis: 24 x 28 in-plane, padded to 32 x 32


def tiny_overrides(data_dir: Path, out_dir: Path, cache_dir: Path, **extra: Any) -> dict[str, Any]:
    """Overrides for a seconds-long CPU run of EMF-former-T on 32 x 32 slices."""
    return {
        "data.dataset": "hippocampus",
        "data.data_dir": str(data_dir),
        "data.size": 32,
        "data.cache_dir": str(cache_dir),
        "model.name": "emf_former_t",
        "optim.epochs": 1,
        "optim.batch_size": 8,
        "device": "cpu",
        "threads": 1,  # float sums depend on the thread count: fixed so runs compare bit for bit
        "progress": False,
        "out_dir": str(out_dir),
        **extra,
    }


@pytest.fixture(autouse=True)
def _engine_isolation(one_torch_thread: None, isolated_env: None) -> None:
    """Every engine test: one torch thread, an isolated cache, no EMFFORMER_DATA (tests/conftest.py)."""


@pytest.fixture(scope="session")
def make_overrides() -> Callable[..., dict[str, Any]]:
    """:func:`tiny_overrides` as a fixture, for test modules that build their own runs."""
    return tiny_overrides


@pytest.fixture(scope="session")
def session_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The same isolation for session fixtures (which cannot use the function-scoped monkeypatch)."""
    cache = tmp_path_factory.mktemp("emfformer_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMFFORMER_CACHE", str(cache))
        mp.delenv("EMFFORMER_DATA", raising=False)
        yield cache


@pytest.fixture(scope="session")
def msd_phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only synthetic MSD task folder (labels 0 background, 1 Anterior, 2 Posterior)."""
    root = tmp_path_factory.mktemp("msd") / "Task99_Phantom"
    return write_msd_phantoms(root, n_cases=N_PHANTOMS, seed=0, shape=PHANTOM_SHAPE)


@pytest.fixture(scope="session")
def slice_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("slice_cache")


@pytest.fixture
def tiny_config(msd_phantom: Path, slice_cache: Path) -> Callable[..., RunConfig]:
    """``tiny_config(out_dir, **overrides)``: a validated RunConfig for a tiny run on the phantoms."""

    def make(out_dir: Path, **extra: Any) -> RunConfig:
        return load_config(None, tiny_overrides(msd_phantom, out_dir, slice_cache, **extra))

    return make


@pytest.fixture(scope="session")
def trained_run(
    session_env: Path, msd_phantom: Path, slice_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A 1-epoch pad-mode run on the phantoms; treat as read-only (write reports elsewhere)."""
    out = tmp_path_factory.mktemp("runs") / "pad"
    return run_training(load_config(None, tiny_overrides(msd_phantom, out, slice_cache)))


@pytest.fixture(scope="session")
def resize_run(
    session_env: Path, msd_phantom: Path, slice_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A 1-epoch resize-mode run on the phantoms; treat as read-only."""
    out = tmp_path_factory.mktemp("runs") / "resize"
    return run_training(
        load_config(None, tiny_overrides(msd_phantom, out, slice_cache, **{"data.mode": "resize"}))
    )
