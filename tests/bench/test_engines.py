"""Inference engines give the eager network's logits; the predict probe times a real checkpoint."""

from __future__ import annotations

import pytest
import torch

from emfformer.bench.engines import ENGINES, engine_markdown, prepare_engine, probe_predict
from emfformer.bench.probe import ProbeRequest
from emfformer.bench.summary import engine_goals
from emfformer.models import build_model

APPROXIMATE = {"bf16", "onnxruntime_int8"}  # reduced precision: close to the eager logits, not equal


@pytest.mark.parametrize("engine", [e for e in ENGINES if e != "compile"])  # compile: minutes; bench only
def test_engines_match_the_eager_network(engine: str) -> None:
    torch.manual_seed(0)
    model = build_model("emf_former_t", 32, 1, 3).eval()
    for m in model.modules():  # non-trivial BatchNorm statistics, so that folding is exercised
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(3, 1, 32, 32)
    with torch.inference_mode():
        expected = model(x)
        run = prepare_engine(model, engine, x, threads=1)
        got = torch.as_tensor(run(x))
    assert got.shape == expected.shape and got.dtype == torch.float32
    if engine in APPROXIMATE:
        err = float((got - expected).abs().max()) / float(expected.abs().max())
        agree = float((got.argmax(1) == expected.argmax(1)).float().mean())
        assert err < 0.1 and agree > 0.9, (err, agree)
        assert not torch.equal(got, expected)  # the engine really runs in reduced precision
    else:
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="engine must be one of"):
        prepare_engine(torch.nn.Identity(), "tensorrt", torch.zeros(1), 1)


def test_predict_probe_times_the_shipped_model() -> None:
    res: dict = {}
    probe_predict(ProbeRequest(kind="predict", spec="hippocampus", engine="no_tta", batch=1, repeats=1), res)
    assert res["members"] == 1 and res["tta"] is False and res["predict_s"] > 0


def _row(label: str, engine: str, tp: float, **extra: object) -> dict:
    return {"label": label, "engine": engine, "status": "ok", "throughput_img_s": tp, **extra}


def test_goals_compare_the_best_engine_of_each_model_like_with_like() -> None:
    report = {
        "meta": {"size": 224, "batch": 16, "matmul_peak_gflops": 100.0},
        "engines": [
            _row("emf_former_s", "eager", 30.0, flops=1e9, batch=5),
            _row("emf_former_s", "onnxruntime", 50.0, throughput_img_s_best=55.0, batch=5),
            _row("emf_former_s", "onnxruntime_int8", 500.0),  # not in any goal: accuracy not established
            _row("emf_former_s", "bf16", 90.0),
            _row("unet", "eager", 10.0),
            _row("unet", "bf16", 20.0),
        ],
        "predict": [{"checkpoint": "x", "members": 1, "tta": False, "status": "ok", "predict_s": 0.1}],
    }
    fp32, bf16, predict = engine_goals(report)
    assert fp32["status"] == "PASS" and "5.00x" in fp32["detail"] and "(onnxruntime)" in fp32["detail"]
    assert bf16["status"] == "FAIL" and "4.50x" in bf16["detail"] and "(bf16)" in bf16["detail"]
    assert predict["status"] == "PASS"
    text = "\n".join(engine_markdown(report))
    assert (
        "| emf_former_s | onnxruntime | 50.0 | 55.0 | 1.67 |" in text
        and "| x | 1 | off | 0.100 | ok |" in text
    )
    assert "the batch `predict` runs" in text  # batch 5 at 224^2: predict's
    report["engines"][0]["batch"] = 16
    assert "Throughput at batch 16 (`--engine-batch`)" in "\n".join(engine_markdown(report))
