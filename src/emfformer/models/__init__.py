"""Models: EMF-former (DSPConv, VAA, S-MHA), its ablations, and MONAI baselines, behind one registry."""

from .registry import MODELS, create_model, list_models, min_input_multiple, size_kwargs

__all__ = ["MODELS", "create_model", "list_models", "min_input_multiple", "size_kwargs"]
