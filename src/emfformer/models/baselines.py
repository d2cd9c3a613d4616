"""MONAI baselines in the configurations segmentation papers compare against (2D).

- ``unet``: MONAI UNet, channels 32-512, strides 2, 2 residual units (~6.5 M params).
- ``unetr``: MONAI UNETR, 2D, MONAI defaults (ViT-B/16: hidden 768, 12 layers, 12 heads), fixed
  ``img_size`` (default 224): the position embedding is tied to the input size.
- ``swin_unetr``: MONAI SwinUNETR, 2D, feature_size 48 (the Swin UNETR paper's width); input sides
  must be multiples of 32.
"""

from __future__ import annotations

from monai.networks.nets import UNETR, SwinUNETR, UNet
from torch import nn

__all__ = ["unet", "unetr", "swin_unetr"]


def unet(in_channels: int = 1, num_classes: int = 4, **kwargs) -> nn.Module:
    """MONAI 2D UNet (B, in, H, W) -> (B, classes, H, W); H, W multiples of 16."""
    cfg = dict(channels=(32, 64, 128, 256, 512), strides=(2, 2, 2, 2), num_res_units=2, **kwargs)
    return UNet(spatial_dims=2, in_channels=in_channels, out_channels=num_classes, **cfg)


def unetr(in_channels: int = 1, num_classes: int = 4, img_size: int = 224, **kwargs) -> nn.Module:
    """MONAI 2D UNETR (B, in, S, S) -> (B, classes, S, S); S = ``img_size`` (the registry checks it)."""
    return UNETR(in_channels, num_classes, img_size=(img_size, img_size), spatial_dims=2, **kwargs)


def swin_unetr(in_channels: int = 1, num_classes: int = 4, feature_size: int = 48, **kwargs) -> nn.Module:
    """MONAI 2D SwinUNETR (B, in, H, W) -> (B, classes, H, W); H, W multiples of 32."""
    return SwinUNETR(in_channels, num_classes, feature_size=feature_size, spatial_dims=2, **kwargs)
