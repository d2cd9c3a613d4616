"""The shipped pretrained checkpoint loads and segments a volume with the right geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from emfformer.engine.checkpoint import load_checkpoint, model_from_checkpoint
from emfformer.engine.inference import predict_volume

WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "emf_former_s_hippocampus.pt"


def test_shipped_hippocampus_weights_rebuild_and_predict():
    state = load_checkpoint(WEIGHTS)
    assert state["model_name"] == "emf_former_s"
    assert state["class_names"] == ["background", "Anterior", "Posterior"]
    assert state["config"]["data"]["data_dir"] is None  # no path of the machine it was trained on
    model, preprocess = model_from_checkpoint(state)
    assert preprocess.size == 64 and preprocess.mode == "pad"
    image = np.random.default_rng(0).normal(size=(36, 52, 38)).astype(np.float32)
    with torch.inference_mode():
        labels, _ = predict_volume(model, image, preprocess)
    assert labels.shape == image.shape
    assert set(np.unique(labels)) <= {0, 1, 2}
