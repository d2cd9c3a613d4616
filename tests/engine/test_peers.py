"""The lightweight peers (UNeXt, EGE-UNet, MALUNet) go through every command as EMF-former does:
plan + patches (`train`), `predict`, `evaluate`, `export` and `bench`, on a tiny 2-channel MRI set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from emfformer.cli import main
from emfformer.data.synthetic_nnunet import write_nnunet_dataset
from emfformer.engine.checkpoint import load_checkpoint, model_from_checkpoint

PEERS = ["unext", "ege_unet", "malunet"]
COMMON = ["--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("peers")
    train = write_nnunet_dataset(root / "Dataset_mri2", "mri2", n_cases=4, seed=0, shape=(40, 40, 6))
    held = write_nnunet_dataset(root / "Held_mri2", "mri2", n_cases=1, seed=1, shape=(40, 40, 6))
    return train, held


@pytest.mark.parametrize("name", PEERS)
def test_peer_trains_predicts_scores_exports_and_benches(name: str, datasets, tmp_path: Path) -> None:
    train, held = datasets
    run = tmp_path / "run"
    assert main(["train", "--data", str(train), "--model", name, "--out", str(run), *COMMON, "--set",
                 "data.dataset=msd", "data.fold=-1", "data.n_folds=2", "data.test_fraction=0", "optim.epochs=3",
                 "optim.batch_size=4", f"data.cache_dir={tmp_path / 'cache'}", "progress=false"]) == 0  # fmt: skip
    plan = json.loads((run / "plans.json").read_text())
    assert plan["patch_size"] % 32 == 0  # planned for the peer's stride of 32, not EMF-former's 16
    history = json.loads((run / "log.json").read_text())
    assert len(history) == 3 and history[-1]["train_loss"] < history[0]["train_loss"]  # it learns

    pred = tmp_path / "pred"
    assert main(["predict", "-i", str(held / "imagesTr"), "-o", str(pred), "--checkpoint",
                 str(run / "best.pt"), *COMMON]) == 0  # fmt: skip
    assert (pred / "case_000.nii.gz").is_file()
    scored = tmp_path / "scored"
    assert (
        main(["evaluate", "--pred", str(pred), "--labels", str(held / "labelsTr"), "--out", str(scored)]) == 0
    )
    rows = json.loads((scored / "metrics.json").read_text())["rows"]
    assert [r["case_id"] for r in rows] == ["case_000"]

    onnx_file = tmp_path / f"{name}.onnx"
    assert (
        main(["export", "--checkpoint", str(run / "best.pt"), "--format", "onnx", "-o", str(onnx_file)]) == 0
    )
    model, pre = model_from_checkpoint(load_checkpoint(run / "best.pt"))
    x = torch.randn(1, pre.channels * pre.context, 64, 96)
    with torch.no_grad():
        expected = model(x).numpy()
    got = ort.InferenceSession(str(onnx_file)).run(None, {"image": x.numpy()})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3 * max(1.0, float(np.abs(expected).max())))

    bench = tmp_path / "bench"
    assert main(["bench", "--quick", "--models", name, "--scaling-sizes", "--engines", "onnxruntime",
                 "--engine-models", name, "--out", str(bench), "--threads", "1", "--no-progress"]) == 0  # fmt: skip
    report = (bench / "bench.md").read_text()
    assert name in report
