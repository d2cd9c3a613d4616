"""The shipped pretrained Hippocampus model: loads by name, carries its split, segments a volume."""

from __future__ import annotations

import numpy as np
import torch

from emfformer.engine.checkpoint import load_checkpoint, members_from_checkpoint, resolve_checkpoint
from emfformer.engine.inference import predict_volume


def test_shipped_hippocampus_model_loads_by_name_and_predicts():
    path = resolve_checkpoint("hippocampus")
    assert path.is_file() and path.stat().st_size < 40e6  # small enough to ship in the package
    state = load_checkpoint("hippocampus")
    assert state["class_names"] == ["background", "Anterior", "Posterior"]
    assert len(state["splits"]["test"]) == 42  # the fixed test part, so evaluate needs no --splits
    members = members_from_checkpoint(state)
    for member_state, (_, pre) in zip(state.get("members", [state]), members, strict=True):
        assert member_state["model_name"] == "emf_former_s"
        assert member_state["config"]["data"]["data_dir"] is None  # no path of the training machine
        assert pre.size == 64 and pre.mode == "pad"
        assert pre.orientation == "RAS" and pre.spacing == (1.0, 1.0, 1.0)  # its training grid
    image = np.random.default_rng(0).normal(size=(36, 52, 38)).astype(np.float32)
    with torch.inference_mode():
        labels = predict_volume(members, image, tta=bool(state.get("tta", False)))
    assert labels.shape == image.shape
    assert set(np.unique(labels)) <= {0, 1, 2}
