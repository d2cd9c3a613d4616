"""Checkpoints: no code runs on load, ensembles pack and load, shipped names resolve, bad weights fail clearly."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from emfformer.engine.checkpoint import (
    SHIPPED,
    load_checkpoint,
    load_members,
    members_from_checkpoint,
    model_from_checkpoint,
    pack_ensemble,
    resolve_checkpoint,
    save_checkpoint,
)


class _Payload:
    """Unpickling this runs ``touch <marker>``: what a crafted checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("via", ["torch.save", "plain pickle"])
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on the hand-made pickle
def test_a_malicious_checkpoint_does_not_run(tmp_path: Path, via: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"model": {}, "model_name": "emf_former_t", "model_kwargs": {}, "preprocess": {},
               "class_names": ["a", "b"], "x": _Payload(marker)}  # fmt: skip
    if via == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(ValueError, match="Cannot read checkpoint"):
        load_checkpoint(path)
    assert not marker.exists(), "the checkpoint ran code while loading"


def test_run_checkpoints_pack_into_one_ensemble(trained_run: Path, tmp_path: Path) -> None:
    state = load_checkpoint(trained_run / "best.pt")
    assert state["splits"]["test"], "a run checkpoint carries its split"
    out = pack_ensemble([trained_run / "best.pt", trained_run / "last.pt"], tmp_path / "ens.pt", tta=True)
    ens = load_checkpoint(out)
    assert len(ens["members"]) == 2 and ens["tta"] is True
    assert ens["splits"] == state["splits"] and ens["class_names"] == state["class_names"]
    assert "optimizer" not in ens["members"][0] and "rng" not in ens["members"][0]
    members = members_from_checkpoint(ens)
    assert len(members) == 2 and not members[0][0].training
    assert out.stat().st_size < (trained_run / "best.pt").stat().st_size * 2


def test_checkpoints_record_where_they_were_trained_and_packs_keep_it(
    trained_run: Path, tmp_path: Path
) -> None:
    env = load_checkpoint(trained_run / "best.pt")["environment"]
    assert env["torch"] == torch.__version__ and env["python"] and env["machine"]
    pack_ensemble([trained_run / "best.pt"], tmp_path / "ens.pt")
    assert load_checkpoint(tmp_path / "ens.pt")["members"][0]["environment"] == env


def test_packing_a_checkpoint_twice_is_refused(trained_run: Path, tmp_path: Path) -> None:
    best = trained_run / "best.pt"
    with pytest.raises(ValueError, match="is given twice"):
        pack_ensemble([best, trained_run / ".." / trained_run.name / "best.pt"], tmp_path / "ens.pt")
    assert not (tmp_path / "ens.pt").exists()


def test_packing_checkpoints_of_different_splits_is_refused(trained_run: Path, tmp_path: Path) -> None:
    state = load_checkpoint(trained_run / "best.pt")
    state["splits"] = {**state["splits"], "test": ["someone_else"]}
    save_checkpoint(tmp_path / "other.pt", state)
    with pytest.raises(ValueError, match="disagree on splits"):
        pack_ensemble([trained_run / "best.pt", tmp_path / "other.pt"], tmp_path / "ens.pt")
    assert not (tmp_path / "ens.pt").exists()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda s: s["model_kwargs"].update(num_classes=5), "do not fit their class names: the model has 5"),
        (lambda s: s.update(model_name="emf_former_s"), r"do not fit.*size mismatch for stem"),
        (lambda s: s["model"].pop(next(iter(s["model"]))), r"do not fit.*missing keys stem\."),
        (
            lambda s: s["model"].update({"extra.weight": torch.zeros(3)}),
            "do not fit.*unexpected keys extra.weight",
        ),
        (lambda s: s["model_kwargs"].update(bogus=1), "do not fit"),
        (lambda s: s.update(class_names=["only", "two"]), "do not fit their class names"),
        (lambda s: next(iter(s["model"].values())).fill_(float("nan")), "NaN/inf"),
        (
            lambda s: s["preprocess"].update(context=3),
            r"takes 1 input channel\(s\), preprocess gives context 3",
        ),
        (
            lambda s: s["preprocess"].update(channels=2, normalization=None),
            "preprocess gives context 1 x channels 2 = 2",
        ),
        (lambda s: s["preprocess"].update(size=40), "preprocess.size 40: input side must be a multiple of"),
    ],
    ids=[
        "num_classes",
        "architecture",
        "missing key",
        "extra key",
        "bad kwargs",
        "class names",
        "nan weights",
        "context",
        "channels",
        "size",
    ],
)
def test_weights_that_do_not_fit_their_model_are_a_value_error(trained_run: Path, change, match: str) -> None:
    state = load_checkpoint(trained_run / "best.pt")
    change(state)
    with pytest.raises(ValueError, match=match):
        model_from_checkpoint(state)


def test_shipped_names_resolve_and_unknown_paths_say_what_exists(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resolve_checkpoint(None) == resolve_checkpoint("hippocampus") == resolve_checkpoint("HIPPOCAMPUS")
    assert resolve_checkpoint("hippocampus").name == SHIPPED["hippocampus"]
    assert resolve_checkpoint(trained_run) == trained_run / "best.pt"  # a run folder: its best checkpoint
    (tmp_path / "hippocampus").mkdir()  # a data folder of that name does not hide the shipped model
    monkeypatch.chdir(tmp_path)
    assert resolve_checkpoint("hippocampus") == resolve_checkpoint(None)
    assert resolve_checkpoint("hippocampus").name == SHIPPED["hippocampus"]
    with pytest.raises(ValueError, match="folder without best.pt"):
        resolve_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="hippocampus"):
        resolve_checkpoint(tmp_path / "missing.pt")


def test_numpy_rng_state_of_older_checkpoints_still_loads(trained_run: Path, tmp_path: Path) -> None:
    state = load_checkpoint(trained_run / "best.pt")
    state["rng"]["numpy"] = np.random.get_state()  # emfformer 0.1 stored the raw numpy tuple
    save_checkpoint(tmp_path / "old.pt", state)
    assert isinstance(load_checkpoint(tmp_path / "old.pt")["rng"]["numpy"][1], np.ndarray)


def test_an_ensemble_without_members_is_one_clear_error(trained_run: Path, tmp_path: Path) -> None:
    import nibabel as nib

    from emfformer.engine.predict import run_prediction

    state = load_checkpoint(trained_run / "best.pt")
    torch.save({"members": [], "class_names": state["class_names"]}, tmp_path / "empty.pt")
    with pytest.raises(ValueError, match="lists no members"):
        load_members(tmp_path / "empty.pt")
    scan = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 4), np.float32), np.eye(4)), scan)
    with pytest.raises(ValueError, match="lists no members"):
        run_prediction(scan, tmp_path / "out", tmp_path / "empty.pt", progress=False)
    assert not (tmp_path / "out").exists()
