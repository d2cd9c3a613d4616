"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

# One CPU thread per test process, and for the processes tests start (torchrun, the bench's children,
# the console script): the suite's models are tiny, and the suite runs in two pytest-xdist workers
# (scripts/test.sh); two workers with two OpenMP threads each on two cores spin-wait for each other
# and run many times slower.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread for a module: tiny models gain nothing from more, and on a busy shared CPU
    two OpenMP threads that spin-wait for each other made a 1 s epoch take up to 50 s."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test touches ``~/.cache/emfformer`` or a user's ``EMFFORMER_DATA``."""
    monkeypatch.setenv("EMFFORMER_CACHE", str(tmp_path / "emfformer_cache"))
    monkeypatch.delenv("EMFFORMER_DATA", raising=False)
