"""The never-destroy rule (guard.py), command by command: every command that writes refuses its own
inputs, a checkpoint, and foreign existing files (one error line, exit 2, the file untouched), and
rewrites its own previous output. docs/reliability.md ("Never destroys") names these tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from emfformer.cli import main
from emfformer.guard import CONFIG_MARKER

SCAN = "hippocampus_001.nii.gz"


def _refused(argv: list[str], target: Path, capsys: pytest.CaptureFixture[str], word: str) -> None:
    """``argv`` exits 2 with one error line naming ``target`` and ``word``; ``target`` is unchanged."""
    before = target.read_bytes() if target.is_file() else None
    capsys.readouterr()
    assert main(argv) == 2
    # progress bars (no newline of their own) may share the error's line: keep what follows them
    err = [s[s.index("emfformer ") :] for s in capsys.readouterr().err.splitlines() if "emfformer " in s]
    assert len(err) == 1 and str(target) in err[0] and word in err[0], err
    assert (target.read_bytes() if target.is_file() else None) == before


def _scans(msd_phantom: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(msd_phantom / "imagesTr" / SCAN, folder / SCAN)
    return folder


def _predict(src: Path, out: Path, ckpt: Path, *extra: str) -> list[str]:
    return ["predict", "-i", str(src), "-o", str(out), "--checkpoint", str(ckpt), "--device", "cpu",
            "--overlays", "--save-probabilities", *extra]  # fmt: skip


# (name of the output in the output folder, the option that makes it)
PREDICT_OUTPUTS = [SCAN, "hippocampus_001.npz", f"overlays/{SCAN}.png"]


@pytest.mark.parametrize("name", PREDICT_OUTPUTS)
def test_predict_refuses_a_foreign_output_file_and_overwrites_it_only_when_asked(
    name: str, trained_run: Path, msd_phantom: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = _scans(msd_phantom, tmp_path / "labels"), tmp_path / "data"
    foreign = out / name
    foreign.parent.mkdir(parents=True)
    shutil.copy(msd_phantom / "imagesTr" / SCAN, foreign)  # the user's scan, same name as an output
    _refused(_predict(src, out, trained_run / "best.pt"), foreign, capsys, "--overwrite")
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == [Path(name).name], "something was written"
    assert main(_predict(src, out, trained_run / "best.pt", "--overwrite")) == 0
    assert foreign.read_bytes() != (msd_phantom / "imagesTr" / SCAN).read_bytes()


def test_predict_rewrites_its_own_output_and_never_an_input(
    trained_run: Path, msd_phantom: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = _scans(msd_phantom, tmp_path / "in"), tmp_path / "out"
    assert main(_predict(src, out, trained_run / "best.pt")) == 0
    assert main(_predict(src, out, trained_run / "best.pt")) == 0  # its own previous output: rewritten
    (out / SCAN).unlink()
    os.link(src / SCAN, out / SCAN)  # the output is the input (a hard link): refused even with --overwrite
    _refused(_predict(src, out, trained_run / "best.pt", "--overwrite"), out / SCAN, capsys, "input")


def _report(run: Path, out: Path, *extra: str) -> list[str]:
    return ["report", str(run), "-o", str(out), "--no-overlays", *extra]


@pytest.mark.parametrize("name", ["best.pt", "log.csv", "config.yaml"])
def test_report_never_replaces_a_file_of_the_run_it_reports(
    name: str, trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _refused(_report(trained_run, trained_run / name, "--overwrite"), trained_run / name, capsys, "input")


def test_report_refuses_a_foreign_file_and_rewrites_its_own(
    trained_run: Path, msd_phantom: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scan = shutil.copy(msd_phantom / "imagesTr" / SCAN, tmp_path / "scan.nii.gz")
    _refused(_report(trained_run, Path(scan)), Path(scan), capsys, "--overwrite")
    page = tmp_path / "report.html"
    assert main(_report(trained_run, page)) == 0
    assert main(_report(trained_run, page)) == 0, "its own previous report is rewritten"
    assert 'content="emfformer"' in page.read_text()


def _export(ckpt: Path, out: Path, fmt: str = "torchscript", *extra: str) -> list[str]:
    return ["export", "--checkpoint", str(ckpt), "--format", fmt, "-o", str(out), *extra]


def _pack(ckpt: Path, out: Path, *extra: str) -> list[str]:
    return ["pack", str(ckpt), "-o", str(out), *extra]


@pytest.mark.parametrize("command", [_export, _pack], ids=["export", "pack"])
def test_export_and_pack_never_replace_their_source_checkpoint(
    command: Callable[..., list[str]], trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    best = trained_run / "best.pt"
    _refused(command(best, best, "--overwrite") if command is _pack else command(best, best, "torchscript",
             "--overwrite"), best, capsys, "input")  # fmt: skip


def test_pack_refuses_another_run_checkpoint_and_rewrites_its_own_pack(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = Path(shutil.copy(trained_run / "last.pt", tmp_path / "other_best.pt"))
    _refused(_pack(trained_run / "best.pt", other), other, capsys, "--overwrite")
    pack = tmp_path / "ens.pt"
    assert main(_pack(trained_run / "best.pt", pack)) == 0
    assert main(_pack(trained_run / "best.pt", pack)) == 0, "its own previous pack is rewritten"


@pytest.mark.parametrize(
    ("fmt", "name", "word"),
    [("onnx", "mymodel", ".onnx"), ("torchscript", "mymodel", ".pt"), ("onnx", "folder", "folder")],
)
def test_export_refuses_a_name_without_its_suffix_or_a_folder_before_any_work(
    fmt: str, name: str, word: str, trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "folder").mkdir()
    _refused(_export(trained_run / "best.pt", tmp_path / name, fmt), tmp_path / name, capsys, word)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"], "a file was left behind"


def test_export_refuses_a_foreign_file_and_rewrites_its_own(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = tmp_path / "model.pt"
    mine.write_bytes(b"my own notes")
    _refused(_export(trained_run / "best.pt", mine), mine, capsys, "--overwrite")
    mine.unlink()
    assert main(_export(trained_run / "best.pt", mine)) == 0
    assert main(_export(trained_run / "best.pt", mine)) == 0, "its own previous export is rewritten"


def _train(data: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--model", "emf_former_t", "--epochs", "1", "--out", str(out),
            "--device", "cpu", "--threads", "1", "--set", "data.size=32", "optim.batch_size=8", "progress=false",
            f"data.cache_dir={cache}", *extra]  # fmt: skip


@pytest.mark.parametrize("name", ["config.yaml", "plans.json", "splits.json", "log.csv"])
def test_train_refuses_a_folder_holding_run_files_it_did_not_write(
    name: str, msd_phantom: Path, slice_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / name).write_text("data: {data_dir: mine}\n")  # the user's own file, in `--out .`
    _refused(_train(msd_phantom, tmp_path, slice_cache), tmp_path, capsys, name)
    assert (tmp_path / name).read_text() == "data: {data_dir: mine}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name], "train wrote something"


def test_train_reuses_its_own_folder_and_resume_refuses_before_writing(
    msd_phantom: Path, slice_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert main(_train(msd_phantom, run, slice_cache)) == 0
    assert (run / "config.yaml").read_text().splitlines()[0] == CONFIG_MARKER
    (run / "last.pt").unlink()  # train's own folder without a training: a new run may go there
    (run / "best.pt").unlink()
    assert main(_train(msd_phantom, run, slice_cache)) == 0
    config = (run / "config.yaml").read_bytes()
    other = tmp_path / "Task98_Other"
    shutil.copytree(msd_phantom, other)
    for p in sorted((other / "imagesTr").iterdir())[:2]:  # another dataset: its cases differ
        p.unlink()
        (other / "labelsTr" / p.name).unlink()
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--data", str(other)]) == 2
    assert (run / "config.yaml").read_bytes() == config, "the refused values were written"
    assert yaml.safe_load(config)["data"]["data_dir"] == str(msd_phantom)


def test_plan_refuses_a_dataset_file_and_a_foreign_file_and_rewrites_its_own(
    msd_phantom: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = Path(shutil.copytree(msd_phantom, tmp_path / "Task96_Plan"))
    own_input = data / "dataset.json"
    _refused(["plan", str(data), "-o", str(own_input), "--overwrite"], own_input, capsys, "input")
    foreign = tmp_path / "notes.json"
    foreign.write_text('{"mine": 1}\n')
    _refused(["plan", str(data), "-o", str(foreign)], foreign, capsys, "--overwrite")
    plans = tmp_path / "plans.json"
    assert main(["plan", str(data), "-o", str(plans)]) == 0
    assert main(["plan", str(data), "-o", str(plans)]) == 0, "its own previous plan is rewritten"


def test_evaluate_refuses_a_foreign_report_folder_and_rewrites_its_own(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval"
    out.mkdir()
    (out / "summary.md").write_text("my notes\n")
    argv = ["evaluate", "--checkpoint", str(trained_run / "best.pt"), "--out", str(out), "--device", "cpu"]
    _refused(argv, out / "summary.md", capsys, "--overwrite")
    assert main([*argv, "--overwrite"]) == 0
    assert main(argv) == 0, "its own previous report is rewritten"
    assert (out / "summary.md").read_text() != "my notes\n"


def test_an_evaluation_report_never_goes_into_a_dataset_folder(tmp_path: Path) -> None:
    from emfformer.guard import check_report_dir

    data = tmp_path / "Dataset"
    (data / "labelsTr").mkdir(parents=True)
    (data / "dataset.json").write_text("{}")
    (data / "labelsTr" / "case_000.nii.gz").write_bytes(b"x")
    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "a.nrrd").write_bytes(b"x")
    for folder in (data / "labelsTr", data, scans):
        with pytest.raises(ValueError, match="an evaluation report does not go there"):
            check_report_dir(folder, overwrite=True)
    check_report_dir(tmp_path / "fresh")  # a new folder is fine
