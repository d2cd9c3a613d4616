"""emfformer: reference implementation of EMF-former (Hao, Quan & Lu, MICCAI 2024)."""

__version__ = "0.2.0"
