"""The ``emfformer`` command: ``main([...])`` for every subcommand, exit codes, errors on stderr.

A tiny run is trained once through ``main(["train", ...])`` on synthetic MSD phantoms and reused by the
evaluate / predict / resume tests. One test runs the installed console script in a subprocess.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import emfformer
from emfformer.cli import build_parser, main
from emfformer.data.synthetic import write_msd_phantoms
from emfformer.engine import train as train_module
from emfformer.engine.config import RunConfig
from emfformer.models import list_models


@pytest.fixture(autouse=True)
def _cli_isolation(one_torch_thread: None, isolated_env: None) -> None:
    """One torch thread, an isolated cache, no EMFFORMER_DATA (fixtures in tests/conftest.py)."""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cli")
    write_msd_phantoms(tmp / "Task99_Phantom", n_cases=8, seed=0, shape=(24, 28, 12))
    return tmp


def _train_args(workspace: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--data", str(workspace / "Task99_Phantom"),
        "--model", "emf_former_t",
        "--epochs", "1",
        "--out", str(out),
        "--seed", "3",
        "--device", "cpu",
        "--threads", "1",
        "--set", "data.size=32", "optim.batch_size=8", "progress=false",
        f"data.cache_dir={workspace / 'slices'}",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def cli_run(workspace: Path) -> Iterator[tuple[Path, str]]:
    """(run folder, stdout of the train command)."""
    out = workspace / "run"
    captured = io.StringIO()  # module fixtures cannot use capsys
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(captured):
        mp.setenv("EMFFORMER_CACHE", str(workspace / "cache"))
        mp.delenv("EMFFORMER_DATA", raising=False)
        assert main(_train_args(workspace, out)) == 0
    yield out, captured.getvalue()


def _error_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    """The error message main() printed: one line ``emfformer <command>: error: ...``, no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("emfformer ")]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"emfformer {command}: error: ")
    return lines[0]


# ----------------------------------------------------------------------------------------------
# models, train, evaluate, predict
# ----------------------------------------------------------------------------------------------


def test_models_lists_every_registered_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list_models()
    assert all(line.rstrip().endswith("M params") for line in lines)


def test_train_writes_a_run_with_the_flags_applied(cli_run: tuple[Path, str], workspace: Path) -> None:
    run, stdout = cli_run
    assert f"Run folder: {run}" in stdout
    for name in ("best.pt", "last.pt", "log.csv", "log.json", "curves.png", "config.yaml", "splits.json"):
        assert (run / name).is_file(), name
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["model"]["name"] == "emf_former_t" and cfg["optim"]["epochs"] == 1
    assert cfg["seed"] == 3 and cfg["device"] == "cpu" and cfg["out_dir"] == str(run)
    assert cfg["threads"] == 1
    assert cfg["data"]["data_dir"] == str(workspace / "Task99_Phantom")
    assert cfg["data"]["size"] == 32 and cfg["optim"]["batch_size"] == 8 and cfg["progress"] is False


def test_train_precedence_yaml_flags_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """defaults < YAML < flags < --set (README); repeated --set flags add up."""
    seen: list[RunConfig] = []

    def fake_run_training(cfg: RunConfig, **kwargs: object) -> Path:
        seen.append(cfg)
        return Path(cfg.out_dir)

    monkeypatch.setattr(train_module, "run_training", fake_run_training)
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump({"optim": {"lr": 1e-3, "epochs": 5, "weight_decay": 0.1}, "data": {"size": 48}})
    )
    argv = ["train", "--config", str(config), "--epochs", "7", "--seed", "4", "--out", str(tmp_path / "r")]
    assert main([*argv, "--set", "optim.epochs=9", "data.size=64", "--set", "optim.lr=5e-4"]) == 0
    (cfg,) = seen
    assert cfg.optim.weight_decay == 0.1  # YAML beats the default
    assert cfg.seed == 4 and cfg.out_dir == str(tmp_path / "r")  # flags
    assert cfg.optim.epochs == 9  # --set beats --epochs and the YAML
    assert cfg.data.size == 64 and cfg.optim.lr == 5e-4  # both --set groups are applied
    assert cfg.optim.batch_size == RunConfig().optim.batch_size


def test_train_resume(cli_run: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = shutil.copytree(cli_run[0], tmp_path / "run")
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2"]) == 0
    assert [r["epoch"] for r in json.loads((run / "log.json").read_text())] == [1, 2]
    assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == 3  # kept from the checkpoint

    assert main(["train", "--out", str(run), "--epochs", "3"]) == 2  # used folder without --resume
    assert "--resume" in _error_line(capsys, "train")
    assert main(["train", "--resume"]) == 2
    assert "--resume needs --out" in _error_line(capsys, "train")
    assert main(["train", "--out", str(run), "--resume", "--config", "x.yaml"]) == 2
    assert "do not pass --config" in _error_line(capsys, "train")
    assert main(["train", "--out", str(run), "--resume", "--model", "unet"]) == 2
    assert "Cannot change" in _error_line(capsys, "train")


def test_evaluate(cli_run: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, _ = cli_run
    out = tmp_path / "eval"
    args = ["evaluate", "--checkpoint", str(run / "best.pt"), "--out", str(out), "--device", "cpu"]
    assert main([*args, "--max-cases", "1"]) == 0
    stdout = capsys.readouterr().out
    assert "fg Dice" in stdout and "fg mIoU" in stdout and f"Report: {out}/summary.md" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["extra"]["part"] == "test" and metrics["summary"]["num_cases"] == 1
    assert 0.0 <= metrics["summary"]["mean_dice_fg"] <= 1.0

    assert main([*args, "--splits", str(tmp_path / "nope.json")]) == 2
    assert "No split file" in _error_line(capsys, "evaluate")
    assert main(["evaluate", "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "Checkpoint not found" in _error_line(capsys, "evaluate")


def test_predict(
    cli_run: tuple[Path, str], workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, _ = cli_run
    image = workspace / "Task99_Phantom" / "imagesTr" / "hippocampus_002.nii.gz"
    out = tmp_path / "pred"
    args = ["predict", "--checkpoint", str(run / "best.pt"), "--device", "cpu"]
    assert main([*args, "-i", str(image), "-o", str(out), "--overlays"]) == 0
    assert f"Wrote 1 label file(s) to {out}" in capsys.readouterr().out
    assert (out / image.name).is_file() and (out / "overlays" / "hippocampus_002.nii.gz.png").is_file()

    bad = tmp_path / "bad"
    assert main([*args, "-i", str(tmp_path / "nothing.nii.gz"), "-o", str(bad)]) == 2
    assert "does not exist" in _error_line(capsys, "predict")
    assert main([*args, "-i", str(image), "-o", str(image.parent)]) == 2
    assert "holds the inputs" in _error_line(capsys, "predict")

    onnx = tmp_path / "net.onnx"
    assert main(["export", "--checkpoint", str(run / "best.pt"), "--format", "onnx", "-o", str(onnx)]) == 0
    assert "max |logit diff|" in capsys.readouterr().out
    assert main(["predict", "--onnx", str(onnx), "-i", str(image), "-o", str(tmp_path / "via_onnx")]) == 0
    assert (tmp_path / "via_onnx" / image.name).is_file()
    assert main([*args, "--onnx", str(onnx), "-i", str(image), "-o", str(tmp_path / "both")]) == 2
    assert "not both" in _error_line(capsys, "predict")
    assert not bad.exists()


# ----------------------------------------------------------------------------------------------
# errors: exit code 2 and one clear line on stderr
# ----------------------------------------------------------------------------------------------


def test_download_from_an_unreachable_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "datasets"
    rc = main(["download", "hippocampus", "--to", str(target), "--url", "http://127.0.0.1:9/x.tar"])
    assert rc == 2
    line = _error_line(capsys, "download")
    assert "Cannot download http://127.0.0.1:9/x.tar" in line and "--data DIR" in line
    assert not target.exists(), "a failed download must leave nothing behind"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["optim.learning_rate=1"], "Unknown config key 'optim.learning_rate'"),
        (["optimizer.lr=1"], "Unknown config section 'optimizer'"),
        (["data.size=30"], "data.size: input side must be a multiple of 16"),
    ],
)
def test_bad_config_key_exits_2(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], expected: str
) -> None:
    out = tmp_path / "run"
    assert main([*_train_args(workspace, out), *extra]) == 2
    assert expected in _error_line(capsys, "train")
    assert not out.exists(), "a bad config must be refused before the run folder is made"


def test_missing_config_file_exits_2(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--config", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "run")]) == 2
    assert "Config file not found" in _error_line(capsys, "train")


def test_unknown_model_exits_2_listing_valid_names(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _train_args(workspace, tmp_path / "run")
    args[args.index("emf_former_t")] = "emf_former_xl"
    assert main(args) == 2
    line = _error_line(capsys, "train")
    assert "Unknown model 'emf_former_xl'" in line
    assert all(name in line for name in list_models())


def test_missing_data_folder_exits_2(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _train_args(workspace, tmp_path / "run")
    args[args.index("--data") + 1] = str(tmp_path / "no_such_folder")
    assert main(args) == 2
    assert "does not exist" in _error_line(capsys, "train")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["train", "--epochs", "many"],
        ["evaluate", "--part", "x"],
        ["predict", "-i", "x"],
        ["download", "mnist"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage: emfformer" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# the installed console script
# ----------------------------------------------------------------------------------------------


def test_console_script_entry_point(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "emfformer"
    if not script.is_file():
        found = shutil.which("emfformer")
        if found is None:
            pytest.skip("the emfformer console script is not installed (pip install -e .)")
        script = Path(found)
    env = {**os.environ, "EMFFORMER_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(  # --version: the entry point itself (`models` builds 12 networks: 5 s)
        [str(script), "--version"], capture_output=True, text=True, timeout=300, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["emfformer", emfformer.__version__]


# one CLI convention (cli_parsers.py): the argv of each command with its output and compute flags
CONVENTION = [  # argv without the output flag, the compute flags it takes
    (["train", "--config", "c.yaml"], ["--threads", "1", "--device", "cpu"]),
    (["plan", "DATA"], ["--threads", "1"]),
    (["evaluate", "--checkpoint", "c.pt"], ["--threads", "1", "--device", "cpu"]),
    (["predict", "-i", "in"], ["--threads", "1", "--device", "cpu"]),
    (["export", "--format", "onnx"], ["--threads", "1"]),
    (["pack", "a.pt", "b.pt"], []),
    (["report", "RUN"], ["--threads", "1", "--device", "cpu"]),
    (["download", "hippocampus"], []),
    (["bench"], ["--threads", "1", "--device", "cpu"]),
]


@pytest.mark.parametrize(("argv", "compute"), CONVENTION, ids=[a[0] for a, _ in CONVENTION])
@pytest.mark.parametrize("flag", ["-o", "--out", "--output"])
def test_every_command_takes_the_same_output_and_compute_flags(
    argv: list[str], compute: list[str], flag: str
) -> None:
    args = build_parser().parse_args([*argv, flag, "somewhere", *compute])
    assert str(args.out) == "somewhere"
    if compute:
        assert args.threads == 1


@pytest.mark.parametrize(
    ("argv", "attr", "value"),
    [
        (["predict", "-i", "in", "-o", "out", "-chk", "a.pt", "b.pt"], "checkpoint", ["a.pt", "b.pt"]),
        (["evaluate", "-chk", "a.pt"], "checkpoint", ["a.pt"]),
        (["export", "-chk", "a.pt", "--format", "onnx", "-o", "x.onnx"], "checkpoint", "a.pt"),
        (["predict", "-i", "in", "-o", "out", "--save_probabilities"], "save_probabilities", True),
        (["predict", "-i", "in", "-o", "out", "-device", "cpu"], "device", "cpu"),
        (["train", "-f", "2"], "fold", 2),
    ],
    ids=["predict-chk", "evaluate-chk", "export-chk", "save_probabilities", "-device", "train-f"],
)
def test_nnunet_names_are_aliases(argv: list[str], attr: str, value: object) -> None:
    assert getattr(build_parser().parse_args(argv), attr) == value


def test_train_fold_flag_sets_data_fold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}
    monkeypatch.setattr(
        "emfformer.engine.train.run_training", lambda cfg, **kw: seen.update(fold=cfg.data.fold) or tmp_path
    )
    assert main(["train", "--config", "configs/hippocampus.yaml", "-f", "3", "-o", str(tmp_path)]) == 0
    assert seen["fold"] == 3
