"""The CLI's answer to user mistakes: one line naming what is wrong, exit 2, nothing half-written.

The cases the reliability catalogue (docs/reliability.md) lists for the command line, each through
``emfformer.cli.main`` exactly as a user types them.
"""

from __future__ import annotations

import gzip
import logging
import shutil
from pathlib import Path

import pytest

from emfformer.cli import main
from emfformer.data.synthetic import write_msd_phantoms
from emfformer.engine import train as train_module


@pytest.fixture(autouse=True)
def _isolation(one_torch_thread: None, isolated_env: None) -> None:
    """One torch thread, an isolated cache, no EMFFORMER_DATA (tests/conftest.py)."""


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_msd_phantoms(
        tmp_path_factory.mktemp("err") / "Task99_Phantom", n_cases=8, seed=1, shape=(20, 24, 8)
    )


def _train(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--model", "emf_former_t", "--epochs", "1", "--out", str(out),
            "--device", "cpu", "--threads", "1", "--set", "data.size=32", "optim.batch_size=8", "progress=false",
            *extra]  # fmt: skip


@pytest.fixture(scope="module")
def run(phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("err_run") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMFFORMER_CACHE", str(out.parent / "cache"))
        assert main(_train(phantoms, out)) == 0
    return out


def _error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("emfformer ")]
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith(f"emfformer {command}: error: ")
    return lines[0]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--threads", "-1"], "threads must be >= 1"),
        (["--set", "model.kwargs={bogus: 1}"], "do not fit model emf_former_t"),
        (["--set", "optim.lr=.inf"], "optim.lr must be a finite number"),
        (["--set", "optim.lr=nan"], "optim.lr must be a finite number"),
    ],
)
def test_bad_train_settings(
    phantoms: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    out = tmp_path / "run"
    assert main(_train(phantoms, out, *extra)) == 2
    assert message in _error(capsys, "train")
    assert not out.exists() or not [p for p in out.iterdir() if p.name != ".lock"]  # nothing left


@pytest.mark.parametrize("command", ["evaluate", "predict"])
@pytest.mark.parametrize("threads", ["-1", "0"])
def test_bad_thread_counts_for_inference(
    run: Path, phantoms: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, threads: str
) -> None:
    io = ["-i", str(phantoms / "imagesTr"), "-o", str(tmp_path / "o")] if command == "predict" else []
    assert main([command, "--checkpoint", str(run / "best.pt"), *io, "--threads", threads]) == 2
    assert "--threads must be >= 1" in _error(capsys, command)
    assert not (tmp_path / "o").exists()


def test_fast_with_tta_is_refused(
    run: Path, phantoms: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    io = ["-i", str(phantoms / "imagesTr"), "-o", str(tmp_path / "o")]
    assert main(["predict", "--checkpoint", str(run / "best.pt"), *io, "--fast", "--tta"]) == 2
    assert "--fast runs without mirror TTA" in _error(capsys, "predict")
    assert not (tmp_path / "o").exists()


def test_evaluate_max_cases_below_one(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(run / "best.pt"),
                "--max-cases",
                "-1",
                "--out",
                str(tmp_path / "e"),
            ]
        )
        == 2
    )
    assert "--max-cases must be >= 1, got -1" in _error(capsys, "evaluate")
    assert not (tmp_path / "e").exists()


def test_resume_with_fewer_epochs_changes_nothing(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = shutil.copytree(run, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    for epochs in ("1", "0"):
        assert main(["train", "--out", str(copy), "--resume", "--epochs", epochs]) == 2
        assert "already trained 1 epochs" in _error(capsys, "train") or epochs == "0"
    assert {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()} == before


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises((EOFError, OSError, gzip.BadGzipFile)):
        gzip.decompress(path.read_bytes())


def test_truncated_label_file_stops_training_naming_it(
    phantoms: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = shutil.copytree(phantoms, tmp_path / "Task99_Phantom")
    victim = sorted((data / "labelsTr").iterdir())[0]
    _truncate(victim)  # the dataset check reads every label before training starts
    assert main(_train(data, tmp_path / "run", "--set", f"data.cache_dir={tmp_path / 'slices'}")) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("emfformer train: error: ") and "integrity check" in err
    assert f"cannot read the voxels of {victim}" in err and "is the file complete?" in err
    assert not (tmp_path / "run").exists()  # a failed start removes the folder it created


def test_truncated_test_image_stops_evaluate_naming_it(
    run: Path, phantoms: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = shutil.copytree(phantoms, tmp_path / "Task99_Phantom")
    for v in (data / "imagesTr").iterdir():
        _truncate(v)
    out = tmp_path / "eval"
    assert (
        main(["evaluate", "--checkpoint", str(run / "best.pt"), "--data", str(data), "--out", str(out)]) == 2
    )
    line = _error(capsys, "evaluate")
    assert "imagesTr" in line and ("Cannot read" in line)
    assert not out.exists()


def test_busy_cpu_warns_before_training(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(train_module.os, "getloadavg", lambda: (2.0, 2.0, 2.0))
    monkeypatch.setattr(train_module.os, "cpu_count", lambda: 2)
    with caplog.at_level(logging.WARNING, logger="emfformer.engine.train"):
        train_module._warn_if_busy(2)
    assert "the CPU is busy (load 2.0 on 2 cores)" in caplog.text and "--threads 1" in caplog.text
    caplog.clear()
    monkeypatch.setattr(train_module.os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    with caplog.at_level(logging.WARNING, logger="emfformer.engine.train"):
        train_module._warn_if_busy(2)
    assert "busy" not in caplog.text


def test_ctrl_c_exits_130_with_one_line(
    phantoms: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_train", interrupted)
    assert main(_train(phantoms, tmp_path / "run")) == 130
    err = capsys.readouterr().err
    assert err.strip() == "interrupted" and "Traceback" not in err
    assert not (tmp_path / "run" / ".lock").exists()  # the run folder is unlocked again
