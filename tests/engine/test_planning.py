"""`emfformer plan`: the same plan as train's, printed and written; the plan travels in checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emfformer.cli import main
from emfformer.engine.checkpoint import load_checkpoint


def test_plan_command_prints_writes_and_matches_the_training_plan(
    msd_phantom: Path, trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "plans.json"
    assert main(["plan", str(msd_phantom), "-o", str(out), "--model", "emf_former_t",
                 "--set", "data.size=32", "optim.batch_size=8"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "patch 32 x 32, batch 8" in printed and "normalisation: MRI: zscore" in printed
    written = json.loads(out.read_text())
    trained = json.loads((trained_run / "plans.json").read_text())
    for key in ("spacing", "slice_axis", "patch_size", "batch_size", "normalization", "orientation"):
        assert written[key] == trained[key], key
    assert load_checkpoint(trained_run / "best.pt")["plan"]["patch_size"] == trained["planned"]["patch_size"]
    assert main(["plan", str(msd_phantom), "-o", str(out), "--model", "emf_former_t"]) == 0  # its own file


def test_plan_refuses_to_replace_a_file_that_is_not_a_plan(msd_phantom: Path, tmp_path: Path) -> None:
    mine = tmp_path / "notes.json"
    mine.write_text('{"my": "notes"}')
    assert main(["plan", str(msd_phantom), "-o", str(mine)]) == 2
    assert mine.read_text() == '{"my": "notes"}'
