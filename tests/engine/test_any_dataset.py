"""Train, predict and score on tiny synthetic nnU-Net v2 datasets of each kind a user brings.

Each kind trains EMF-former-T for a few seconds through the whole pipeline (fingerprint, plan,
preprocessed store, patches), predicts held-out cases of the same kind with ``--save-probabilities``
and scores them with ``evaluate --pred --labels``: the foreground must be learnt, not only written.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from emfformer.cli import main
from emfformer.data.synthetic_nnunet import write_nnunet_dataset

KINDS = [  # kind, overrides, fg Dice floor, output ending
    ("ct", ["data.size=64", "optim.batch_size=8", "optim.epochs=12"], 0.5, ".nii.gz"),
    ("mri2", ["optim.batch_size=8", "optim.epochs=15"], 0.5, ".nii.gz"),
    ("png", ["optim.batch_size=4", "optim.epochs=25"], 0.5, ".png"),
]


@pytest.mark.parametrize(("kind", "sets", "floor", "ending"), KINDS, ids=[k[0] for k in KINDS])
def test_train_predict_and_score_each_kind(
    kind: str, sets: list[str], floor: float, ending: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = write_nnunet_dataset(tmp_path / f"Dataset_{kind}", kind, n_cases=6, seed=0)
    held = write_nnunet_dataset(tmp_path / f"Held_{kind}", kind, n_cases=2, seed=1)
    common = ["--device", "cpu", "--threads", "1"]
    assert main(["train", "--data", str(data), "--model", "emf_former_t", "--out", str(tmp_path / "run"), *common,
                 "--set", "data.dataset=msd", "data.fold=-1", "data.test_fraction=0", "optim.lr=0.003",
                 f"data.cache_dir={tmp_path / 'cache'}", "progress=false", *sets]) == 0  # fmt: skip
    plan = json.loads((tmp_path / "run" / "plans.json").read_text())
    assert len(plan["normalization"]) == {"ct": 1, "mri2": 2, "png": 3}[kind]
    if kind == "ct":  # CT: the dataset's foreground HU window, then its global mean / std
        assert plan["normalization"][0]["scheme"] == "ct" and plan["planned"]["patch_size"] == 512
        assert plan["patch_size"] == 64  # --set data.size wins over the plan
    pred = tmp_path / "pred"
    assert main(["predict", "-i", str(held / "imagesTr"), "-o", str(pred), "--checkpoint",
                 str(tmp_path / "run" / "best.pt"), "--save-probabilities", *common]) == 0  # fmt: skip
    labels = sorted(p.name for p in pred.iterdir() if p.name.endswith(ending))
    assert labels == [f"case_000{ending}", f"case_001{ending}"]  # no _0000 in the names
    probs = np.load(pred / "case_000.npz")["probabilities"]
    n_classes = {"ct": 4, "mri2": 3, "png": 2}[kind]
    ref_shape = (
        np.asarray(nib.load(held / "labelsTr" / "case_000.nii.gz").shape) if ending != ".png" else None
    )
    if ref_shape is not None:
        assert probs.shape == (n_classes, *ref_shape[::-1])  # nnU-Net's (C, z, y, x)
    np.testing.assert_allclose(probs.astype(np.float32).sum(0), 1.0, atol=1e-2)
    assert (
        main(
            [
                "evaluate",
                "--pred",
                str(pred),
                "--labels",
                str(held / "labelsTr"),
                "--out",
                str(tmp_path / "ev"),
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    dice = metrics["summary"]["mean_dice_fg"]
    assert dice > floor, f"{kind}: held-out fg Dice {dice:.3f} <= {floor}"
    assert "fg Dice" in capsys.readouterr().out
    if kind == "mri2":  # the notebook API takes a channels-last array for a multi-channel model
        from emfformer.api import load_pretrained, segment

        model = load_pretrained(tmp_path / "run" / "best.pt")
        t2, adc = (
            np.asarray(nib.load(held / "imagesTr" / f"case_000_{c:04d}.nii.gz").dataobj) for c in (0, 1)
        )
        array_labels = segment(
            np.stack([t2, adc], -1), model, affine=nib.load(held / "labelsTr" / "case_000.nii.gz").affine
        )
        np.testing.assert_array_equal(array_labels, np.asarray(nib.load(pred / "case_000.nii.gz").dataobj))
        with pytest.raises(ValueError, match=r"\(X, Y, Z, 2\)"):
            segment(t2, model)


@pytest.mark.parametrize("ending", [".nrrd", ".mha", ".nii"])
def test_an_itk_or_plain_nifti_dataset_trains_and_predicts_in_its_own_format(
    ending: str, tmp_path: Path
) -> None:
    """A dataset whose file_ending is .nrrd / .mha / .nii goes through planning, training and predict."""
    import SimpleITK as sitk

    src = write_nnunet_dataset(tmp_path / "src", "mri2", n_cases=5, shape=(24, 24, 4))
    data = tmp_path / "Dataset_conv"
    for folder in ("imagesTr", "labelsTr"):
        (data / folder).mkdir(parents=True)
        for f in sorted((src / folder).iterdir()):
            sitk.WriteImage(sitk.ReadImage(str(f)), str(data / folder / f.name.replace(".nii.gz", ending)))
    meta = json.loads((src / "dataset.json").read_text())
    (data / "dataset.json").write_text(json.dumps({**meta, "file_ending": ending}))
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--model", "emf_former_t", "--out", str(run), "--device", "cpu",
                 "--threads", "1", "--set", "data.dataset=msd", "data.fold=-1", "data.test_fraction=0",
                 "optim.epochs=1", "optim.batch_size=4", f"data.cache_dir={tmp_path / 'cache'}",
                 "progress=false"]) == 0  # fmt: skip
    assert main(["predict", "-i", str(data / "imagesTr"), "-o", str(tmp_path / "pred"), "--checkpoint",
                 str(run / "best.pt"), "--device", "cpu"]) == 0  # fmt: skip
    out = sorted(p.name for p in (tmp_path / "pred").iterdir())
    assert out == [f"case_00{i}{ending}" for i in range(5)]
    written = sitk.ReadImage(str(tmp_path / "pred" / out[0]))
    reference = sitk.ReadImage(str(data / "labelsTr" / out[0]))
    assert written.GetSize() == reference.GetSize() and written.GetSpacing() == reference.GetSpacing()
