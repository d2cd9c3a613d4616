"""A full disk on a real small filesystem (a tmpfs mounted for the test; needs root, else skipped):
train and predict stop with one line naming the file, exit 2, with no partial file, no temp file
and no empty folder left, and the previous checkpoint intact."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from emfformer.cli import main


def _mount(folder: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs, unmounted afterwards."""
    folder = tmp_path / "disk"
    _mount(folder, "2m")
    try:
        yield folder
    finally:
        subprocess.run(
            ["umount", "-l", str(folder)], check=False
        )  # lazy: detached even if a file is still open


def _fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` to the last byte, then free ``leave`` bytes again."""
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    os.truncate(filler, max(filler.stat().st_size - leave, 0))


def _leftovers(disk: Path) -> list[str]:
    """Temp files and empty folders under ``disk``."""
    temps = [p.name for p in disk.rglob(".*") if p.is_file()]
    empty = [p.name for p in disk.rglob("*") if p.is_dir() and not any(p.iterdir())]
    return temps + empty


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr().err
    # a progress bar may end on the line the error starts (tqdm writes no newline of its own)
    err = [line[line.index("emfformer ") :] for line in captured.splitlines() if "emfformer " in line]
    assert len(err) == 1, captured[-2000:]
    assert "Traceback" not in err[0]
    return err[0]


def test_a_checkpoint_that_does_not_fit_stops_with_one_line(
    small_disk: Path, msd_phantom: Path, slice_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = small_disk / "run"
    argv = ["train", "--data", str(msd_phantom), "--model", "emf_former_t", "--epochs", "1", "--out", str(out),
            "--device", "cpu", "--threads", "1", "--set", "data.size=32", "optim.batch_size=8", "progress=false",
            f"data.cache_dir={slice_cache}"]  # fmt: skip
    assert main(argv) == 2
    line = _one_line(capsys)
    assert "best.pt" in line and "No space left" in line, line
    assert _leftovers(small_disk) == [], "a temp file or an empty folder was left"


def test_a_resumed_run_on_a_full_disk_keeps_its_last_checkpoint(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    disk = tmp_path / "disk"
    used = sum(p.stat().st_size for p in trained_run.iterdir())
    _mount(disk, str(used + 2**20))  # the run fits, a second checkpoint does not
    try:
        run = Path(shutil.copytree(trained_run, disk / "run"))
        before = (run / "last.pt").read_bytes()
        assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--threads", "1"]) == 2
        line = _one_line(capsys)
        assert ".pt" in line and "intact" in line, line
        assert (run / "last.pt").read_bytes() == before, "the previous checkpoint was damaged"
        assert _leftovers(disk) == []
    finally:
        subprocess.run(
            ["umount", "-l", str(disk)], check=False
        )  # lazy: detached even if a file is still open


def test_predict_into_a_full_disk_names_the_file_and_leaves_no_empty_folder(
    small_disk: Path, trained_run: Path, msd_phantom: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(small_disk, leave=8192)  # room for a label file, not for its overlay
    scan = msd_phantom / "imagesTr" / "hippocampus_001.nii.gz"
    out = small_disk / "labels"
    argv = ["predict", "-i", str(scan), "-o", str(out), "--checkpoint", str(trained_run / "best.pt"),
            "--device", "cpu", "--overlays"]  # fmt: skip
    assert main(argv) == 2
    line = _one_line(capsys)
    assert str(out) in line and "No space left" in line, line
    assert _leftovers(small_disk) == [], "a temp file or an empty folder was left"
