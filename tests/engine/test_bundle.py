"""MONAI bundle export: the metadata validates, and MONAI's runner segments a folder like predict."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.bundle import run, verify_metadata

from emfformer.data.synthetic import write_msd_phantoms
from emfformer.engine.bundle import export_bundle
from emfformer.engine.predict import run_prediction

SCHEMA = Path(__file__).parent / "data" / "bundle_metadata_schema.json"


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def bundle(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_bundle(trained_run / "best.pt", tmp_path_factory.mktemp("bundle") / "phantom_bundle")


def test_bundle_layout_and_metadata_validate(bundle: Path, tmp_path: Path) -> None:
    for name in ("configs/metadata.json", "configs/inference.json", "models/model.pt", "docs/README.md",
                 "docs/license.txt"):  # fmt: skip
        assert (bundle / name).is_file(), name
    meta_file = bundle / "configs" / "metadata.json"
    verify_metadata(
        meta_file=str(meta_file), filepath=str(SCHEMA), hash_val=_md5(SCHEMA)
    )  # what `python -m monai.bundle
    # verify_metadata` runs, in-process (a subprocess costs 5 s); it raises on an invalid file
    meta = json.loads(meta_file.read_text())
    assert meta["network_data_format"]["outputs"]["pred"]["value_range"] == [0, 2]
    del meta["task"]  # the check can fail: a metadata file without a mandatory key is refused
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="'task' is a required property"):
        verify_metadata(
            meta_file=str(tmp_path / "metadata.json"), filepath=str(SCHEMA), hash_val=_md5(SCHEMA)
        )


@pytest.mark.filterwarnings("ignore:parsing config_file")  # MONAI's notice that configs run code
def test_monai_runner_segments_a_folder_like_predict(bundle: Path, tmp_path: Path) -> None:
    scans = write_msd_phantoms(tmp_path / "Task98", n_cases=2, seed=5, shape=(20, 26, 9)) / "imagesTr"
    # `python -m monai.bundle run --config_file ... --dataset_dir ...` hands its flags to this function as
    # keyword overrides (python-fire); called in-process, which saves a 5-s interpreter start
    run(
        config_file=str(bundle / "configs" / "inference.json"), bundle_root=str(bundle),
        dataset_dir=str(scans), output_dir=str(tmp_path / "labels"),
    )  # fmt: skip
    expected = run_prediction(scans, tmp_path / "predict", bundle / "models" / "model.pt", progress=False)
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == sorted(p.name for p in expected)
    for path in expected:
        got = nib.load(tmp_path / "labels" / path.name)
        np.testing.assert_array_equal(np.asarray(got.dataobj), np.asarray(nib.load(path).dataobj))
        assert np.allclose(got.affine, nib.load(scans / path.name).affine)


def test_an_existing_folder_is_not_overwritten(trained_run: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an empty folder"):
        export_bundle(trained_run / "best.pt", tmp_path / "taken")
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".taken")]  # no half-built bundle left
