"""Planning rules (data/plan.py), table-driven on hand-made fingerprints, and on a real fingerprint."""

from __future__ import annotations

from pathlib import Path

import pytest

from emfformer.data.cases import DataError
from emfformer.data.msd import read_msd_dataset
from emfformer.data.plan import make_plan, plan_dataset
from emfformer.data.synthetic_nnunet import write_nnunet_dataset


def _fp(shape, spacing, channels=("MRI",), nonzero=1.0, lo=-100.0, hi=300.0):
    return {
        "orientation": "RAS", "num_cases": 3, "channels": list(channels), "median_shape": list(shape),
        "median_spacing": list(spacing), "median_crop_fraction": nonzero, "class_frequencies": [0.9, 0.1],
        "cases": [{"shape": list(shape), "spacing": list(spacing)}],
        "intensity": [{"channel": c, "percentile_00_5": lo, "percentile_99_5": hi, "clipped_mean": 50.0,
                       "clipped_std": 40.0} for c in channels],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("fp", "axis", "side", "batch", "schemes"),
    [
        (_fp((35, 50, 35), (1, 1, 1)), 2, 64, 32, ["zscore"]),  # hippocampus-like: isotropic, axis 2
        (_fp((320, 320, 20), (0.6, 0.6, 3.6)), 2, 320, 6, ["zscore"]),  # anisotropic: across the coarse axis
        (_fp((30, 200, 180), (5.0, 0.8, 0.8)), 0, 208, 16, ["zscore"]),  # coarse axis first
        (_fp((512, 512, 90), (0.8, 0.8, 2.0), ("CT",)), 2, 512, 2, ["ct"]),  # CT: HU window
        (_fp((64, 64, 1), (1, 1, 1), ("R", "G", "B")), 2, 64, 32, ["zscore"] * 3),  # 2D: singleton axis
        (_fp((100, 100, 80), (1, 1, 1), ("T1", "noNorm"), nonzero=0.5), 2, 112, 32, ["zscore", "none"]),
    ],
    ids=["iso", "aniso-z", "aniso-x", "ct", "png", "masked"],
)
def test_plan_rules(fp, axis: int, side: int, batch: int, schemes: list[str]) -> None:
    plan = make_plan(fp, stride=16, memory_budget_mib=1024)
    assert (plan["slice_axis"], plan["patch_size"], plan["batch_size"]) == (axis, side, batch)
    assert [n["scheme"] for n in plan["normalization"]] == schemes
    if schemes[0] == "ct":
        assert plan["normalization"][0] == {
            "scheme": "ct",
            "lower": -100.0,
            "upper": 300.0,
            "mean": 50.0,
            "std": 40.0,
        }
    if fp["median_crop_fraction"] < 0.75:
        assert plan["normalization"][0]["use_mask"] is True


@pytest.mark.parametrize(("axis", "side"), [(0, 96), (1, 240), (2, 240), (-3, 96)])
def test_a_hand_set_slice_axis_gets_a_patch_planned_for_its_planes(axis: int, side: int) -> None:
    # 240 x 90 x 60 voxels: slices across axis 0 are 90 x 60 (a 96 patch), across the others 240 long
    plan = make_plan(_fp((240, 90, 60), (1, 1, 1)), stride=16, slice_axis=axis)
    assert (plan["slice_axis"], plan["patch_size"]) == (axis % 3, side)
    with pytest.raises(DataError, match="slice_axis must be 0, 1, 2"):
        make_plan(_fp((240, 90, 60), (1, 1, 1)), slice_axis=3)


def test_memory_budget_caps_the_patch_and_refuses_what_cannot_fit() -> None:
    plan = make_plan(_fp((1024, 1024, 50), (0.5, 0.5, 2)), memory_budget_mib=256)
    assert plan["patch_capped_by_memory"] and plan["patch_size"] == 288 and plan["batch_size"] == 2
    with pytest.raises(DataError, match="cannot hold 2 patches"):
        make_plan(_fp((64, 64, 10), (1, 1, 1)), memory_budget_mib=1)


def test_fingerprint_of_a_real_layout_gives_the_ct_window(tmp_path: Path) -> None:
    root = write_nnunet_dataset(tmp_path / "CT", "ct", n_cases=2, shape=(96, 96, 3))
    info = read_msd_dataset(root)
    plan = plan_dataset(info, info.cases, 16, 1024, tmp_path / "fp", progress=False)
    ct = plan["normalization"][0]
    assert ct["scheme"] == "ct" and 120 < ct["lower"] < 250 and 650 < ct["upper"] < 760  # organ ... bone HU
    assert plan["spacing"] == [0.8, 0.8, 4.0] and plan["slice_axis"] == 2 and plan["patch_size"] == 96
    assert list((tmp_path / "fp").glob("fingerprint_*.json"))  # cached for the next run


def test_a_hand_set_patch_gets_the_batch_the_budget_holds_at_that_side(tmp_path: Path) -> None:
    from emfformer.engine.config import load_config
    from emfformer.engine.train_data import plan_run

    root = write_nnunet_dataset(tmp_path / "MRI", "mri2", n_cases=2, shape=(40, 40, 3))
    info = read_msd_dataset(root)
    cfg = load_config(None, {"data.dataset": "msd", "data.data_dir": str(root), "data.size": 256,
                             "data.cache_dir": str(tmp_path / "c")})  # fmt: skip
    plan, pre = plan_run(info, list(info.cases), cfg, progress=False)
    assert plan["patch_size"] == 48 and pre.size == 256
    assert cfg.optim.batch_size == 10  # 1024 MiB / (256^2 x 1.5 kB), not the plan's 32 for 48^2
