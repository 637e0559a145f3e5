"""``create_backbone``: one entry point from a backbone name to a VGG or ResNet feature extractor."""

from __future__ import annotations

from edgeseg.errors import EdgesegError
from edgeseg.models.resnet import RESNET_NAMES, ResNet, create_resnet
from edgeseg.models.vgg import VGG, VGG_NAMES, create_vgg

__all__ = ["BACKBONE_NAMES", "create_backbone"]

BACKBONE_NAMES = VGG_NAMES + RESNET_NAMES


def create_backbone(name: str, *, output_stride: int = 32, width: float = 1.0) -> VGG | ResNet:
    """Build a backbone by name.

    Args:
        name: one of :data:`BACKBONE_NAMES` (``vgg16``, ``vgg19_bn``, ``resnet50vd``, ...).
        output_stride: 32, 16 or 8 (ResNet only; VGG is always 32).
        width: channel multiplier (ResNet only; VGG is always 1.0).

    Raises:
        EdgesegError: unknown name, or an option the backbone does not support.
    """
    if name in VGG_NAMES:
        if output_stride != 32 or width != 1.0:
            raise EdgesegError(f"backbone {name}: VGG supports only output_stride=32 and width=1.0")
        return create_vgg(name)
    if name in RESNET_NAMES:
        return create_resnet(name, output_stride=output_stride, width=width)
    raise EdgesegError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONE_NAMES)}")
