"""emfformer export: ONNX and TorchScript files match PyTorch, and predict runs them with the same labels."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from emfformer.engine.export import PARITY_ATOL, export_checkpoint, load_exported
from emfformer.engine.predict import run_prediction


@pytest.fixture
def scans(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, shape in enumerate(((24, 28, 12), (20, 30, 9))):
        nib.save(
            nib.Nifti1Image(rng.normal(size=shape).astype(np.float32), np.eye(4)), folder / f"s{i}.nii.gz"
        )
    return folder


@pytest.mark.parametrize(("fmt", "suffix"), [("onnx", ".onnx"), ("torchscript", ".pt")])
def test_export_matches_pytorch_and_predicts_the_same_labels(
    trained_run: Path, scans: Path, tmp_path: Path, fmt: str, suffix: str
) -> None:
    out = tmp_path / f"model{suffix}"
    meta = export_checkpoint(trained_run / "best.pt", fmt, out)
    assert out.is_file() and json.loads((tmp_path / f"model{suffix}.json").read_text()) == meta
    assert meta["members"][0]["max_abs_logit_diff"] <= PARITY_ATOL
    members, class_names, _ = load_exported(out)
    assert len(members) == 1 and class_names == meta["class_names"]

    ref = run_prediction(scans, tmp_path / "torch", trained_run / "best.pt", progress=False)
    got = run_prediction(scans, tmp_path / fmt, exported=out, progress=False)
    for a, b in zip(ref, got, strict=True):
        np.testing.assert_array_equal(np.asarray(nib.load(a).dataobj), np.asarray(nib.load(b).dataobj))


def test_export_refuses_unknown_formats_and_missing_sidecars(trained_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="format must be"):
        export_checkpoint(trained_run / "best.pt", "tflite", tmp_path / "m.tflite")
    (tmp_path / "lonely.onnx").write_bytes(b"")
    with pytest.raises(ValueError, match="No sidecar"):
        load_exported(tmp_path / "lonely.onnx")


def _edit_sidecar(out: Path, change) -> None:
    sidecar = out.with_name(out.name + ".json")
    meta = json.loads(sidecar.read_text())
    change(meta)
    sidecar.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m: m.update(members=[]), "'members' list is empty"),
        (lambda m: m.update(class_names=m["class_names"][:2]), "gives 3 classes, the sidecar names 2"),
        (lambda m: m["members"][0]["preprocess"].update(context=3), "does not take 3 input channel"),
        (lambda m: m["members"][0].update(file="gone.onnx"), "gone.onnx is missing"),
        (None, "cannot be read"),  # the ONNX file cut to half its bytes
    ],
    ids=["no members", "two class names", "context", "missing file", "truncated"],
)
def test_an_edited_sidecar_or_damaged_onnx_is_one_clear_error(
    trained_run: Path, scans: Path, tmp_path: Path, change, match: str
) -> None:
    out = tmp_path / "model.onnx"
    export_checkpoint(trained_run / "best.pt", "onnx", out)
    if change is None:
        out.write_bytes(out.read_bytes()[: out.stat().st_size // 2])
    else:
        _edit_sidecar(out, change)
    with pytest.raises(ValueError, match=match) as info:
        run_prediction(scans, tmp_path / "pred", exported=out, progress=False)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "pred").exists()
