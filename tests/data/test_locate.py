"""Data folder lookup (argument > EMFFORMER_DATA > cache) and reader dispatch."""

from __future__ import annotations

from pathlib import Path

import pytest

from emfformer.data.cases import DataError
from emfformer.data.locate import default_cache_dir, read_dataset, resolve_data_dir


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Clean environment: no EMFFORMER_DATA, cache under tmp_path."""
    monkeypatch.delenv("EMFFORMER_DATA", raising=False)
    monkeypatch.setenv("EMFFORMER_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("EMFFORMER_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "emfformer"
    monkeypatch.setenv("EMFFORMER_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"


def test_precedence(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arg, from_env = env / "arg", env / "env"
    cache = env / "cache" / "Task04_Hippocampus"
    for p in (arg, from_env, cache):
        p.mkdir(parents=True)
    assert resolve_data_dir("hippocampus") == cache
    monkeypatch.setenv("EMFFORMER_DATA", str(from_env))
    assert resolve_data_dir("hippocampus") == from_env
    assert resolve_data_dir("hippocampus", str(arg)) == arg
    assert resolve_data_dir("msd", arg) == arg


def test_missing_everywhere(env: Path) -> None:
    with pytest.raises(DataError) as err:
        resolve_data_dir("acdc")
    msg = str(err.value)
    assert "--data DIR" in msg and "EMFFORMER_DATA" in msg
    assert "emfformer download acdc -o" in msg and str(env / "cache" / "ACDC") in msg
    with pytest.raises(DataError, match="no download"):
        resolve_data_dir("msd")
    with pytest.raises(ValueError, match="dataset must be one of"):
        resolve_data_dir("brats")


def test_given_folder_must_exist(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match="--data argument"):
        resolve_data_dir("hippocampus", env / "nope")
    monkeypatch.setenv("EMFFORMER_DATA", str(env / "nope"))
    with pytest.raises(DataError, match=r"\$EMFFORMER_DATA"):
        resolve_data_dir("hippocampus")


def test_read_dataset(msd_root: Path, acdc_root: Path) -> None:
    assert read_dataset("msd", msd_root).num_classes == 3
    assert read_dataset("hippocampus", msd_root, check=False).name == "Hippocampus"
    info = read_dataset("acdc", acdc_root)
    assert info.name == "ACDC" and len(info.cases) == 10
    with pytest.raises(DataError, match="No ACDC dataset"):
        read_dataset("acdc", msd_root)
