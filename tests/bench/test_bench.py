"""Tests of ``emfformer bench``: a tiny end-to-end run, FLOP counts, the memory probe, specs, goals."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from emfformer.bench import measure as bench_measure
from emfformer.bench import run as bench
from emfformer.bench.measure import measure_peak_memory
from emfformer.bench.probe import ModelSpec, ProbeRequest, parse_spec, run_probe, size_problem
from emfformer.bench.run import count_flops, count_params, run_benchmark
from emfformer.bench.summary import evaluate_goals, find_crossover, predict_memory, render_markdown
from emfformer.cli import main

MIB = 2**20


SPEC = "emf_former_t:conv=plain"  # a spec with an override: it must reach the child intact


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("bench")
    report = run_benchmark(
        [SPEC],  # one child per model: a second model would test no other code (tables of several
        out,  # models are rendered from fabricated reports below)
        size=32,
        batch=2,
        train_batch=2,
        repeats=1,
        scaling_sizes=(32,),  # the table's point is reused (no child); growth is tested with fake probes
        scaling_models=(SPEC,),
        threads=1,
        matmul_seconds=0.2,
        time_budget_s=1.0,
        dice={SPEC: 0.80},
        progress=False,
    )
    return out, report


def test_tiny_run_writes_json_md_png(tiny_run: tuple[Path, dict]) -> None:
    out, report = tiny_run
    for name in (
        "bench.json",
        "bench.md",
        "memory_vs_pixels.png",
        "latency_vs_pixels.png",
        "params_flops_dice.png",
    ):
        assert (out / name).is_file(), name
    assert (out / "memory_vs_pixels.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "bench.json").read_text())
    assert {"meta", "models", "scaling", "goals", "crossover", "files"} <= set(data)
    assert data["meta"]["matmul_peak_gflops"] > 0 and data["meta"]["threads"] == 1
    assert [m["label"] for m in data["models"]] == [SPEC]
    for m in data["models"]:
        assert m["status"] == "ok", m
        assert m["threads_used"] == 1 and m["mem_method"] == "vmhwm"
        for key in ("params", "flops", "mem_infer_mib", "mem_train_mib", "latency_ms", "throughput_img_s"):
            assert m[key] > 0, key
        assert m["peak_fraction"] == pytest.approx(
            m["achieved_gflops_s"] / data["meta"]["matmul_peak_gflops"]
        )
    points = data["scaling"][SPEC]
    assert [p["size"] for p in points] == [32] and points[0]["status"] == "ok"
    assert points[0]["mem_growth"] == points[0]["pixel_ratio"] == 1.0
    assert points[0]["latency_ms"] == data["models"][0]["latency_ms"]  # 32^2 point reused from the table
    assert data["crossover"] is None  # the S/twin pair was not in the scaling
    assert {g["status"] for g in data["goals"]} == {"N/A"}  # nothing measured at 224^2 / 448^2 / 512^2
    md = (out / "bench.md").read_text()
    assert f"| {SPEC} |" in md and "FLOPs = 2 x MACs" in md and "## Goals" in md
    params = report["models"][0]["params"]  # the child built the spec with its override
    assert (
        params
        == count_params(parse_spec(SPEC).build(32))
        != count_params(parse_spec("emf_former_t").build(32))
    )


def test_flops_of_known_conv_and_linear_are_two_macs() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_flops(conv, (2, 3, 16, 16)) == 2 * (2 * 16 * 16) * 8 * 3 * 3 * 3
    lin = nn.Linear(10, 20)  # the bias add is element-wise work: not counted
    assert count_flops(lin, (4, 10)) == 2 * 4 * 10 * 20
    assert lin.training  # mode restored


class Ballast(nn.Module):
    """Allocates (and touches) ``mib`` MiB that stay alive for the whole forward."""

    def __init__(self, mib: int) -> None:
        super().__init__()
        self.numel = mib * MIB // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ballast = torch.ones(self.numel)
        time.sleep(0.05)  # alive while the (sampling) meter looks
        return x + ballast[0]


@pytest.mark.parametrize("hwm", [True, False], ids=["vmhwm", "sampled"])
def test_memory_probe_detects_a_known_allocation(hwm: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not hwm:
        monkeypatch.setattr(bench_measure, "_reset_hwm", lambda: False)
    model, x = Ballast(200), torch.zeros(1)
    _, peak, method = measure_peak_memory(lambda: model(x))
    assert method == ("vmhwm" if hwm else "sampled")
    assert peak == pytest.approx(200 * MIB, rel=0.10)


def test_child_over_budget_is_did_not_fit() -> None:
    req = ProbeRequest(
        spec="emf_former_t", size=64, batch=0, train_batch=2, repeats=1, threads=1, max_memory_mb=1
    )
    res = run_probe(req, timeout_s=120)
    assert res["status"] == "did_not_fit", res
    assert "budget" in res["reason"] and res["params"] > 0  # partial results survive


@pytest.mark.parametrize(
    ("text", "name", "overrides", "label"),
    [
        ("unet", "unet", {}, "unet"),
        ("emf_former_s:attention=mhsa", "emf_former_s", {"attention": "mhsa"}, None),
        ("emf_former_s:shuffle=false,conv=plain", "emf_former_s", {"shuffle": False, "conv": "plain"}, None),
        (" emf_former_s : shuffle = False ", "emf_former_s", {"shuffle": False}, "emf_former_s:shuffle=false"),
        ("emf_former_s:active_heads=(2,3)", "emf_former_s", {"active_heads": (2, 3)}, None),
        ("emf_former_s:active_heads=[2, none]", "emf_former_s", {"active_heads": (2, None)}, "emf_former_s:active_heads=(2,none)"),
        ("emf_former_s:grad_checkpoint=true,mlp_ratio=1.5", "emf_former_s", {"grad_checkpoint": True, "mlp_ratio": 1.5}, None),
        ("unetr:img_size=64,hidden_size=96", "unetr", {"img_size": 64, "hidden_size": 96}, None),
        ("emf_former_s:heads='serial'", "emf_former_s", {"heads": "serial"}, "emf_former_s:heads=serial"),
    ],
)  # fmt: skip
def test_parse_spec(text: str, name: str, overrides: dict, label: str | None) -> None:
    spec = parse_spec(text)
    assert (spec.name, spec.overrides) == (name, overrides)
    assert type(spec.overrides.get("mlp_ratio", 0.0)) is float
    assert spec.label == (label or text)
    assert parse_spec(spec.label) == spec  # the label round-trips


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("emf_former_xl", "unknown model.*emf_former_s"),
        ("emf_former_s:conv", "key=value"),
        ("emf_former_s:=3", "key=value"),
        ("emf_former_s:conv=plain,conv=dspconv", "repeated"),
        ("emf_former_s:active_heads=(2,3", "unbalanced"),
        ("emf_former_s:conv=", "empty"),
    ],
)
def test_parse_spec_errors(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_spec(text)


def test_size_problem() -> None:
    assert size_problem(ModelSpec("swin_unetr"), 48) == (
        "input side must be a multiple of 32 for swin_unetr, got 48 (pad to 64)"
    )
    assert "img_size=64" in size_problem(ModelSpec("unetr", {"img_size": 64}), 128)
    assert size_problem(ModelSpec("unetr"), 128) is None
    assert parse_spec("unetr").build(32).__class__.__name__ == "UNETR"  # img_size follows the input side


def test_predict_memory() -> None:
    quad = [(float(p), 100 + 2e-3 * p + 1e-8 * p**2) for p in (128**2, 224**2, 320**2)]
    assert predict_memory(quad, 512.0**2) == pytest.approx(100 + 2e-3 * 512**2 + 1e-8 * 512**4, rel=1e-6)
    assert predict_memory([(100.0, 50.0)], 400.0) == 200.0  # linear from a single point
    assert predict_memory([(100.0, 50.0), (400.0, 60.0)], 1600.0) == 240.0  # never below linear
    assert predict_memory([], 10.0) is None


def _point(side: int, mib: float | None, status: str = "ok") -> dict:
    return {"size": side, "status": status, "mem_train_mib": mib}


def _report(s_mem: dict[int, float], twin_mem: dict[int, float | None], **over: float) -> dict:
    """A fabricated report; twin sides mapped to None did not fit the 8 GiB budget."""
    model = {"status": "ok"}
    models = [
        {**model, "label": "emf_former_s", "params": over.get("s_params", 0.8e6), "flops": 0.6e9,
         "throughput_img_s": over.get("s_tp", 30.0)},
        {**model, "label": "unet", "params": 6.5e6, "flops": 4.6e9, "throughput_img_s": 10.0},
        {**model, "label": "unetr", "params": 87e6, "flops": 40e9},
        {**model, "label": "swin_unetr", "params": 25e6, "flops": 27e9},
    ]  # fmt: skip
    scaling = {
        "emf_former_s": [_point(k, v) for k, v in s_mem.items()],
        "emf_former_s_twin": [_point(k, v, "ok" if v else "did_not_fit") for k, v in twin_mem.items()],
    }
    report = {
        "meta": {"size": 224, "max_memory_gb": 8.0, "device": "cpu"},
        "models": models,
        "scaling": scaling,
    }
    report["crossover"] = find_crossover(report)
    return report


def _statuses(report: dict) -> dict[str, str]:
    return {g["id"]: g["status"] for g in evaluate_goals(report)}


def test_goals_pass() -> None:
    report = _report({224: 100, 448: 400, 512: 520, 640: 800}, {224: 110, 448: 1100, 512: 2700, 640: None})
    statuses = _statuses(report)
    assert statuses.pop("sdpa512") == statuses.pop("sdpa1024") == "N/A"  # no recompute / SDPA rows here
    assert set(statuses.values()) == {"PASS"}
    assert report["crossover"]["side"] == 640 and report["crossover"]["measured"]


def test_goals_fail() -> None:
    report = _report({224: 100, 448: 460, 512: 600}, {224: 110, 448: 440, 512: 2000}, s_params=3e6, s_tp=15.0)
    assert _statuses(report) == {
        "size": "FAIL",  # 3 M params
        "vs_unetr": "PASS",
        "vs_swin_unetr": "FAIL",  # 25 / 3 < 10
        "growth": "FAIL",  # 4.6x > 4.4x and the twin grows slower
        "mem512": "FAIL",  # 3.3x < 5x
        "throughput": "FAIL",  # 1.5x < 2x
        "sdpa512": "N/A",
        "sdpa1024": "N/A",
    }
    assert report["crossover"]["side"] is None and report["crossover"]["predicted_side"] > 512


def test_goals_twin_lower_bound_and_missing() -> None:
    # twin did not fit at 512: > 8192 MiB >= 5 x 600 -> PASS from the bound alone
    assert (
        _statuses(_report({224: 100, 448: 400, 512: 600}, {224: 110, 448: 900, 512: None}))["mem512"]
        == "PASS"
    )
    # bound too weak to decide: 8192 / 2000 < 5
    assert _statuses(_report({224: 100, 448: 400, 512: 2000}, {224: 110, 512: None}))["mem512"] == "N/A"
    report = _report({224: 100}, {224: 110})
    report["models"] = [m for m in report["models"] if m["label"] != "unetr"]
    statuses = _statuses(report)
    assert statuses["vs_unetr"] == statuses["growth"] == statuses["mem512"] == "N/A"
    report["meta"]["size"] = 256
    assert _statuses(report)["size"] == "N/A"


@pytest.mark.parametrize(
    ("cheap", "sdpa", "plain_ms", "status"),
    [
        ((500, 120), (540, 90), 100, "PASS"),
        ((560, 110), (540, 90), 100, "FAIL"),
        ((500, 130), (540, 90), 100, "FAIL"),
    ],
    ids=["both-met", "more-memory", "too-slow"],
)
def test_recompute_vs_sdpa_twin_goal(cheap: tuple, sdpa: tuple, plain_ms: float, status: str) -> None:
    report = _report({224: 100, 512: 700, 1024: 2800}, {224: 110})
    pts = {
        "emf_former_s:recompute=cheap": cheap,
        "emf_former_s_twin_sdpa": sdpa,
        "emf_former_s": (700, plain_ms),
    }
    for label, (mib, ms) in pts.items():
        report["scaling"][label] = [
            {**_point(side, mib * k), "train_step_ms": ms * k} for side, k in ((512, 1), (1024, 4))
        ]
    statuses = _statuses(report)
    assert statuses["sdpa512"] == statuses["sdpa1024"] == status


def test_markdown_lists_goals() -> None:
    report = _report({224: 100, 448: 400, 512: 520}, {224: 110, 448: 1100, 512: 2700})
    report["meta"].update(
        device_name="cpu", torch="x", threads=2, matmul_peak_gflops=100.0, matmul_n=2048, matmul_seconds=1,
        memory_method="m", repeats=3, warmup=1, batch=16, train_batch=4, time_budget_s=1, scaling_reference=224,
    )  # fmt: skip
    report["goals"] = evaluate_goals(report)
    md = render_markdown(report)
    assert "**PASS**: EMF-former-S <= 2.5 M params" in md and "| emf_former_s_twin | 512 |" in md


def test_scaling_skips_sizes_predicted_over_budget(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = []

    def fake_probe(req: ProbeRequest, timeout_s: float) -> dict:
        calls.append((req.spec, req.size))
        return {"status": "ok", "mem_train_mib": 1e-3 * req.size**2, "latency_ms": 1.0}

    monkeypatch.setattr(bench, "run_probe", fake_probe)
    report = run_benchmark(
        ["emf_former_s"],
        tmp_path,
        scaling_sizes=(128, 224, 320, 448, 1024),
        max_memory_gb=0.25,
        progress=False,
    )
    points = report["scaling"]["emf_former_s_twin"]  # 1e-3 MiB per pixel: 448^2 -> 200 MiB, 1024^2 -> 1 GiB
    assert [p["status"] for p in points] == ["ok"] * 4 + ["skipped_predicted"]
    assert points[-1]["predicted_train_mib"] == pytest.approx(1e-3 * 1024**2)
    assert ("emf_former_s", 224) in calls and calls.count(("emf_former_s", 224)) == 1  # table point reused
    for p in points[:4]:  # growth against the 224^2 point: memory grows with the pixels here, latency not
        assert p["pixel_ratio"] == pytest.approx(p["size"] ** 2 / 224**2)
        assert p["mem_growth"] == pytest.approx(p["pixel_ratio"]) and p["latency_growth"] == 1.0
    assert ("emf_former_s_twin", 1024) not in calls


def test_cli_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = {}
    monkeypatch.setattr(bench, "run_benchmark", lambda models, out, **kw: seen.update(models=models, **kw) or {
        "goals": [], "files": [], "meta": {"wall_s": 0.0}})  # fmt: skip
    assert main(["bench", "--quick", "--repeats", "5", "--out", str(tmp_path), "--models", "unet"]) == 0
    assert seen["models"] == ["unet"] and seen["repeats"] == 5 and seen["size"] == 64
    assert seen["scaling_sizes"] == (64, 128)
    seen.clear()
    assert main(["bench", "--out", str(tmp_path), "--scaling-sizes"]) == 0
    assert seen["models"] == bench.DEFAULT_MODELS and seen["scaling_sizes"] == () and "size" not in seen


def test_cli_bad_spec_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--models", "emf_former_s:conv", "--out", str(tmp_path)]) == 2
    assert "key=value" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--engine-batch", "0", "--engines", "fused"], "--engine-batch must be an int >= 1"),
        (["--engine-batch", "16"], "add --engines"),
    ],
)
def test_cli_engine_batch_is_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    assert main(["bench", "--quick", "--out", str(tmp_path / "b"), *flags]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "b").exists()


def test_engine_batch_reaches_the_engine_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    import emfformer.bench.probe as probe
    from emfformer.bench import engines

    seen = []
    monkeypatch.setattr(probe, "run_probe", lambda req, timeout: seen.append(req.batch) or {"status": "ok"})

    class Bar:
        def set_postfix_str(self, _: str) -> None: ...
        def update(self) -> None: ...

    base = probe.ProbeRequest(size=224)
    rows = engines.run_engine_probes([probe.parse_spec("unet")], ("fused",), base, 1.0, Bar(), 16)
    assert seen == [16] and rows[0]["batch"] == 16
    engines.run_engine_probes([probe.parse_spec("unet")], ("fused",), base, 1.0, Bar())
    assert seen[-1] == 5  # predict's batch at 224^2
