"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


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
