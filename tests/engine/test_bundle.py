"""MONAI bundle export: MONAI's own verify commands pass, its loader and transforms work on the bundle, and
MONAI's runner segments a folder like predict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, load, verify_metadata, verify_net_in_out

from emfformer.data.cases import Case, load_volume
from emfformer.data.geometry import to_model_grid
from emfformer.data.normalize import normalize_channels
from emfformer.data.preprocess import PreprocessConfig
from emfformer.data.synthetic import write_msd_phantoms
from emfformer.engine.bundle import export_bundle
from emfformer.engine.bundle_meta import channel_names, modality
from emfformer.engine.checkpoint import load_checkpoint, model_from_checkpoint, resolve_checkpoint
from emfformer.engine.config import load_config
from emfformer.engine.predict import run_prediction
from emfformer.engine.train import run_training

# the model zoo's metadata schema, byte for byte (tests/engine/data/README.md says where it comes from)
SCHEMA = Path(__file__).parent / "data" / "meta_schema_20240725.json"
SCHEMA_MD5 = "76e1add273836515d0bbb3bc71962474"
# MONAI's notices that configs run code (`_target_`, `$` expressions): these are our own bundles
TRUSTED = pytest.mark.filterwarnings("ignore:parsing config_file", "ignore:.*trust")


@pytest.fixture(scope="module")
def bundle(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_bundle(trained_run / "best.pt", tmp_path_factory.mktemp("bundle") / "phantom_bundle")


@pytest.fixture(scope="module")
def peer_bundle(msd_phantom: Path, slice_cache: Path, make_overrides, tmp_path_factory) -> Path:
    """The bundle of a 1-epoch UNeXt (input multiple 32): network_def is not EMF-former only."""
    out = tmp_path_factory.mktemp("runs") / "unext"
    run = run_training(
        load_config(None, make_overrides(msd_phantom, out, slice_cache, **{"model.name": "unext"}))
    )
    return export_bundle(run / "best.pt", tmp_path_factory.mktemp("bundle") / "unext_bundle")


def _monai(*args: str) -> subprocess.Popen:
    """``python -m monai.bundle ARGS`` in a fresh interpreter that imports this checkout's emfformer."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"), *sys.path])}
    cmd = [sys.executable, "-m", "monai.bundle", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _files(b: Path) -> list[str]:
    return [
        "--meta_file",
        str(b / "configs" / "metadata.json"),
        "--config_file",
        str(b / "configs" / "inference.json"),
    ]


def test_monai_verify_commands_pass(bundle: Path, peer_bundle: Path) -> None:
    # the commands the model zoo's CI runs on a submitted bundle, started together (each imports torch
    # and MONAI for 5 s); verify_metadata finds the schema at --filepath with the right md5 and skips
    # the download of metadata["schema"], so it runs offline against the model zoo's own schema
    runs = {
        "net": _monai("verify_net_in_out", "network_def", *_files(bundle), "--device", "cpu"),
        "peer": _monai("verify_net_in_out", "network_def", *_files(peer_bundle), "--device", "cpu"),
        "meta": _monai("verify_metadata", "--meta_file", str(bundle / "configs" / "metadata.json"),
                       "--filepath", str(SCHEMA), "--hash_val", SCHEMA_MD5, "--hash_type", "md5"),
    }  # fmt: skip
    outputs = {name: p.communicate(timeout=300)[0] for name, p in runs.items()}
    for name, p in runs.items():
        assert p.returncode == 0, outputs[name]
    assert "data shape of network is verified with no error" in outputs["net"]
    assert "data shape of network is verified with no error" in outputs["peer"]
    assert (
        "skipped downloading" in outputs["meta"] and "metadata is verified with no error" in outputs["meta"]
    )


def test_metadata_comes_from_the_checkpoint(bundle: Path, peer_bundle: Path, tmp_path: Path) -> None:
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    fmt = meta["network_data_format"]
    image = fmt["inputs"]["image"]
    assert (image["modality"], image["num_channels"], image["channel_def"]) == ("MR", 1, {"0": "MRI"})
    assert image["spatial_shape"] == ["16*n", "16*n"]  # EMF-former: 4 stride-2 levels
    peer = json.loads((peer_bundle / "configs" / "metadata.json").read_text())
    assert peer["network_data_format"]["inputs"]["image"]["spatial_shape"] == ["32*n", "32*n"]
    assert peer["name"] == "UNeXt Hippocampus segmentation" and "UNeXt" in peer["references"][0]
    assert fmt["outputs"]["pred"]["channel_def"] == {"0": "background", "1": "Anterior", "2": "Posterior"}
    assert fmt["post_processed_outputs"]["pred"]["value_range"] == [0, 2]
    assert meta["pred_classes"] == "0 background, 1 Anterior, 2 Posterior"
    assert meta["data_source"] == "Hippocampus"
    del meta["task"]  # the check can fail: a metadata file without a mandatory key is refused
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="'task' is a required property"):
        verify_metadata(meta_file=str(tmp_path / "metadata.json"), filepath=str(SCHEMA), hash_val=SCHEMA_MD5)


def test_modality_from_channel_names() -> None:
    one, two = PreprocessConfig(), PreprocessConfig(channels=2)
    assert modality(["CT"], one) == "CT" and modality(["non-contrast CT"], one) == "CT"
    assert modality(["MRI"], one) == modality(["image"], one) == "MR"
    assert modality(["T2", "ADC"], two) == "MR" and modality(["PET", "CT"], two) == "PT+CT"
    assert modality(["R", "G", "B"], PreprocessConfig(channels=3)) == "RGB"
    ct = PreprocessConfig(
        normalization=({"scheme": "ct", "lower": -100, "upper": 200, "mean": 50, "std": 40},)
    )
    assert modality(["image"], ct) == "CT"  # no name: the planned normalisation tells


def test_shipped_25d_bundle_takes_context_channels(tmp_path: Path) -> None:
    # the shipped Hippocampus pack: 3 EMF-former-S on 3 slice axes, each with 3 adjacent slices as input
    b = export_bundle("hippocampus", tmp_path / "hippocampus_bundle")
    image = json.loads((b / "configs" / "metadata.json").read_text())["network_data_format"]["inputs"][
        "image"
    ]
    assert image["num_channels"] == 3
    # the channel is named by the member's plan (MSD's "MRI"), else "image"
    name = channel_names(load_checkpoint(resolve_checkpoint("hippocampus"))["members"][0])[0]
    assert name in ("MRI", "image")
    assert list(image["channel_def"].values()) == [
        f"{name}, slice -1",
        f"{name}, slice +0",
        f"{name}, slice +1",
    ]
    meta, config = str(b / "configs" / "metadata.json"), str(b / "configs" / "inference.json")
    verify_net_in_out("network_def", meta, config, device="cpu")  # in-process: what the command runs
    with pytest.raises(RuntimeError):  # and it checks: 2 channels do not fit the network
        verify_net_in_out(
            "network_def",
            meta,
            config,
            device="cpu",
            **{"_meta_#network_data_format#inputs#image#num_channels": 2},
        )


@TRUSTED
def test_monai_load_gives_the_trained_network(bundle: Path, trained_run: Path) -> None:
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    net = parser.get_parsed_content("network_def")  # MONAI builds it from the config
    net.load_state_dict(torch.load(bundle / "models" / "model.pt", weights_only=True))  # strict: every key
    fresh = parser.get_parsed_content("network_def", lazy=False)  # a second instance, untrained
    loaded = load(
        bundle.name, model=fresh, bundle_dir=bundle.parent, device="cpu", progress=False
    )  # model.pt
    ours, _ = model_from_checkpoint(load_checkpoint(trained_run / "best.pt"))
    x = torch.randn(2, 1, 32, 48)
    with torch.no_grad():
        for model in (net.eval(), loaded.eval()):
            torch.testing.assert_close(model(x), ours(x))


@TRUSTED
def test_monai_transforms_match_emfformer_geometry(bundle: Path, msd_phantom: Path, tmp_path: Path) -> None:
    # an LPS copy of a phantom in a constant border, 0.4 % off the model's spacing: reoriented, cropped,
    # not resampled (within 1 %), by both
    img, lab = (nib.load(msd_phantom / d / "hippocampus_001.nii.gz") for d in ("imagesTr", "labelsTr"))
    flip = np.diag([-1.004, -1.0, 1.0, 1.0])
    flip[:2, 3] = np.array(img.shape[:2]) + 1
    for name, arr, fill in (
        ("image", np.asarray(img.dataobj, np.float32), -7.0),
        ("label", np.asarray(lab.dataobj), 0),
    ):
        moved = np.pad(arr[::-1, ::-1], 2, constant_values=fill)
        nib.save(nib.Nifti1Image(moved, img.affine @ flip), tmp_path / f"{name}.nii.gz")
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["output_dir"] = str(tmp_path / "out")
    data = parser.get_parsed_content("preprocessing")({"image": str(tmp_path / "image.nii.gz")})
    pre = PreprocessConfig.from_dict(
        load_checkpoint(bundle / "models" / "ensemble.pt")["members"][0]["preprocess"]
    )
    vol = load_volume(Case("x", tmp_path / "image.nii.gz", tmp_path / "label.nii.gz"))
    grid, grid_label, info = to_model_grid(
        vol.image, vol.affine, pre.orientation, pre.spacing, vol.label, True
    )
    assert info.bbox is not None and info.ornt is not None and not info.resampled
    expected = normalize_channels(grid, pre.normalization, pre.clip_percentiles)
    np.testing.assert_allclose(data["image"][0].numpy(), expected, atol=1e-5)
    # postprocessing: logits on that grid -> labels on the scan's grid, as emfformer puts them back
    data["pred"] = 10.0 * torch.nn.functional.one_hot(torch.as_tensor(grid_label).long(), 3).permute(
        3, 0, 1, 2
    )
    parser.get_parsed_content("postprocessing")(data)
    written = nib.load(tmp_path / "out" / "image.nii.gz")
    np.testing.assert_array_equal(np.asarray(written.dataobj), vol.label)
    assert np.allclose(written.affine, vol.affine)


def test_monai_runner_segments_a_folder_like_predict(bundle: Path, tmp_path: Path) -> None:
    scans = write_msd_phantoms(tmp_path / "Task98", n_cases=2, seed=5, shape=(20, 26, 9)) / "imagesTr"
    # the command line itself, in a fresh interpreter: MONAI's runner applies the bundle's logging.conf
    # (logging.config.fileConfig), which would rewire this test process's logging
    run = _monai("run", "--config_file", str(bundle / "configs" / "inference.json"), "--bundle_root",
                 str(bundle), "--dataset_dir", str(scans), "--output_dir", str(tmp_path / "labels"))  # fmt: skip
    output = run.communicate(timeout=300)[0]
    assert run.returncode == 0, output
    assert "emfformer.engine.predict - INFO - wrote 2 label file(s)" in output  # logging.conf's format
    expected = run_prediction(scans, tmp_path / "predict", bundle / "models" / "ensemble.pt", progress=False)
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
