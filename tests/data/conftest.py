"""Shared fixtures for the data tests: small synthetic datasets written into tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from emfformer.data.synthetic import write_acdc_phantoms, write_msd_phantoms

# 5 training patients (one per group) and 2 testing patients
ACDC_PATIENTS = {"training": [1, 21, 41, 61, 81], "testing": [101, 150]}


@pytest.fixture
def msd_root(tmp_path: Path) -> Path:
    return write_msd_phantoms(tmp_path / "Task99_Phantom", n_cases=6, seed=1, shape=(16, 20, 12))


@pytest.fixture(scope="module")
def acdc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Read-only ACDC phantom shared by a module (tests that modify files write their own)."""
    root = tmp_path_factory.mktemp("acdc") / "ACDC"
    return write_acdc_phantoms(root, ACDC_PATIENTS, seed=3, size=(32, 48), n_slices=(6, 10))
