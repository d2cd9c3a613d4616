"""Models: EMF-former (DSPConv, VAA, S-MHA), its ablations, and MONAI baselines, behind one registry."""

from .registry import MODELS, build_model, create_model, input_multiple, input_problem, list_models

__all__ = ["MODELS", "build_model", "create_model", "input_multiple", "input_problem", "list_models"]
